//! `elevated`: the elevate daemon. Parses arguments, sets up logging, runs the subcommand
//! (see `elevate::elevated`), and prints a failure with its causes on one line.

use clap::Parser;

use elevate::elevated::{self, Args};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    elevated::init_logging(args.log_format);
    match elevated::run(args.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("elevated: {}", elevated::chain(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
