//! One lock per request id, held around every side effect on the target (grant, revoke) and
//! the commit that records it, so the timer, an RPC and recovery never act on one lease at the
//! same time. Entries are removed when the last holder or waiter lets go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::model::RequestId;

type Slot = Arc<tokio::sync::Mutex<()>>;

/// The per-id locks.
#[derive(Clone, Default)]
pub(crate) struct Locks {
    // A std mutex: held only to look up or remove a slot, never across an await.
    slots: Arc<Mutex<HashMap<RequestId, Slot>>>,
}

/// Holds the lock of one id until dropped.
pub(crate) struct Held {
    guard: Option<OwnedMutexGuard<()>>,
    slot: Slot,
    id: RequestId,
    locks: Locks,
}

impl Locks {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Slot>> {
        match self.slots.lock() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Waits for and takes the lock of `id`.
    pub(crate) async fn lock(&self, id: RequestId) -> Held {
        let slot = self.slots().entry(id).or_default().clone();
        let guard = slot.clone().lock_owned().await;
        Held {
            guard: Some(guard),
            slot,
            id,
            locks: self.clone(),
        }
    }

    /// Ids with a holder or a waiter (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots().len()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut slots = self.locks.slots();
        // The map and this holder are the only references left: nobody waits.
        if Arc::strong_count(&self.slot) == 2 {
            slots.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn serializes_one_id_and_cleans_up() {
        let locks = Locks::default();
        let id = RequestId::from_raw(1);
        let held = locks.lock(id).await;
        let other = locks.clone();
        let waiter = tokio::spawn(async move {
            let _held = other.lock(id).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a second holder got the lock");
        let _unrelated = locks.lock(RequestId::from_raw(2)).await;
        drop(held);
        waiter.await.unwrap();
        drop(_unrelated);
        assert_eq!(locks.len(), 0);
    }
}
