//! `elevate`: the command-line client for engineers, approvers and auditors.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    elevate::cli::main().await
}
