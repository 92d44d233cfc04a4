use clap::Parser;

fn main() -> std::process::ExitCode {
    // llama.cpp spells the prompt-processing threads `-tb`; clap's short
    // flags are one letter, so accept that spelling as `--tb`.
    let args = std::env::args_os().map(|a| if a == "-tb" { "--tb".into() } else { a });
    let cli = qllama::cli::Cli::parse_from(args);
    match qllama::cli::dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
