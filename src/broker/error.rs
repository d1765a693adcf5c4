//! Errors of the workflow, classified by who caused them (see `grpc::status` for the mapping).

use crate::model::{Principal, RequestId, StateKind, TransitionError};
use crate::policy::Refusal;
use crate::store::StoreError;

/// Why the broker refused or failed a call.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The caller's certificate names a principal the directory does not know.
    #[error("principal '{0}' is not in the directory")]
    UnknownPrincipal(Principal),
    /// The caller is suspended in the directory.
    #[error("principal '{0}' is suspended")]
    Suspended(Principal),
    /// An administrator offboarded the caller.
    #[error("principal '{principal}' was offboarded by {by}: {reason}")]
    Offboarded {
        /// Who.
        principal: Principal,
        /// The administrator.
        by: Principal,
        /// Why.
        reason: String,
    },
    /// A reload was refused: a file failed validation, and the files loaded before stay in
    /// force.
    #[error("reload refused, the policy and directory in force are unchanged: {0}")]
    ReloadRejected(String),
    /// The requester left or is no longer eligible: their request can no longer be approved.
    #[error("{0}")]
    NotEntitled(String),
    /// The policy or directory was reloaded between evaluating a request and storing it; it is
    /// evaluated again.
    #[error("the policy or directory was reloaded while the request was evaluated; send it again")]
    Reloaded,
    /// The caller made too many calls of this kind; nothing was done.
    #[error("too many {action} calls: at most {rate}; retry in {}", humantime::format_duration(*retry_after))]
    TooFast {
        /// `submit` or `extend`.
        action: &'static str,
        /// The rate in force.
        rate: crate::model::Rate,
        /// When a call would be let through again.
        retry_after: std::time::Duration,
    },
    /// No such request.
    #[error("no request {0}")]
    NotFound(RequestId),
    /// The caller lacks a role for this call.
    #[error("{0}")]
    Forbidden(String),
    /// The policy refused the request.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A field of the call is malformed or out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The state machine forbids the transition.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The caller already has an open request for the resource.
    #[error(
        "you already have {id} for this resource ({state}); release or cancel it first, or extend it"
    )]
    AlreadyOpen {
        /// The open request.
        id: RequestId,
        /// Its state.
        state: StateKind,
    },
    /// No credentials wait for the lease.
    #[error("{0}")]
    NoCredentials(String),
    /// A target could not be asked (reconciliation's listing).
    #[error("target unavailable: {0}")]
    Target(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The daemon is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
}

/// What a store failure means for the caller, so that the edge needs no storage types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageFailure {
    /// The store is closing with the daemon: retry shortly.
    Closing,
    /// The writer stopped: no write succeeds until a restart.
    WriterStopped,
    /// The database cannot be reached: retry shortly.
    Unreachable,
    /// This daemon is not the leader (any more): ask the leader.
    NotLeader,
    /// Anything else: an internal error, logged.
    Failed,
}

impl BrokerError {
    /// How the storage failure behind this error bears on the caller; `None` when it is not
    /// one (shutting down counts as closing).
    pub fn storage(&self) -> Option<StorageFailure> {
        match self {
            Self::ShuttingDown | Self::Store(StoreError::Closed) => Some(StorageFailure::Closing),
            Self::Store(StoreError::WriterGone) => Some(StorageFailure::WriterStopped),
            Self::Store(StoreError::Unreachable(_)) => Some(StorageFailure::Unreachable),
            Self::Store(StoreError::Fenced(_)) => Some(StorageFailure::NotLeader),
            Self::Store(_) => Some(StorageFailure::Failed),
            _ => None,
        }
    }
}
