//! Why a command failed, and the exit status each failure gives.

use std::process::ExitCode;

use tonic::Code;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or unreadable files.
    #[error("{0}")]
    Usage(String),
    /// No connection to the daemon.
    #[error("cannot connect to {endpoint}: {message}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// The daemon refused or failed the call.
    #[error("{}", describe(.0))]
    Call(#[from] tonic::Status),
    /// A waited-for request ended without access.
    #[error("{0}")]
    Ended(String),
    /// No daemon sent updates for a while before the wait ended.
    #[error("{0}")]
    Interrupted(String),
    /// An audit export failed verification.
    #[error("{0}")]
    Verify(String),
}

fn describe(status: &tonic::Status) -> String {
    let code = match status.code() {
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::PermissionDenied => "permission denied",
        Code::FailedPrecondition => "failed precondition",
        Code::AlreadyExists => "already exists",
        Code::Unauthenticated => "unauthenticated",
        Code::Unavailable => "unavailable",
        Code::Unimplemented => "unimplemented",
        Code::DeadlineExceeded => "deadline exceeded",
        _ => "error",
    };
    let mut message = status.message().replace('\n', " ");
    if matches!(
        status.code(),
        Code::Unknown | Code::Unavailable | Code::Internal | Code::Cancelled
    ) {
        // Transport failures carry the reason (a refused certificate, a reset) in the source.
        let mut source = std::error::Error::source(status);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            source = cause.source();
        }
        // With TLS 1.3 the daemon checks the client certificate after the client's side of
        // the handshake is done, so a refusal shows up as an alert or a closed connection.
        if [
            "fatal alert",
            "broken pipe",
            "connection reset",
            "connection closed",
        ]
        .iter()
        .any(|sign| message.to_lowercase().contains(sign))
        {
            message.push_str(
                " (the daemon closed the connection: is your client certificate signed by its CA, still valid and not revoked?)",
            );
        }
    }
    if message.is_empty() {
        code.to_owned()
    } else {
        format!("{message} ({code})")
    }
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Ended(_) => ExitCode::from(3),
            CliError::Connect { .. }
            | CliError::Call(_)
            | CliError::Interrupted(_)
            | CliError::Verify(_) => ExitCode::from(1),
        }
    }
}
