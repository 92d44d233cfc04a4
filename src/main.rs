use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = qllama::cli::Cli::parse();
    match qllama::cli::dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
