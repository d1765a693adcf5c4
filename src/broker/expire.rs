//! Leases ending together: batched expiry.
//!
//! The timer hands out due ids as they fall due; when many come at once (a burst of leases
//! ending in the same second, or the overdue leases of a restart) they are taken as a batch:
//!
//! 1. each id's lock is taken if free (a request somebody is acting on goes the one-by-one
//!    way, [`Broker::drive`], after them);
//! 2. the batch's records are read in one read transaction, and those whose only due thing is
//!    the end of an active lease stay in the batch, each with its grant's lock (a grant another
//!    lease of the batch, or anybody else, is changing goes the one-by-one way too);
//! 3. the other live leases that could share each grant are read in one more read transaction
//!    (a lease sharing its grant with a live one keeps it, as always);
//! 4. the revokes run concurrently through the provisioners, bounded by the effect slots;
//! 5. their outcomes are committed as they arrive, whatever has arrived in one write job:
//!    fast targets make one transaction for the batch, a slow one holds back only its own
//!    leases. Inside the job each record is read once and stored once.
//!
//! Every lock is held until the lease's outcome is committed, as on the one-by-one way, so the
//! same invariants hold: a revoke is committed only after the target confirmed it, a grant
//! shared with a live lease is kept, and nothing changes a request between its read and its
//! commit.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{JoinHandle, JoinSet};

use super::commit::recorded;
use super::{Broker, BrokerError};
use crate::audit::Actor;
use crate::keyed::Held;
use crate::model::{
    AccessRequest, Due, Ending, Principal, RequestId, ResourceName, State, Timestamp, Transition,
};
use crate::provision::{LeaseTarget, ProvisionError, Provisioner};
use crate::store::Changes;

/// Due ids taken together at most.
pub(super) const BATCH: usize = 4096;

/// How long the outcomes of a batch's revokes are gathered into one write job.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// A lease of the batch, with the locks it holds until its outcome is committed.
struct Member {
    request: AccessRequest,
    provisioner: Arc<dyn Provisioner>,
    target: LeaseTarget,
    key: String,
    /// A live lease holding the same grant, which keeps it.
    kept_for: Option<RequestId>,
    /// What the provisioner adds to the end's audit entry.
    note: Option<String>,
    _request_lock: Held<RequestId>,
    _grant_lock: Held<(String, String)>,
}

/// What a write job needs of an answered member.
struct Outcome {
    id: RequestId,
    result: Result<(), String>,
    at: Timestamp,
    note: Option<String>,
    kept_for: Option<RequestId>,
}

/// A member whose revoke answered: the outcome and when.
struct Answered {
    member: Member,
    outcome: Result<(), String>,
    at: Timestamp,
}

impl Broker {
    /// Drives `ids` (due now, as far as the timer knows): the ends of active leases as one
    /// batch, everything else one by one on tasks of its own. Returns those tasks; the batch
    /// itself is done (committed, or re-armed for a retry) when this returns.
    pub(super) async fn drive_due(&self, ids: Vec<RequestId>) -> Vec<JoinHandle<()>> {
        // Effect slots first, locks after, and never the other way round: whoever holds a slot
        // may be waiting for a request's lock (a sweep, a one-by-one drive), so a batch holding
        // locks must not wait for a slot.
        let Ok(slots) = self.batch_slots(ids.len()).await else {
            return Vec::new();
        };
        let mut seen = HashSet::with_capacity(ids.len());
        let mut locked = Vec::with_capacity(ids.len());
        let mut slow = Vec::new();
        for id in ids {
            if !seen.insert(id) {
                continue;
            }
            match self.inner.effects.requests.try_lock(id) {
                Some(held) => locked.push((id, held)),
                None => slow.push(id),
            }
        }
        let members = match self.members(locked, &mut slow).await {
            Ok(members) => members,
            Err(error) => {
                tracing::warn!(%error, "reading a batch of due leases failed; driving them one by one");
                Vec::new()
            }
        };
        let mut handles = self.drive_each(slow);
        if !members.is_empty() {
            // A lease whose review fell due too (a restart after both) is driven on at once.
            let still_due = self.expire(members, slots).await;
            handles.extend(self.drive_each(still_due));
        }
        handles.retain(|handle| !handle.is_finished());
        handles
    }

    /// The effect slots a batch of `due` ids revokes with: waits for one (holding no lock),
    /// then takes what else is free, up to half of all slots, so that a batch stuck on a slow
    /// target leaves room for the others.
    async fn batch_slots(&self, due: usize) -> Result<OwnedSemaphorePermit, BrokerError> {
        let mut slots = self.effect_slot().await?;
        let all = &self.inner.effects.slots;
        let more = due
            .min(self.inner.settings.max_concurrent_effects / 2)
            .saturating_sub(1)
            .min(all.available_permits());
        if let Ok(taken) = all.clone().try_acquire_many_owned(more as u32)
            && more > 0
        {
            slots.merge(taken);
        }
        Ok(slots)
    }

    /// Drives each of `ids` on a task of its own, each once it has an effect slot, re-arming
    /// the timer of those that fail.
    fn drive_each(&self, ids: Vec<RequestId>) -> Vec<JoinHandle<()>> {
        ids.into_iter()
            .map(|id| {
                let driver = self.clone();
                self.inner.effects.tasks.spawn(async move {
                    let Ok(slot) = driver.effect_slot().await else {
                        return;
                    };
                    if let Err(error) = driver.drive(id).await {
                        tracing::warn!(%id, %error, "timer action failed; it will be retried");
                        driver.rearm_later(id);
                    }
                    drop(slot);
                })
            })
            .collect()
    }

    /// The leases among `locked` whose end is due now and whose grant's lock is free, with
    /// whether another live lease keeps their grant. The rest (their locks let go) join `slow`.
    async fn members(
        &self,
        locked: Vec<(RequestId, Held<RequestId>)>,
        slow: &mut Vec<RequestId>,
    ) -> Result<Vec<Member>, BrokerError> {
        let ids: Vec<RequestId> = locked.iter().map(|(id, _)| *id).collect();
        let read = self
            .inner
            .store
            .read(move |reader| {
                ids.iter()
                    .map(|id| reader.request(*id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
        let records = match read {
            Ok(records) => records,
            Err(error) => {
                slow.extend(locked.into_iter().map(|(id, _)| id));
                return Err(error.into());
            }
        };
        let now = self.inner.clock.now();
        let mut members = Vec::with_capacity(records.len());
        let mut grants = HashSet::new();
        for ((id, held), record) in locked.into_iter().zip(records) {
            // Gone: nothing to do (as `drive` finds).
            let Some(request) = record else { continue };
            match self.member(request, now, held, &mut grants) {
                Some(member) => members.push(member),
                None => slow.push(id),
            }
        }
        // The other open requests that could hold each member's grant, in one read.
        let asks: Vec<(Principal, Option<ResourceName>, RequestId)> = members
            .iter()
            .map(|member| {
                let resource = (!member.provisioner.keys_span_resources())
                    .then(|| member.request.resource.clone());
                (
                    member.request.requester.clone(),
                    resource,
                    member.request.id,
                )
            })
            .collect();
        let read = self
            .inner
            .store
            .read(move |reader| {
                asks.iter()
                    .map(|(principal, resource, id)| {
                        reader.open_of_except(principal, resource.as_ref(), *id)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
        let others = match read {
            Ok(others) => others,
            Err(error) => {
                slow.extend(members.iter().map(|member| member.request.id));
                return Err(error.into());
            }
        };
        for (member, others) in members.iter_mut().zip(others) {
            member.kept_for =
                Self::covering_among(&member.request, &member.provisioner, &member.key, &others);
        }
        Ok(members)
    }

    /// `request` as a member of the batch, when the end of its active lease is what is due and
    /// its grant's lock is free (and no other member holds it); `None` lets its lock go.
    fn member(
        &self,
        request: AccessRequest,
        now: Timestamp,
        held: Held<RequestId>,
        grants: &mut HashSet<(String, String)>,
    ) -> Option<Member> {
        if request.state != State::Active || request.due(now) != Some(Due::State) {
            return None;
        }
        let provisioner = self
            .inner
            .effects
            .provisioners
            .get(&request.provisioner)
            .ok()?;
        let target = Self::target(&request, request.expires_at.unwrap_or(now));
        let key = provisioner.grant_key(&target);
        let grant = (request.provisioner.clone(), key.clone());
        if !grants.insert(grant.clone()) {
            return None;
        }
        let grant_lock = self.inner.effects.grants.try_lock(grant)?;
        let note = provisioner.expiry_note().map(str::to_owned);
        Some(Member {
            request,
            provisioner: provisioner.clone(),
            target,
            key,
            kept_for: None,
            note,
            _request_lock: held,
            _grant_lock: grant_lock,
        })
    }

    /// Revokes the members concurrently, as many at once as the batch holds effect `slots`,
    /// and commits their outcomes as they arrive; returns the ids of those with something else
    /// due already (their locks let go).
    async fn expire(&self, members: Vec<Member>, slots: OwnedSemaphorePermit) -> Vec<RequestId> {
        let bound = Arc::new(tokio::sync::Semaphore::new(slots.num_permits().max(1)));
        let mut running = JoinSet::new();
        let mut answered = Vec::new();
        let mut unstarted = Vec::new();
        // Revokes started whose outcome is not back yet.
        let mut pending = HashSet::new();
        let mut still_due = Vec::new();
        for member in members {
            // Credentials nobody collected die with the lease.
            drop(self.inner.effects.credentials.take(member.request.id));
            if member.kept_for.is_some() {
                let at = self.inner.clock.now();
                answered.push(Answered {
                    member,
                    outcome: Ok(()),
                    at,
                });
                continue;
            }
            let Ok(slot) = bound.clone().acquire_owned().await else {
                unstarted.push(member.request.id);
                continue;
            };
            let clock = self.inner.clock.clone();
            pending.insert(member.request.id);
            running.spawn(async move {
                let outcome = member
                    .provisioner
                    .revoke(&member.target)
                    .await
                    .map_err(|ProvisionError(error)| error);
                drop(slot);
                Answered {
                    member,
                    outcome,
                    at: clock.now(),
                }
            });
        }
        loop {
            if answered.is_empty() {
                match running.join_next().await {
                    Some(Ok(one)) => answered.push(one),
                    // A revoke that panicked lost its member (and let its locks go): its timer
                    // is re-armed below.
                    Some(Err(_)) => continue,
                    None => break,
                }
            }
            // Outcomes arriving within moments of the first share its write job: a burst on a
            // fast target commits whole, and one slow revoke delays the others by `GATHER` at
            // most.
            let until = tokio::time::Instant::now() + GATHER;
            while let Ok(Some(joined)) = tokio::time::timeout_at(until, running.join_next()).await {
                if let Ok(one) = joined {
                    answered.push(one);
                }
            }
            for one in &answered {
                pending.remove(&one.member.request.id);
            }
            still_due.extend(self.commit_ends(std::mem::take(&mut answered)).await);
        }
        for id in unstarted.into_iter().chain(pending) {
            self.rearm_later(id);
        }
        drop(slots);
        still_due
    }

    /// Commits the outcomes of `answered` in one write job, each record read and stored once;
    /// re-arms their timers if the write fails. Their locks are let go afterwards. Returns the
    /// ids of those with something else due already.
    async fn commit_ends(&self, answered: Vec<Answered>) -> Vec<RequestId> {
        let record = self.inner.record.clone();
        let clock = self.inner.clock.clone();
        let backoff = self.inner.settings.backoff;
        let outcomes: Vec<Outcome> = answered
            .iter()
            .map(|one| Outcome {
                id: one.member.request.id,
                result: one.outcome.clone(),
                at: one.at,
                note: one.member.note.clone(),
                kept_for: one.member.kept_for,
            })
            .collect();
        let written = self
            .inner
            .store
            .write(move |view| -> Result<_, BrokerError> {
                let now = clock.now();
                let mut changes = Changes::default();
                let mut ended = Vec::with_capacity(outcomes.len());
                for Outcome {
                    id,
                    result,
                    at,
                    note,
                    kept_for,
                } in outcomes
                {
                    let Some(request) = view.request(id)? else {
                        continue;
                    };
                    let old = request.clone();
                    let transition = match result {
                        Ok(()) => request.revoke_succeeded(Ending::Expired, at, note, kept_for),
                        Err(error) => {
                            let retry_at = at.saturating_add(backoff.delay(1));
                            request.revoke_failed(Ending::Expired, error, retry_at, note)
                        }
                    };
                    // Anything else that could have changed it waited for its lock.
                    let Ok(transition) = transition else { continue };
                    if let (Transition::Changed(new, _), drafts) =
                        recorded(transition, at, Actor::System)
                    {
                        let (more, new) = record.changes(Some(&old), new, drafts, now);
                        changes.absorb(more);
                        ended.push(new);
                    }
                }
                Ok((changes, ended))
            })
            .await;
        let mut still_due = Vec::new();
        match written {
            Ok(ended) => {
                let now = self.inner.clock.now();
                for request in &ended {
                    if request.due(now).is_some() {
                        still_due.push(request.id);
                    }
                    match &request.state {
                        State::RevokeFailing { attempts, .. } => {
                            tracing::warn!(id = %request.id, attempt = attempts.count, error = attempts.last_error.as_deref().unwrap_or_default(), retry_at = %attempts.retry_at, "revoke failed; access is still held");
                        }
                        _ => {
                            tracing::info!(id = %request.id, holder = %request.requester, resource = %request.resource, state = %request.kind(), "access revoked");
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, leases = answered.len(), "committing a batch of ended leases failed; they will be retried");
                for one in &answered {
                    self.rearm_later(one.member.request.id);
                }
            }
        }
        drop(answered);
        still_due
    }
}
