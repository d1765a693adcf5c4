//! Credentials waiting for their holder. A grant that made credentials (an ephemeral database
//! login) leaves them here, in memory only; the first read by the holder takes them away, and
//! the lease's end discards them if nobody came. They are never written to the store, logged or
//! audited, so a restart before delivery loses them: the holder then releases the lease and
//! asks again.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::RequestId;
use crate::provision::Credentials;

/// Undelivered credentials by lease.
#[derive(Default)]
pub(super) struct Vault {
    waiting: Mutex<HashMap<RequestId, Credentials>>,
}

impl Vault {
    /// Keeps `credentials` for the holder of `lease`, replacing older ones.
    pub(super) fn put(&self, lease: RequestId, credentials: Credentials) {
        self.lock().insert(lease, credentials);
    }

    /// Takes the credentials of `lease`, if any are waiting.
    pub(super) fn take(&self, lease: RequestId) -> Option<Credentials> {
        self.lock().remove(&lease)
    }

    /// Whether credentials of `lease` are waiting.
    pub(super) fn waiting(&self, lease: RequestId) -> bool {
        self.lock().contains_key(&lease)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Credentials>> {
        // The map stays consistent whatever a panicking holder of the lock was doing.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
