//! Pages of newest-first listings of requests.

use crate::model::RequestId;

/// Which slice of a newest-first listing to return.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    /// Only ids below this one (the last id of the previous page).
    pub before: Option<RequestId>,
    /// At most this many.
    pub limit: usize,
}
