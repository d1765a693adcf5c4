//! Async locks keyed by a value: at most one holder per key at a time. A key's entry exists
//! only while someone holds or waits for it. The broker locks request ids around side effects
//! on targets; provisioners lock the target they change.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

type Slot = Arc<tokio::sync::Mutex<()>>;

/// Locks by key. Cloning shares them.
#[derive(Debug)]
pub struct KeyedLocks<K> {
    // A std mutex: held only to look up or remove a slot, never across an await.
    slots: Arc<Mutex<HashMap<K, Slot>>>,
}

impl<K> Clone for KeyedLocks<K> {
    fn clone(&self) -> Self {
        Self {
            slots: self.slots.clone(),
        }
    }
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            slots: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// Holds the lock of one key until dropped.
pub struct Held<K: Eq + Hash> {
    guard: Option<OwnedMutexGuard<()>>,
    slot: Slot,
    key: Option<K>,
    locks: KeyedLocks<K>,
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<K, Slot>> {
        match self.slots.lock() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Waits for and takes the lock of `key`.
    pub async fn lock(&self, key: K) -> Held<K> {
        let slot = self.slots().entry(key.clone()).or_default().clone();
        let guard = slot.clone().lock_owned().await;
        Held {
            guard: Some(guard),
            slot,
            key: Some(key),
            locks: self.clone(),
        }
    }

    /// Takes the lock of `key` if nobody holds it, without waiting.
    pub fn try_lock(&self, key: K) -> Option<Held<K>> {
        let slot = self.slots().entry(key.clone()).or_default().clone();
        let Ok(guard) = slot.clone().try_lock_owned() else {
            // The holder may have let go meanwhile, seeing this attempt's reference: the slot
            // is then removed here, as its holder would have.
            drop(slot);
            let mut slots = self.slots();
            if slots
                .get(&key)
                .is_some_and(|slot| Arc::strong_count(slot) == 1)
            {
                slots.remove(&key);
            }
            return None;
        };
        Some(Held {
            guard: Some(guard),
            slot,
            key: Some(key),
            locks: self.clone(),
        })
    }

    /// Keys with a holder or a waiter (for tests: a released key leaves nothing behind).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    /// Whether no key is held or awaited.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Eq + Hash> Drop for Held<K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut slots = match self.locks.slots.lock() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The map and this holder are the only references left: nobody waits.
        if Arc::strong_count(&self.slot) == 2 {
            if let Some(key) = self.key.take() {
                slots.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn serializes_one_key_and_cleans_up() {
        let locks = KeyedLocks::default();
        let held = locks.lock(1u64).await;
        let other = locks.clone();
        let waiter = tokio::spawn(async move {
            let _held = other.lock(1u64).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a second holder got the lock");
        let unrelated = locks.lock(2).await;
        assert!(locks.try_lock(1).is_none(), "try_lock took a held key");
        drop(held);
        waiter.await.unwrap();
        drop(unrelated);
        assert!(locks.is_empty());
    }
}
