//! Who may act now: the directory in force, and the principals an administrator offboarded.
//!
//! Checked when a call is authenticated, and again inside the write transaction that stores a
//! new request or a decision. Offboarding and reloads change the standing inside a write
//! transaction too, so every such commit is ordered against them: it either lands before the
//! change (and the leaver sweep that follows finds it) or sees the change and is refused.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::BrokerError;
use crate::model::{Offboarding, Principal};
use crate::policy::Live;

/// The directory in force plus the offboarded principals. Cloning shares both.
#[derive(Clone, Debug)]
pub(super) struct Standing {
    rules: Live,
    // A std lock: held only to read or change the map, never across an await.
    offboarded: Arc<RwLock<BTreeMap<Principal, Offboarding>>>,
}

impl Standing {
    pub(super) fn new(rules: Live) -> Self {
        Self {
            rules,
            offboarded: Arc::default(),
        }
    }

    /// Fails unless `principal` is in the directory, active and not offboarded.
    pub(super) fn check(&self, principal: &Principal) -> Result<(), BrokerError> {
        if let Some(offboarding) = self.offboarding(principal) {
            return Err(BrokerError::Offboarded {
                principal: principal.clone(),
                by: offboarding.by,
                reason: offboarding.reason,
            });
        }
        match self.rules.current().directory.person(principal) {
            None => Err(BrokerError::UnknownPrincipal(principal.clone())),
            Some(person) if !person.is_active() => Err(BrokerError::Suspended(principal.clone())),
            Some(_) => Ok(()),
        }
    }

    /// Why `principal` counts as a leaver now, or `None`.
    pub(super) fn leaving(
        &self,
        snapshot: &crate::policy::Snapshot,
        principal: &Principal,
    ) -> Option<String> {
        if let Some(offboarding) = self.offboarding(principal) {
            return Some(format!(
                "offboarded by {}: {}",
                offboarding.by, offboarding.reason
            ));
        }
        snapshot.leaving(principal).map(str::to_owned)
    }

    /// The offboarding of `principal`, if any.
    pub(super) fn offboarding(&self, principal: &Principal) -> Option<Offboarding> {
        self.read().get(principal).cloned()
    }

    /// Every offboarded principal.
    pub(super) fn all(&self) -> Vec<Offboarding> {
        self.read().values().cloned().collect()
    }

    /// Records `offboarding` (call inside the write transaction that stores it).
    pub(super) fn offboard(&self, offboarding: Offboarding) {
        self.write()
            .insert(offboarding.principal.clone(), offboarding);
    }

    /// Lifts the offboarding of `principal` (call inside the write transaction that removes it).
    pub(super) fn reinstate(&self, principal: &Principal) {
        self.write().remove(principal);
    }

    /// Replaces every offboarding with `loaded` (from the store, at start).
    pub(super) fn load(&self, loaded: Vec<Offboarding>) {
        let mut map = self.write();
        map.clear();
        map.extend(loaded.into_iter().map(|o| (o.principal.clone(), o)));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Principal, Offboarding>> {
        match self.offboarded.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Principal, Offboarding>> {
        match self.offboarded.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
