//! The sweep of leavers and movers: after every reload, after an offboarding, and at start,
//! the open requests are held against the standing of their people ([`Broker::enforce`]; the
//! rules are in the notes of [`governance`](super::governance)). Revokes run concurrently,
//! each under its request's lock like any other revoke.

use std::collections::BTreeSet;

use tokio::task::JoinSet;

use super::commit::recorded;
use super::{Broker, BrokerError};
use crate::audit::Actor;
use crate::model::{AccessRequest, Ending, Principal, RequestId, State, StateKind, Transition};
use crate::policy::{OnIneligible, Snapshot};

/// What holding the open requests against the standing of their people did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enforcement {
    /// Leases revoked (or whose revoke is being retried).
    pub revoked: Vec<RequestId>,
    /// Pending requests withdrawn.
    pub cancelled: Vec<RequestId>,
    /// Leases kept but flagged.
    pub flagged: Vec<RequestId>,
    /// Pending requests with approvals that stopped counting.
    pub voided: Vec<RequestId>,
    /// Actions that failed, with why; the next reload or start tries again.
    pub failed: Vec<String>,
}

impl Enforcement {
    /// Logs what was done, when anything was (`what` says after what: "at start", …), and
    /// each failure.
    pub fn log(&self, what: &str) {
        if *self == Self::default() {
            return;
        }
        tracing::warn!(
            revoked = self.revoked.len(),
            cancelled = self.cancelled.len(),
            flagged = self.flagged.len(),
            voided = self.voided.len(),
            failed = self.failed.len(),
            "leavers and movers lost their access {what}"
        );
        for failure in &self.failed {
            tracing::error!(%failure, "a leaver's or mover's request could not be acted on; retried at the next change, reload or start");
        }
    }
}

/// One thing to do about an open request.
enum Step {
    Revoke(String),
    Withdraw(String),
    Flag(String),
    /// Approvals of leavers at the current stage stop counting.
    Void,
}

impl Broker {
    /// Holds every open request against the standing of its people, as `actor`. See the
    /// module notes.
    pub async fn enforce(&self, actor: Actor) -> Result<Enforcement, BrokerError> {
        let _one = self.inner.reloading.lock().await;
        self.enforce_locked(actor, None).await
    }

    /// [`Broker::enforce`] with the reload lock held; with `only`, just that principal's
    /// requests and approvals.
    pub(super) async fn enforce_locked(
        &self,
        actor: Actor,
        only: Option<&Principal>,
    ) -> Result<Enforcement, BrokerError> {
        let snapshot = self.inner.rules.current();
        let open = {
            let (broker, snapshot, only) = (self.clone(), snapshot.clone(), only.cloned());
            self.inner
                .store
                .read(move |reader| {
                    // Every pending request (a leaver's approval may need voiding), and the
                    // open requests of pairs that may need a step; decoding only these keeps
                    // the sweep at start an index scan however many leases are open.
                    let mut ids: BTreeSet<RequestId> = reader
                        .ids_in_state(StateKind::Pending)?
                        .into_iter()
                        .collect();
                    ids.extend(reader.open_ids_where(&mut |requester, resource| {
                        broker.may_need_step(&snapshot, requester, resource, only.as_ref())
                    })?);
                    let mut open = Vec::new();
                    for id in ids {
                        if let Some(request) = reader.request(id)? {
                            if matches!(
                                request.kind(),
                                StateKind::Pending | StateKind::Approved | StateKind::Active
                            ) {
                                open.push(request);
                            }
                        }
                    }
                    Ok(open)
                })
                .await?
        };
        let mut running = JoinSet::new();
        let mut ids = std::collections::HashMap::new();
        for request in open {
            let Some(step) = self.step(&snapshot, &request, only) else {
                continue;
            };
            // Bounded like every other grant and revoke.
            let slot = self.effect_slot().await?;
            let broker = self.clone();
            let actor = actor.clone();
            let id = request.id;
            let task = running.spawn(async move {
                let outcome = broker.take(request, step, actor).await;
                drop(slot);
                outcome
            });
            ids.insert(task.id(), id);
        }
        let mut enforced = Enforcement::default();
        while let Some(joined) = running.join_next_with_id().await {
            let (id, outcome) = match joined {
                Ok((task, outcome)) => (ids.get(&task).copied(), outcome),
                Err(error) => (
                    ids.get(&error.id()).copied(),
                    Err(BrokerError::Invalid(format!("the action failed: {error}"))),
                ),
            };
            let Some(id) = id else { continue };
            match outcome {
                Ok(Some(list)) => match list {
                    Taken::Revoked => enforced.revoked.push(id),
                    Taken::Cancelled => enforced.cancelled.push(id),
                    Taken::Flagged => enforced.flagged.push(id),
                    Taken::Voided => enforced.voided.push(id),
                },
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%id, %error, "could not act on a leaver's or mover's request");
                    enforced.failed.push(format!("{id}: {error}"));
                }
            }
        }
        for list in [
            &mut enforced.revoked,
            &mut enforced.cancelled,
            &mut enforced.flagged,
            &mut enforced.voided,
        ] {
            list.sort();
        }
        Ok(enforced)
    }

    /// Why `request`'s requester may no longer hold what it asks for (they left, or are no
    /// longer eligible for the resource), or `None` while they may.
    pub(super) fn entitlement(&self, request: &AccessRequest) -> Option<String> {
        self.inner
            .standing
            .entitlement(&self.inner.rules.current(), request)
    }

    /// Whether an open request of `requester` for `resource` may need a [`Step`] other than
    /// voiding approvals: a superset of what [`Broker::step`] acts on, decided without the
    /// request (so for either kind of request, break-glass or not).
    fn may_need_step(
        &self,
        snapshot: &Snapshot,
        requester: &str,
        resource: &str,
        only: Option<&Principal>,
    ) -> bool {
        let (Ok(holder), Ok(resource)) = (
            requester.parse::<Principal>(),
            resource.parse::<crate::model::ResourceName>(),
        ) else {
            // Not a name this build accepts: let the full check look at the request.
            return true;
        };
        only.is_none_or(|only| *only == holder)
            && (self.inner.standing.leaving(snapshot, &holder).is_some()
                || snapshot.ineligibility(&holder, &resource, false).is_some()
                || snapshot.ineligibility(&holder, &resource, true).is_some())
    }

    /// What to do about `request` now, if anything.
    fn step(
        &self,
        snapshot: &Snapshot,
        request: &AccessRequest,
        only: Option<&Principal>,
    ) -> Option<Step> {
        let standing = &self.inner.standing;
        let holder = &request.requester;
        let concerned = only.is_none_or(|only| only == holder);
        if concerned {
            if let Some(why) = standing.leaving(snapshot, holder) {
                let why = format!("{holder} left: {why}");
                return Some(match request.kind() {
                    StateKind::Pending => Step::Withdraw(why),
                    _ => Step::Revoke(why),
                });
            }
            if let Some(why) =
                snapshot.ineligibility(holder, &request.resource, request.is_break_glass())
            {
                let flag = snapshot
                    .policy
                    .resource(&request.resource)
                    .is_some_and(|r| r.on_ineligible == OnIneligible::Flag);
                return match request.kind() {
                    StateKind::Pending => Some(Step::Withdraw(why)),
                    StateKind::Active if flag => {
                        request.flagged.is_none().then_some(Step::Flag(why))
                    }
                    _ => Some(Step::Revoke(why)),
                };
            }
        }
        let State::Pending { stage } = request.state else {
            return None;
        };
        request
            .approvals_at(stage)
            .filter(|d| only.is_none_or(|only| *only == d.approver))
            .any(|d| standing.leaving(snapshot, &d.approver).is_some())
            .then_some(Step::Void)
    }

    /// Ends lease `id` as revoked for `why` (also while its grant is still being retried).
    async fn revoke_for(
        &self,
        id: RequestId,
        why: String,
        actor: Actor,
    ) -> Result<Option<Taken>, BrokerError> {
        let ended = self
            .end_lease(
                id,
                Ending::Revoked,
                actor,
                Some(why),
                |request: &AccessRequest| {
                    Ok(matches!(
                        request.state,
                        State::Active | State::Approved { .. }
                    ))
                },
            )
            .await?;
        Ok(matches!(
            ended.state,
            State::Ended {
                ending: Ending::Revoked
            } | State::RevokeFailing {
                ending: Ending::Revoked,
                ..
            }
        )
        .then_some(Taken::Revoked))
    }

    /// Carries out `step` on `request`; `None` when it turned out to be unnecessary.
    async fn take(
        &self,
        request: AccessRequest,
        step: Step,
        actor: Actor,
    ) -> Result<Option<Taken>, BrokerError> {
        let id = request.id;
        match step {
            Step::Revoke(why) => self.revoke_for(id, why, actor).await,
            Step::Withdraw(why) => {
                let revoke_why = why.clone();
                let revoke_actor = actor.clone();
                let (request, changed) = self
                    .commit_changed(id, move |request, now| {
                        let _detail = why.clone();
                        Ok(recorded(request.withdraw(why, now), now, actor))
                    })
                    .await?;
                if changed {
                    return Ok(Some(Taken::Cancelled));
                }
                // Approved meanwhile (the approval committed before the sweep's withdrawal):
                // the lease goes instead.
                match request.kind() {
                    StateKind::Approved | StateKind::Active => {
                        self.revoke_for(id, revoke_why, revoke_actor).await
                    }
                    _ => Ok(None),
                }
            }
            Step::Flag(why) => {
                let (_, changed) = self
                    .commit_changed(id, move |request, now| {
                        Ok(recorded(request.flag(why), now, actor))
                    })
                    .await?;
                Ok(changed.then_some(Taken::Flagged))
            }
            Step::Void => {
                let standing = self.inner.standing.clone();
                let rules = self.inner.rules.clone();
                let (_, changed) = self
                    .commit_changed(id, move |request, now| {
                        let (request, drafts) =
                            standing.void_leavers(&rules.current(), request, &actor, now);
                        Ok(if drafts.is_empty() {
                            (Transition::Unchanged(request), drafts)
                        } else {
                            (Transition::Changed(request, Vec::new()), drafts)
                        })
                    })
                    .await?;
                Ok(changed.then_some(Taken::Voided))
            }
        }
    }
}

/// What [`Broker::take`] did.
enum Taken {
    Revoked,
    Cancelled,
    Flagged,
    Voided,
}
