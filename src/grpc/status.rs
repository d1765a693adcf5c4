//! The one place where errors become `tonic::Status`. Classified by who caused them: the caller
//! (invalid argument, permission denied, failed precondition, not found) or us and the targets
//! (internal, unavailable). Internal details go to the log, never to the peer.

use tonic::Status;

use crate::broker::{BrokerError, StorageFailure};
use crate::model::TransitionError;
use crate::policy::Refusal;

/// The status for a broker error.
pub fn from_broker(error: BrokerError) -> Status {
    let message = error.to_string();
    match error {
        BrokerError::UnknownPrincipal(_)
        | BrokerError::Suspended(_)
        | BrokerError::Offboarded { .. }
        | BrokerError::Forbidden(_) => Status::permission_denied(message),
        BrokerError::NotFound(_) => Status::not_found(message),
        BrokerError::TooFast { retry_after, .. } => {
            let mut status = Status::resource_exhausted(message);
            // Whole seconds, rounded up, as HTTP's Retry-After.
            let seconds = retry_after.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = seconds.to_string().parse() {
                status.metadata_mut().insert("retry-after", value);
            }
            status
        }
        BrokerError::Refused(refusal) => match refusal {
            Refusal::UnknownResource(_) => Status::not_found(message),
            Refusal::NotEligible { .. }
            | Refusal::NoBreakGlass(_)
            | Refusal::MayNotBreakGlass { .. } => Status::permission_denied(message),
            Refusal::RateLimited(_) => Status::resource_exhausted(message),
            Refusal::Invalid(_) => Status::invalid_argument(message),
            Refusal::Unroutable(_) => Status::failed_precondition(message),
        },
        BrokerError::Invalid(_) => Status::invalid_argument(message),
        BrokerError::Transition(transition) => match transition {
            TransitionError::Illegal { .. }
            | TransitionError::PastDeadline { .. }
            | TransitionError::WouldStrand { .. }
            | TransitionError::NotBreakGlass { .. }
            | TransitionError::ReviewNotOpen { .. }
            | TransitionError::ReviewClosed { .. } => Status::failed_precondition(message),
            TransitionError::SelfDecision
            | TransitionError::NotEligible { .. }
            | TransitionError::WrongStage { .. }
            | TransitionError::AlreadyCounted { .. }
            | TransitionError::NotRequester { .. }
            | TransitionError::SelfReview { .. } => Status::permission_denied(message),
        },
        BrokerError::AlreadyOpen { .. } => Status::already_exists(message),
        BrokerError::Reloaded => Status::aborted(message),
        BrokerError::Target(_) => Status::unavailable(message),
        BrokerError::NoCredentials(_)
        | BrokerError::ReloadRejected(_)
        | BrokerError::NotEntitled(_) => Status::failed_precondition(message),
        BrokerError::ShuttingDown | BrokerError::Store(_) => storage(&error),
    }
}

/// The status of a failure of the store (as the broker classifies it), never naming its cause.
fn storage(error: &BrokerError) -> Status {
    match error.storage() {
        Some(StorageFailure::Closing) => {
            Status::unavailable("elevated is shutting down; retry shortly")
        }
        Some(StorageFailure::WriterStopped) => {
            tracing::error!("the store writer stopped; writes cannot succeed until a restart");
            Status::unavailable("elevated cannot write its store; the daemon log has the details")
        }
        Some(StorageFailure::Unreachable) => {
            tracing::error!(%error, "the store is unreachable while serving an RPC");
            Status::unavailable("elevated cannot reach its store; retry shortly")
        }
        Some(StorageFailure::NotLeader) => {
            Status::unavailable("this elevated is no longer the leader; retry on the leader")
        }
        Some(StorageFailure::Failed) | None => {
            tracing::error!(%error, "store failure while serving an RPC");
            Status::internal("internal storage error; the daemon log has the details")
        }
    }
}

/// An invalid-argument status naming the field.
pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {problem}"))
}
