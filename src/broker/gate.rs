//! The gate every call passes: who the caller is now, by the directory in force and the
//! offboardings, and the record of callers refused. Every gRPC service holds it; the transport
//! holds it to record callers whose certificate was revoked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::standing::Standing;
use super::{BrokerError, Caller, Trail};
use crate::audit::{Actor, entry};
use crate::clock::SharedClock;
use crate::model::{Happened, Principal, Timestamp};
use crate::policy::Live;

/// Refused principals remembered before the memory is cleared (a flood of distinct names).
const REMEMBERED: usize = 10_000;

/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Gate {
    /// The policy and directory in force (shared with the workflow, swapped by reloads).
    rules: Live,
    /// The offboarded principals (shared with the workflow, which changes them).
    standing: Standing,
    /// The daemon's one clock.
    clock: SharedClock,
    /// Where refusals are recorded.
    trail: Trail,
    /// When each refused principal was last recorded, so that a client retrying in a loop
    /// does not flood the audit trail. A std lock, never held across an await.
    refusals: Arc<Mutex<HashMap<Principal, Timestamp>>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Gate {
    pub(super) fn new(rules: Live, standing: Standing, clock: SharedClock, trail: Trail) -> Self {
        Self {
            rules,
            standing,
            clock,
            trail,
            refusals: Arc::default(),
        }
    }

    /// Checks the caller against the directory in force and returns their roles.
    pub fn authenticate(&self, principal: Principal) -> Result<Caller, BrokerError> {
        let snapshot = self.rules.current();
        if let Err(error) = self.standing.check(&principal) {
            let why = match &error {
                BrokerError::UnknownPrincipal(_) => "not in the directory",
                BrokerError::Offboarded { .. } => "offboarded",
                _ => "suspended",
            };
            self.record_refusal(&principal, why);
            return Err(error);
        }
        let Some(person) = snapshot.directory.person(&principal) else {
            return Err(BrokerError::UnknownPrincipal(principal));
        };
        Ok(Caller {
            groups: person.groups.iter().cloned().collect(),
            manager: person.manager.clone(),
            auditor: snapshot.is_auditor(&principal),
            admin: snapshot.is_admin(&principal),
            principal,
        })
    }

    /// Records that a caller with a valid certificate was refused, at most once a minute per
    /// principal.
    pub fn record_refusal(&self, principal: &Principal, why: &'static str) {
        let now = self.clock.now();
        {
            let mut seen = match self.refusals.lock() {
                Ok(seen) => seen,
                Err(poisoned) => poisoned.into_inner(),
            };
            if seen
                .get(principal)
                .is_some_and(|last| now.saturating_duration_since(*last) < Duration::from_secs(60))
            {
                return;
            }
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.insert(principal.clone(), now);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let draft = entry::of(
            now,
            Actor::Principal(principal.clone()),
            Happened::AuthRefused {
                principal: principal.clone(),
                reason: why,
            },
        );
        let trail = self.trail.clone();
        runtime.spawn(async move {
            if let Err(error) = trail.record(draft).await {
                tracing::warn!(%error, "could not record a refused caller");
            }
        });
    }
}
