//! Governance: reloads, offboarding and reinstatement, and the rules of the sweep of leavers
//! and movers that follows each (the sweep itself is [`sweep`](super::sweep)).
//!
//! - A reload reads the policy and directory files again. A file that fails validation is
//!   refused with its reason (audited as `policy.reload_rejected`) and the snapshot in force
//!   stays; a good one is put in force and audited with the old and new version hashes
//!   (`policy.reloaded`).
//! - After every reload, after an offboarding, and at start, the open requests are held
//!   against the standing of their people ([`Broker::enforce`]):
//!   - a **leaver** (removed from the directory, suspended, or offboarded by an administrator)
//!     loses every lease at once (revoked, also while its grant is still being retried), their
//!     pending requests are withdrawn, and approvals they gave at a stage whose quorum is not
//!     reached yet stop counting (`request.approval_voided`);
//!   - a **mover** (still active, but no longer in a group eligible for the resource, or the
//!     resource is gone from the policy) loses the leases they are no longer eligible for —
//!     or, where the resource says `on_ineligible = "flag"`, keeps them to their end, flagged
//!     (`lease.flagged`) — and their pending requests for it are withdrawn.
//!
//!   Every action carries its reason in the record and its audit event. Revokes run
//!   concurrently, each under its request's lock like any other revoke.
//! - Offboarding is recorded in the store (it outlives restarts and reloads) until an
//!   administrator reinstates the principal; the directory still decides after that.

use std::collections::BTreeSet;

use super::sweep::Enforcement;
use super::{Broker, BrokerError, Caller};
use crate::audit::{Actor, entry};
use crate::model::{Happened, Offboarding, Principal, Reason};
use crate::policy::Snapshot;
use crate::store::Changes;

/// What a reload put in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The policy's version hash.
    pub policy_version: String,
    /// The directory's version hash.
    pub directory_version: String,
    /// Whether either file changed.
    pub changed: bool,
    /// What holding the open requests against the new files did.
    pub enforced: Enforcement,
}

impl Broker {
    /// Reloads the policy and directory as `caller`, an administrator.
    pub async fn admin_reload(&self, caller: &Caller) -> Result<Reloaded, BrokerError> {
        caller.require_admin("reloading the policy and directory")?;
        let broker = self.clone();
        let actor = Actor::Principal(caller.principal.clone());
        // On a tracked task: a caller giving up never cuts the sweep short.
        self.inner
            .effects
            .tasks
            .spawn(async move { broker.reload(actor).await })
            .await
            .map_err(|_| BrokerError::ShuttingDown)?
    }

    /// Reads the policy and directory files again and puts them in force if they are valid;
    /// then holds the open requests against them. See the module notes.
    pub async fn reload(&self, actor: Actor) -> Result<Reloaded, BrokerError> {
        let Some(files) = self.inner.settings.rule_files.clone() else {
            return Err(BrokerError::ReloadRejected(
                "this daemon was not started from policy and directory files".to_owned(),
            ));
        };
        let _one = self.inner.reloading.lock().await;
        let configured: BTreeSet<&str> = self.inner.effects.provisioners.names().collect();
        let old = self.inner.rules.current();
        let loaded = match &files.directory {
            Some(directory) => Snapshot::load(&files.policy, directory),
            // The directory of record is pushed over SCIM: only the policy is read again.
            None => crate::policy::Policy::load(&files.policy).map(|policy| Snapshot {
                policy,
                directory: old.directory.clone(),
            }),
        }
        .and_then(|snapshot| {
            snapshot
                .check_provisioners(&files.policy, &configured)
                .map_err(crate::policy::LoadError::Invalid)?;
            Ok(snapshot)
        });
        let now = self.inner.clock.now();
        let snapshot = match loaded {
            Ok(snapshot) => snapshot,
            Err(error) => {
                let message = error.to_string();
                tracing::error!(error = %message, "reload refused; the policy and directory in force stay");
                let draft = entry::of(
                    now,
                    actor,
                    Happened::PolicyReloadRejected {
                        error: message.clone(),
                        policy_version: old.policy.version().to_owned(),
                        directory_version: old.directory.version().to_owned(),
                    },
                );
                self.record(draft).await?;
                return Err(BrokerError::ReloadRejected(message));
            }
        };
        let policy_version = snapshot.policy.version().to_owned();
        let directory_version = snapshot.directory.version().to_owned();
        let changed =
            policy_version != old.policy.version() || directory_version != old.directory.version();
        let draft = entry::of(
            now,
            actor.clone(),
            Happened::PolicyReloaded {
                old_policy_version: old.policy.version().to_owned(),
                new_policy_version: policy_version.clone(),
                old_directory_version: old.directory.version().to_owned(),
                new_directory_version: directory_version.clone(),
                changed,
            },
        );
        // Put in force inside the transaction that records it, so that every request or
        // decision committed after it was checked against the new files.
        let rules = self.inner.rules.clone();
        let written = self
            .inner
            .store
            .write(move |_| -> Result<_, BrokerError> {
                rules.replace(snapshot);
                Ok((
                    Changes {
                        events: vec![draft],
                        ..Changes::default()
                    },
                    (),
                ))
            })
            .await;
        if let Err(error) = written {
            // Not recorded: not in force either.
            self.inner.rules.restore(old);
            return Err(error);
        }
        tracing::info!(policy = %policy_version, directory = %directory_version, changed, "policy and directory reloaded");
        let enforced = self.enforce_locked(actor, None).await?;
        Ok(Reloaded {
            policy_version,
            directory_version,
            changed,
            enforced,
        })
    }

    /// Offboards `principal` as `caller`, an administrator: they can make no call from now on,
    /// their leases are revoked, their pending requests withdrawn and their approvals of
    /// undecided stages voided.
    pub async fn offboard(
        &self,
        caller: &Caller,
        principal: Principal,
        reason: Reason,
    ) -> Result<Enforcement, BrokerError> {
        caller.require_admin("offboarding")?;
        let broker = self.clone();
        let caller = caller.clone();
        // On a tracked task: a caller giving up never cuts the sweep short.
        self.inner
            .effects
            .tasks
            .spawn(async move { broker.offboard_now(&caller, principal, reason).await })
            .await
            .map_err(|_| BrokerError::ShuttingDown)?
    }

    /// [`Broker::offboard`], on the caller's task. Offboarding someone already offboarded
    /// keeps the first record and runs the sweep again (to retry what failed).
    async fn offboard_now(
        &self,
        caller: &Caller,
        principal: Principal,
        reason: Reason,
    ) -> Result<Enforcement, BrokerError> {
        if principal == caller.principal {
            return Err(BrokerError::Invalid(
                "you cannot offboard yourself; ask another administrator".to_owned(),
            ));
        }
        self.require_known(&principal).await?;
        let _one = self.inner.reloading.lock().await;
        if self.inner.standing.offboarding(&principal).is_some() {
            return self
                .enforce_locked(Actor::Principal(caller.principal.clone()), Some(&principal))
                .await;
        }
        let offboarding = Offboarding {
            principal: principal.clone(),
            at: self.inner.clock.now(),
            by: caller.principal.clone(),
            reason: reason.to_string(),
        };
        let draft = entry::of(
            offboarding.at,
            Actor::Principal(caller.principal.clone()),
            Happened::Offboarded {
                principal: principal.clone(),
                reason,
            },
        );
        let standing = self.inner.standing.clone();
        let written = self
            .inner
            .store
            .write(move |_| -> Result<_, BrokerError> {
                standing.offboard(offboarding.clone());
                Ok((
                    Changes {
                        events: vec![draft],
                        offboarded: vec![offboarding],
                        ..Changes::default()
                    },
                    (),
                ))
            })
            .await;
        if let Err(error) = written {
            // Not stored: not in force either.
            self.inner.standing.reinstate(&principal);
            return Err(error);
        }
        tracing::warn!(%principal, by = %caller.principal, "principal offboarded");
        self.enforce_locked(Actor::Principal(caller.principal.clone()), Some(&principal))
            .await
    }

    /// Lifts an offboarding, as `caller`, an administrator. What the principal may do is then
    /// up to the directory again; nothing that was revoked comes back.
    pub async fn reinstate(
        &self,
        caller: &Caller,
        principal: Principal,
        reason: Reason,
    ) -> Result<(), BrokerError> {
        caller.require_admin("reinstating")?;
        let _one = self.inner.reloading.lock().await;
        if self.inner.standing.offboarding(&principal).is_none() {
            return Err(BrokerError::Invalid(format!(
                "{principal} is not offboarded"
            )));
        }
        let draft = entry::of(
            self.inner.clock.now(),
            Actor::Principal(caller.principal.clone()),
            Happened::Reinstated {
                principal: principal.clone(),
                reason,
            },
        );
        let stored = principal.clone();
        self.inner
            .store
            .write(move |_| -> Result<_, BrokerError> {
                Ok((
                    Changes {
                        events: vec![draft],
                        reinstated: vec![stored],
                        ..Changes::default()
                    },
                    (),
                ))
            })
            .await?;
        // Lifted in memory only once the store says so: until then, and if the commit fails,
        // the principal stays offboarded (an offboarding, by contrast, takes effect inside its
        // transaction and is rolled back if it fails: both err on the side of no access).
        self.inner.standing.reinstate(&principal);
        Ok(())
    }

    /// Every offboarded principal, for an administrator.
    pub fn offboarded(&self, caller: &Caller) -> Result<Vec<Offboarding>, BrokerError> {
        caller.require_admin("listing offboarded principals")?;
        Ok(self.inner.standing.all())
    }

    /// Loads the offboardings from the store (at start).
    pub(super) async fn load_offboarded(&self) -> Result<(), BrokerError> {
        let loaded = self.inner.store.read(|reader| reader.offboarded()).await?;
        self.inner.standing.load(loaded);
        Ok(())
    }

    /// Fails unless `principal` is in the directory or has requests: offboarding a misspelt
    /// name would otherwise succeed and do nothing.
    async fn require_known(&self, principal: &Principal) -> Result<(), BrokerError> {
        if self
            .inner
            .rules
            .current()
            .directory
            .person(principal)
            .is_some()
        {
            return Ok(());
        }
        let who = principal.clone();
        let page = crate::model::Page {
            before: None,
            limit: 1,
        };
        let any = self
            .inner
            .store
            .read(move |reader| reader.requests_of(&who, None, page))
            .await?;
        if any.is_empty() {
            return Err(BrokerError::Invalid(format!(
                "unknown principal '{principal}': not in the directory and never made a request"
            )));
        }
        Ok(())
    }
}
