//! Typed values of the domain: ids, names, times, durations, bounded text, and the access-request
//! record with its state machine. Everything that crosses the wire or the store is parsed into
//! these types once, at the edge; nothing here depends on the rest of the crate.

mod duration;
mod extension;
#[cfg(test)]
pub(crate) mod fixtures;
mod happened;
mod ids;
mod names;
mod page;
#[cfg(test)]
mod quorum_model;
mod rate;
mod request;
mod review;
mod ssh_key;
mod state;
mod text;
mod time;

pub use duration::{DurationError, LeaseDuration, humantime};
pub use extension::{Extension, ExtensionError, ExtensionLimits, ExtensionState};
pub use happened::{Approval, DirectoryChange, Drift, DriftCorrection, Happened};
pub use ids::{IdError, RequestId};
pub use names::{GroupName, NameError, Principal, ResourceName};
pub use page::Page;
pub use rate::{Bucket, Rate, RateError};
pub use request::{AccessRequest, Decision, Due, Notices, Offboarding, Route, RouteStage, Verdict};
pub use review::{BreakGlass, Review, ReviewState, ReviewVerdict};
pub use ssh_key::{MAX_PUBLIC_KEY, SshPublicKey};
pub use state::{Action, Attempts, Ending, State, StateKind, Transition, TransitionError};
pub use text::{Comment, Reason, TextError, Ticket, is_format, one_line};
pub use time::{Timestamp, TimestampError};
