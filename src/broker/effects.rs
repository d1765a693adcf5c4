//! What the effects on targets share: the targets themselves, the locks that order the changes
//! to one request and to one grant, the bound on grants and revokes in flight, the tracker
//! shutdown waits on, and the credentials waiting for their holders. The grant, revoke,
//! extension and drift code (`lease`, `extend`, `admin`) works through it.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::credentials;
use crate::keyed::KeyedLocks;
use crate::model::RequestId;
use crate::provision::Provisioners;

/// Owned by the workflow; nothing else touches a target.
pub(super) struct Effects {
    /// The targets, by provisioner name.
    pub(super) provisioners: Provisioners,
    /// Held around each grant or revoke of a request and the commit of its outcome.
    pub(super) requests: KeyedLocks<RequestId>,
    /// Held around every change of a grant on a target, by provisioner and grant key, so that
    /// leases sharing a grant decide one at a time whether it stays.
    pub(super) grants: KeyedLocks<(String, String)>,
    /// Grants and revokes in flight at most (`Settings::max_concurrent_effects`).
    pub(super) slots: Arc<Semaphore>,
    /// Grant, revoke and delivery tasks, so that shutdown can wait for them; shared with the
    /// outbox.
    pub(super) tasks: TaskTracker,
    /// Credentials waiting for their holders.
    pub(super) credentials: credentials::Vault,
}
