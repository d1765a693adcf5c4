//! Who may act now: the directory in force, and the principals an administrator offboarded.
//!
//! Checked when a call is authenticated, and again inside the write transaction that stores a
//! new request or a decision. Offboarding and reloads change the standing inside a write
//! transaction too, so every such commit is ordered against them: it either lands before the
//! change (and the leaver sweep that follows finds it) or sees the change and is refused.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::BrokerError;
use crate::audit::entry;
use crate::model::{Offboarding, Principal, Transition};
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

    /// Why `request`'s requester may no longer hold what it asks for under `snapshot` (they
    /// left, or are no longer eligible for the resource), or `None` while they may.
    pub(super) fn entitlement(
        &self,
        snapshot: &crate::policy::Snapshot,
        request: &crate::model::AccessRequest,
    ) -> Option<String> {
        let holder = &request.requester;
        if let Some(why) = self.leaving(snapshot, holder) {
            return Some(format!("{holder} left: {why}"));
        }
        snapshot.ineligibility(holder, &request.resource, request.is_break_glass())
    }

    /// Stops counting the approvals that people who left gave at `request`'s current stage;
    /// returns the request and an audit draft per approver voided.
    pub(super) fn void_leavers(
        &self,
        snapshot: &crate::policy::Snapshot,
        mut request: crate::model::AccessRequest,
        actor: &crate::audit::Actor,
        now: crate::model::Timestamp,
    ) -> (crate::model::AccessRequest, Vec<crate::audit::Draft>) {
        let mut drafts = Vec::new();
        let stage = match request.state {
            crate::model::State::Pending { stage } => stage,
            _ => return (request, drafts),
        };
        let leavers: Vec<(Principal, String)> = request
            .approvals_at(stage)
            .filter_map(|d| {
                self.leaving(snapshot, &d.approver)
                    .map(|why| (d.approver.clone(), format!("{} left: {why}", d.approver)))
            })
            .collect();
        for (approver, why) in leavers {
            request = match request.void_approvals(&approver, &why) {
                Transition::Changed(request, happened) => {
                    drafts.extend(
                        happened
                            .into_iter()
                            .map(|happened| entry::about(&request, now, actor.clone(), happened)),
                    );
                    request
                }
                Transition::Unchanged(request) => request,
            };
        }
        (request, drafts)
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
