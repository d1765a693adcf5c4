//! Side effects on targets and what is due by time: grants, revokes (expiry, release, cleanup
//! of failed grants) and time-outs. Everything here runs under the request's lock; the outcome
//! of each target call is committed afterwards, with the state re-checked in the transaction.

use std::sync::Arc;

use super::commit::recorded;
use super::{Broker, BrokerError, Caller};
use crate::audit::Actor;
use crate::model::{
    AccessRequest, Due, Ending, RequestId, State, Timestamp, Transition, TransitionError,
};
use crate::provision::{LeaseTarget, ProvisionError, Provisioner};
use crate::store::Changes;

impl Broker {
    /// Drives `id` on a tracked task and waits for it, so that a caller giving up (an RPC
    /// deadline) never interrupts a grant or revoke half-way.
    pub(super) async fn drive_now(&self, id: RequestId) -> Result<AccessRequest, BrokerError> {
        let broker = self.clone();
        let task = self
            .inner
            .effects
            .tasks
            .spawn(async move { broker.drive(id).await });
        match task.await {
            Ok(result) => result?.ok_or(BrokerError::NotFound(id)),
            Err(_) => Err(BrokerError::ShuttingDown),
        }
    }

    /// Does whatever is due for `id` now, soonest first: time out a pending request, attempt
    /// its grant, expire its lease, retry its revoke, mark its review overdue, send a reminder
    /// or an early warning. When nothing is due (the wall clock stepped back after the timer
    /// fired) the timer is re-armed through the writer, so a newer deadline committed meanwhile
    /// is never overwritten by this stale one.
    pub async fn drive(&self, id: RequestId) -> Result<Option<AccessRequest>, BrokerError> {
        let _held = self.inner.effects.requests.lock(id).await;
        let Some(mut request) = self.read_request(id).await? else {
            return Ok(None);
        };
        let mut acted = false;
        // Each action moves its deadline on; the bound only guards against a surprise.
        for _ in 0..32 {
            let now = self.inner.clock.now();
            let Some(due) = request.due(now) else { break };
            acted = true;
            request = self.act(request, due, now).await?;
        }
        if !acted && request.next_deadline().is_some() {
            request = self
                .inner
                .store
                .write(move |view| -> Result<_, BrokerError> {
                    let request = view.request(id)?.ok_or(BrokerError::NotFound(id))?;
                    Ok((Changes::touch(request.clone()), request))
                })
                .await?;
        }
        Ok(Some(request))
    }

    /// Does one due thing.
    async fn act(
        &self,
        request: AccessRequest,
        due: Due,
        now: Timestamp,
    ) -> Result<AccessRequest, BrokerError> {
        let id = request.id;
        match due {
            Due::State => match request.state.clone() {
                State::Pending { .. } => {
                    self.commit(id, move |request, _| {
                        Ok(recorded(request.time_out(now), now, Actor::System))
                    })
                    .await
                }
                State::Approved { attempts }
                    if attempts.count >= self.inner.settings.grant_attempts =>
                {
                    self.revoke(request, Ending::Failed, Actor::System, None)
                        .await
                }
                State::Approved { attempts } => match self.entitlement(&request) {
                    // The requester left or stopped being eligible after the approval (a race
                    // with a reload or an offboarding): never granted; whatever earlier
                    // attempts left is removed.
                    Some(why) => {
                        self.revoke(request, Ending::Revoked, Actor::System, Some(why))
                            .await
                    }
                    None => self.grant(request, attempts.count).await,
                },
                State::Active => {
                    let note = self
                        .inner
                        .effects
                        .provisioners
                        .get(&request.provisioner)
                        .ok()
                        .and_then(|provisioner| provisioner.expiry_note())
                        .map(str::to_owned);
                    self.revoke(request, Ending::Expired, Actor::System, note)
                        .await
                }
                State::RevokeFailing { ending, .. } => {
                    self.revoke(request, ending, Actor::System, None).await
                }
                State::Denied | State::Cancelled | State::TimedOut | State::Ended { .. } => {
                    Ok(request)
                }
            },
            Due::Extension => self.apply_extension_locked(request).await,
            Due::ReviewOverdue => {
                self.commit(id, move |request, _| {
                    Ok(recorded(request.review_overdue(now), now, Actor::System))
                })
                .await
            }
            Due::ReviewReminder => {
                self.commit(id, move |request, _| {
                    Ok(recorded(request.review_reminded(now), now, Actor::System))
                })
                .await
            }
            Due::ApprovalReminder | Due::Expiring | Due::ReviewDueSoon => {
                let every = self.inner.settings.routing.notices.approval_reminder;
                self.commit(id, move |mut request, _| {
                    // Moving the notice on is what sends it (see `notify::derive`).
                    let notices = &mut request.notices;
                    match due {
                        Due::ApprovalReminder => {
                            notices.approval_reminder_at =
                                every.map(|every| now.saturating_add(every));
                        }
                        Due::Expiring => notices.expiring_at = None,
                        _ => notices.review_due_at = None,
                    }
                    Ok((Transition::Changed(request, Vec::new()), Vec::new()))
                })
                .await
            }
        }
    }

    pub(super) fn target(request: &AccessRequest, expires_at: Timestamp) -> LeaseTarget {
        LeaseTarget {
            lease: request.id,
            principal: request.requester.clone(),
            resource: request.resource.clone(),
            expires_at,
            account: request
                .account
                .clone()
                .unwrap_or_else(|| request.requester.default_account()),
            ssh_key: request.ssh_key.clone(),
        }
    }

    /// One grant attempt. Success makes the lease active from `now`; failure schedules a
    /// retry with backoff, and the last allowed failure cleans up and ends the request.
    async fn grant(
        &self,
        request: AccessRequest,
        failures: u32,
    ) -> Result<AccessRequest, BrokerError> {
        let id = request.id;
        let now = self.inner.clock.now();
        let target = Self::target(&request, now.saturating_add(request.duration.get()));
        let provisioner = self.inner.effects.provisioners.get(&request.provisioner);
        // Held until the outcome is committed: a lease sharing this grant decides whether to
        // keep it only after seeing this one active (or not).
        let grant_lock = match &provisioner {
            Ok(provisioner) => Some(
                self.lock_grant(&request.provisioner, provisioner.grant_key(&target))
                    .await,
            ),
            Err(_) => None,
        };
        let result = match provisioner {
            Ok(provisioner) => provisioner.grant(&target).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(granted) => {
                let issued = granted.credentials.is_some();
                if let Some(credentials) = granted.credentials {
                    // Waiting for the holder before the commit makes the lease active, so
                    // whoever sees it active can collect them.
                    self.inner.effects.credentials.put(id, credentials);
                }
                let request = self
                    .commit(id, move |request, _| {
                        let transition = request.grant_succeeded(now, issued)?;
                        Ok(recorded(transition, now, Actor::System))
                    })
                    .await?;
                tracing::info!(%id, holder = %request.requester, resource = %request.resource, "lease granted");
                Ok(request)
            }
            Err(ProvisionError(error)) => {
                let failures = failures + 1;
                let last = failures >= self.inner.settings.grant_attempts;
                let retry_at = if last {
                    now
                } else {
                    now.saturating_add(self.inner.settings.backoff.delay(failures))
                };
                tracing::warn!(%id, attempt = failures, %error, final_attempt = last, "grant failed");
                let request = self
                    .commit(id, move |request, _| {
                        let retry_at = (!last).then_some(retry_at);
                        let transition = request.grant_failed(error, retry_at, now)?;
                        Ok(recorded(transition, now, Actor::System))
                    })
                    .await?;
                if last {
                    // Whatever the failed attempts left on the target is removed before the
                    // request ends as failed (the revoke takes the grant's lock itself).
                    drop(grant_lock);
                    return self
                        .revoke(request, Ending::Failed, Actor::System, None)
                        .await;
                }
                Ok(request)
            }
        }
    }

    /// One revoke attempt, ending the lease as `ending` once the target confirms. A failure
    /// leaves it `revoke_failing` with a retry scheduled, without limit. `why`, when given
    /// (an administrator's reason), is recorded as the end reason and in the events.
    async fn revoke(
        &self,
        request: AccessRequest,
        ending: Ending,
        actor: Actor,
        why: Option<String>,
    ) -> Result<AccessRequest, BrokerError> {
        let id = request.id;
        let now = self.inner.clock.now();
        let target = Self::target(&request, request.expires_at.unwrap_or(now));
        let provisioner = self.inner.effects.provisioners.get(&request.provisioner);
        // Credentials nobody collected die with the lease, even while its revoke is retried.
        drop(self.inner.effects.credentials.take(id));
        let mut kept_for = None;
        // Held until the outcome is committed, like a grant's.
        let mut _grant = None;
        let result = match provisioner {
            Ok(provisioner) => {
                let key = provisioner.grant_key(&target);
                _grant = Some(self.lock_grant(&request.provisioner, key.clone()).await);
                kept_for = self.covering_lease(&request, provisioner, &key).await?;
                match kept_for {
                    // Another live lease holds the same grant: it stays for that lease.
                    Some(_) => Ok(()),
                    None => provisioner.revoke(&target).await,
                }
            }
            Err(error) => Err(error),
        };
        let done = self.inner.clock.now();
        match result {
            Ok(()) => {
                if let Some(other) = kept_for {
                    tracing::info!(%id, %other, "grant kept on the target for an overlapping lease");
                }
                let request = self
                    .commit(id, move |request, _| {
                        let transition = request.revoke_succeeded(ending, done, why, kept_for)?;
                        Ok(recorded(transition, done, actor))
                    })
                    .await?;
                tracing::info!(%id, holder = %request.requester, resource = %request.resource, state = %request.kind(), "access revoked");
                Ok(request)
            }
            Err(ProvisionError(error)) => {
                let failures = match &request.state {
                    State::RevokeFailing { attempts, .. } => attempts.count + 1,
                    _ => 1,
                };
                let retry_at = done.saturating_add(self.inner.settings.backoff.delay(failures));
                tracing::warn!(%id, attempt = failures, %error, retry_at = %retry_at, "revoke failed; access is still held");
                self.commit(id, move |request, _| {
                    let transition = request.revoke_failed(ending, error, retry_at, why)?;
                    Ok(recorded(transition, done, actor))
                })
                .await
            }
        }
    }

    /// Locks the grant `key` of `provisioner` until the returned guard is dropped.
    pub(super) async fn lock_grant(
        &self,
        provisioner: &str,
        key: String,
    ) -> crate::keyed::Held<(String, String)> {
        self.inner
            .effects
            .grants
            .lock((provisioner.to_owned(), key))
            .await
    }

    /// Another live lease holding the same grant as `request` (same provisioner and grant
    /// key), if any. Live means active, or approved with its grant in progress or due: such a
    /// lease is about to rely on the grant. Call with the grant's lock held.
    ///
    /// The rule: a grant on a target is removed only when no live lease holds it, so
    /// overlapping leases never cut each other short.
    pub(super) async fn covering_lease(
        &self,
        request: &AccessRequest,
        provisioner: &Arc<dyn Provisioner>,
        key: &str,
    ) -> Result<Option<RequestId>, BrokerError> {
        let principal = request.requester.clone();
        // Only the leases that can hold the key are read: the principal's on this resource,
        // or on every resource when the provisioner's keys span resources.
        let resource = (!provisioner.keys_span_resources()).then(|| request.resource.clone());
        let id = request.id;
        let others = self
            .inner
            .store
            .read(move |reader| reader.open_of_except(&principal, resource.as_ref(), id))
            .await?;
        Ok(Self::covering_among(request, provisioner, key, &others))
    }

    /// The lease among `others` (the open requests that can hold the key, read with the
    /// grant's lock held) that holds the grant `key` of `request` too, if any.
    pub(super) fn covering_among(
        request: &AccessRequest,
        provisioner: &Arc<dyn Provisioner>,
        key: &str,
        others: &[AccessRequest],
    ) -> Option<RequestId> {
        others
            .iter()
            .filter(|other| other.provisioner == request.provisioner)
            .filter(|other| matches!(other.state, State::Active | State::Approved { .. }))
            .find(|other| {
                let target = Self::target(other, other.expires_at.unwrap_or(other.created_at));
                provisioner.grant_key(&target) == key
            })
            .map(|other| other.id)
    }

    /// The holder ends their lease early. Answers once the target confirmed the revoke (state
    /// `released`) or the revoke failed and is being retried (`revoke_failing`). Releasing a
    /// lease that already ended returns it unchanged.
    pub async fn release(
        &self,
        caller: &Caller,
        id: RequestId,
    ) -> Result<AccessRequest, BrokerError> {
        self.read_visible(caller, id).await?;
        let holder = caller.principal.clone();
        let check = {
            let holder = holder.clone();
            move |request: &AccessRequest| {
                request.check_release(&holder)?;
                Ok(true)
            }
        };
        self.end_lease(id, Ending::Released, Actor::Principal(holder), None, check)
            .await
    }

    /// Ends lease `id` as `ending` if `check` allows it and it is active, on a tracked task
    /// under the request's lock, so a caller giving up never interrupts the revoke.
    pub(super) async fn end_lease<F>(
        &self,
        id: RequestId,
        ending: Ending,
        actor: Actor,
        why: Option<String>,
        check: F,
    ) -> Result<AccessRequest, BrokerError>
    where
        F: FnOnce(&AccessRequest) -> Result<bool, TransitionError> + Send + 'static,
    {
        let broker = self.clone();
        // The call's idempotency key goes with it: the revoke's first write claims it.
        let slot = crate::store::idempotency::carried();
        let task = self
            .inner
            .effects
            .tasks
            .spawn(crate::store::idempotency::within(slot, async move {
                let _held = broker.inner.effects.requests.lock(id).await;
                let request = broker
                    .read_request(id)
                    .await?
                    .ok_or(BrokerError::NotFound(id))?;
                match (check(&request)?, &request.state) {
                    (true, State::Active) => broker.revoke(request, ending, actor, why).await,
                    // A leaver's or mover's lease whose grant is still being retried: whatever the
                    // attempts left on the target is removed and the request ends as revoked.
                    (true, State::Approved { .. }) if ending == Ending::Revoked => {
                        broker.revoke(request, ending, actor, why).await
                    }
                    _ => Ok(request),
                }
            }));
        task.await.map_err(|_| BrokerError::ShuttingDown)?
    }
}
