//! Idempotency keys: a call that changes something may carry a key (the CLI sets one on every
//! such call), so that sending it again — after its answer was lost to a broken connection or a
//! failover — gets the first call's outcome instead of doing the change twice.
//!
//! The key is claimed by the first write of the call that stores something, in the same
//! transaction: either the change and its claim are durable, or neither is. The claim records
//! who made the call, which method, a digest of its arguments, and the request it changed. A
//! later write carrying a claimed key changes nothing and answers
//! [`StoreError::Replayed`](super::StoreError::Replayed) with the claim, from which the API
//! answers with that request as it stands.
//!
//! The claim travels with the call's task (a task-local [`Slot`]), so the broker's code is
//! unchanged; work a call hands to a task of its own carries the slot over ([`carried`],
//! [`within`]). Claims are kept with the history, never deleted.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::model::{Principal, RequestId, Timestamp};

/// A claimed idempotency key: what the call that first used it was, and what it changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// The key, as the client sent it.
    pub key: String,
    /// Who made the call.
    pub principal: Principal,
    /// The RPC method's full name.
    pub method: String,
    /// SHA-256 of the method and the encoded arguments, hex: the same key with other
    /// arguments is a mistake, not a retry.
    pub digest: String,
    /// The request the call changed (or created), when it is about one.
    pub request: Option<RequestId>,
    /// When the call was made.
    pub at: Timestamp,
}

impl Claim {
    /// Whether `other` is the same call as this one (the same caller, method and arguments).
    pub fn same_call(&self, other: &Claim) -> bool {
        self.key == other.key
            && self.principal == other.principal
            && self.method == other.method
            && self.digest == other.digest
    }
}

/// The claim of the call a task works for, until its first storing write takes it.
#[derive(Clone, Debug)]
pub struct Slot(Arc<Mutex<Option<Claim>>>);

impl Slot {
    /// The key still waiting to be claimed.
    pub(super) fn pending(&self) -> Option<String> {
        self.lock().as_ref().map(|claim| claim.key.clone())
    }

    /// Takes the claim, for the write that stores it.
    pub(super) fn take(&self) -> Option<Claim> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Claim>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

tokio::task_local! {
    static SLOT: Slot;
}

/// Runs `call` with `claim` in force: its first write that stores something claims the key, and
/// any of its writes finding the key claimed already fails with `Replayed`.
pub async fn keyed<F: Future>(claim: Claim, call: F) -> F::Output {
    SLOT.scope(Slot(Arc::new(Mutex::new(Some(claim)))), call)
        .await
}

/// The slot of the call the current task works for, to carry into a task it starts.
pub fn carried() -> Option<Slot> {
    SLOT.try_with(Clone::clone).ok()
}

/// Runs `work` for the call whose slot was [`carried`] over (plain `work` when there is none).
pub async fn within<F: Future>(slot: Option<Slot>, work: F) -> F::Output {
    match slot {
        Some(slot) => SLOT.scope(slot, work).await,
        None => work.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, entry};
    use crate::model::{Happened, Reason};
    use crate::store::{Changes, Store, StoreError, StoreOptions, Unheard};

    /// A write that stores one audit entry (something of the workflow).
    async fn record(store: &Store) -> Result<(), StoreError> {
        let draft = entry::of(
            Timestamp::from_unix_millis(1),
            Actor::System,
            Happened::Offboarded {
                principal: Principal::parse("alice").unwrap(),
                reason: Reason::parse("left").unwrap(),
            },
        );
        store
            .write(move |_| {
                Ok::<_, StoreError>((
                    Changes {
                        events: vec![draft],
                        ..Changes::default()
                    },
                    (),
                ))
            })
            .await
    }

    #[tokio::test]
    async fn the_first_storing_write_claims_the_key_and_a_later_call_with_it_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("store.redb"),
            StoreOptions::default(),
            std::sync::Arc::new(Unheard),
        )
        .unwrap();
        let claim = Claim {
            key: "k".to_owned(),
            principal: Principal::parse("alice").unwrap(),
            method: "m".to_owned(),
            digest: "d".to_owned(),
            request: None,
            at: Timestamp::from_unix_millis(1),
        };
        // A write that stores nothing leaves the key to the next one.
        keyed(claim.clone(), async {
            store
                .write(|_| Ok::<_, StoreError>((Changes::default(), ())))
                .await
                .unwrap();
            assert_eq!(store.claimed("k").await.unwrap(), None);
            record(&store).await.unwrap();
            // Claimed once: the call's later writes are not checked against it.
            record(&store).await.unwrap();
        })
        .await;
        assert_eq!(store.claimed("k").await.unwrap(), Some(claim.clone()));
        let count = || store.read(|reads| reads.audit_count());
        assert_eq!(count().await.unwrap(), 2);

        // The write of a call carrying the key again is refused inside the transaction.
        let again = keyed(claim.clone(), record(&store)).await.unwrap_err();
        assert!(
            matches!(&again, StoreError::Replayed(first) if **first == claim),
            "{again:?}"
        );
        assert_eq!(count().await.unwrap(), 2);
        // Writes of calls without a key are not affected.
        record(&store).await.unwrap();
        assert_eq!(count().await.unwrap(), 3);
        store.close(std::time::Duration::from_secs(5)).await;
    }
}
