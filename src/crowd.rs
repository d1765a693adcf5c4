//! Admission under a crowd: work in progress (a TLS handshake, a metrics connection) is
//! registered with the IP address it serves; past `total` entries, or `per_address` from one
//! address, the oldest entry (of that address, or overall) is told to stop. A flood of slow
//! peers then holds a bounded number of file descriptors, and a newcomer — an honest client
//! whose work takes milliseconds — is always let in rather than queued behind the flood.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

/// Caps on entries in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// In progress at once, overall.
    pub total: usize,
    /// In progress at once from one IP address.
    pub per_address: usize,
}

#[derive(Debug, Default)]
struct Entries {
    next: u64,
    /// Every entry by age (ids grow), with its address and stop token.
    all: std::collections::BTreeMap<u64, (IpAddr, CancellationToken)>,
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
}

impl Entries {
    fn remove(&mut self, id: u64) -> Option<CancellationToken> {
        let (address, token) = self.all.remove(&id)?;
        if let Some(mine) = self.by_address.get_mut(&address) {
            mine.remove(&id);
            if mine.is_empty() {
                self.by_address.remove(&address);
            }
        }
        Some(token)
    }
}

/// The entries in progress. Cloning shares them; a short `std::sync::Mutex`, nothing awaits
/// under it.
#[derive(Clone, Debug)]
pub struct Crowd {
    caps: Caps,
    entries: Arc<Mutex<Entries>>,
}

impl Crowd {
    /// An empty crowd with `caps`.
    pub fn new(caps: Caps) -> Self {
        Self {
            caps,
            entries: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        match self.entries.lock() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Registers an entry from `address`, and stops the oldest ones past the caps. Returns the
    /// entry (it leaves the crowd when dropped) and how many older ones were stopped.
    pub fn enter(&self, address: IpAddr) -> (Entry, usize) {
        let stop = CancellationToken::new();
        let mut entries = self.lock();
        let id = entries.next;
        entries.next += 1;
        entries.all.insert(id, (address, stop.clone()));
        let mine = entries.by_address.entry(address).or_default();
        mine.insert(id);
        let mut stopped = Vec::new();
        if mine.len() > self.caps.per_address {
            stopped.extend(mine.first().copied());
        }
        let over = (entries.all.len() - stopped.len()).saturating_sub(self.caps.total);
        let oldest: Vec<u64> = entries
            .all
            .keys()
            .filter(|old| !stopped.contains(old))
            .take(over)
            .copied()
            .collect();
        stopped.extend(oldest);
        let count = stopped.len();
        for old in stopped {
            if let Some(token) = entries.remove(old) {
                token.cancel();
            }
        }
        drop(entries);
        (
            Entry {
                crowd: self.clone(),
                id,
                stop,
            },
            count,
        )
    }
}

/// One entry of a [`Crowd`]; it leaves when dropped.
#[derive(Debug)]
pub struct Entry {
    crowd: Crowd,
    id: u64,
    stop: CancellationToken,
}

impl Entry {
    /// Completes when a newer entry took this one's place.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.crowd.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_make_room_per_address_then_overall() {
        let crowd = Crowd::new(Caps {
            total: 3,
            per_address: 2,
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let (a1, dropped) = crowd.enter(a);
        assert_eq!(dropped, 0);
        let (a2, _) = crowd.enter(a);
        // A third from `a` stops the oldest of `a`.
        let (a3, dropped) = crowd.enter(a);
        assert_eq!(dropped, 1);
        assert!(a1.stop.is_cancelled() && !a2.stop.is_cancelled());
        // Room for `b`; then the total cap stops the oldest overall.
        let (b1, dropped) = crowd.enter(b);
        assert_eq!(dropped, 0);
        let (b2, dropped) = crowd.enter(b);
        assert_eq!(dropped, 1);
        assert!(a2.stop.is_cancelled() && !a3.stop.is_cancelled());
        assert!(!b1.stop.is_cancelled() && !b2.stop.is_cancelled());
        // Leaving makes room without stopping anyone.
        drop(a3);
        let (_b3, dropped) = crowd.enter(b);
        assert_eq!(dropped, 1, "per address: b1 is the oldest of b");
        assert!(b1.stop.is_cancelled());
        assert_eq!(crowd.lock().all.len(), 2);
    }
}
