use clap::Parser;

fn main() -> std::process::ExitCode {
    // llama.cpp spells the prompt-processing threads `-tb` and the server's
    // slots `-np`; clap's short flags are one letter, so accept those
    // spellings as long flags.
    let args = std::env::args_os().map(|a| match a.to_str() {
        Some("-tb") => "--tb".into(),
        Some("-np") => "--np".into(),
        _ => a,
    });
    let cli = qllama::cli::Cli::parse_from(args);
    match qllama::cli::dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
