//! Extending an active lease: the ask is checked against the policy in force and committed;
//! an approved extension (at once, or once the first stage's quorum approved it) is applied
//! under the request's lock: the target is told the new end first, then the expiry moves in
//! the record and so in the timer wheel. A target that refuses leaves the earlier end.

use super::commit::{recorded, recorded_after};
use super::{Broker, BrokerError, Caller, Limited};
use crate::audit::{Actor, entry};
use crate::model::{
    AccessRequest, Comment, ExtensionState, Happened, LeaseDuration, Reason, RequestId, StateKind,
    TransitionError,
};

impl Broker {
    /// The holder asks to extend lease `id` by `by`. Answers with the lease as it is after the
    /// extension applied, or with the extension waiting for approvals.
    pub async fn extend(
        &self,
        caller: &Caller,
        id: RequestId,
        by: LeaseDuration,
        reason: Reason,
    ) -> Result<AccessRequest, BrokerError> {
        let current = self.read_visible(caller, id).await?;
        if current.requester != caller.principal {
            // Who asks is decided first: someone who sees the lease without holding it (an
            // approver, an auditor) gets neither its state nor an extension route worked out
            // for them as its holder as the answer.
            return Err(TransitionError::NotRequester {
                id,
                action: "extend it",
            }
            .into());
        }
        if current.kind() != StateKind::Active {
            // Said before what the policy allows: the state is what the holder must fix.
            return Err(TransitionError::Illegal {
                id,
                action: "extend",
                state: current.kind(),
                hint: " (only an active lease can be extended)",
            }
            .into());
        }
        if let Some(why) = &current.flagged {
            return Err(BrokerError::Invalid(format!(
                "{id} is flagged and runs only to its end, it cannot be extended: {why}"
            )));
        }
        let plan = self
            .inner
            .rules
            .current()
            .plan_extension(&caller.principal, &current.resource)?;
        self.check_rate(&caller.principal, Limited::Extend, &current.resource)?;
        let holder = caller.principal.clone();
        let standing = self.inner.standing.clone();
        let rules = self.inner.rules.clone();
        let request = self
            .commit(id, move |request, now| {
                // Checked again against the record and the standing as they are now, ordered
                // against offboardings, reloads and the sweeps that flag movers' leases: a
                // holder who left or moved, or a lease flagged meanwhile, is not extended.
                standing.check(&holder)?;
                if let Some(why) = standing.entitlement(&rules.current(), &request) {
                    return Err(BrokerError::NotEntitled(format!(
                        "{id} cannot be extended: {why}"
                    )));
                }
                if let Some(why) = &request.flagged {
                    return Err(BrokerError::Invalid(format!(
                        "{id} is flagged and runs only to its end, it cannot be extended: {why}"
                    )));
                }
                let transition = request
                    .ask_extension(
                        &holder,
                        by,
                        reason.clone(),
                        plan.limits,
                        plan.stage.clone(),
                        now,
                    )?
                    .map_err(|refused| BrokerError::Invalid(refused.to_string()))?;
                Ok(recorded(transition, now, Actor::Principal(holder.clone())))
            })
            .await?;
        tracing::info!(%id, holder = %caller.principal, %by, "extension asked");
        self.apply_extension_if_approved(request).await
    }

    /// Records `caller`'s approval of the extension waiting on `id`.
    pub(super) async fn approve_extension(
        &self,
        caller: &Caller,
        id: RequestId,
        comment: Option<Comment>,
    ) -> Result<AccessRequest, BrokerError> {
        let approver = caller.principal.clone();
        let standing = self.inner.standing.clone();
        let rules = self.inner.rules.clone();
        let (request, changed) = self
            .commit_changed(id, move |mut request, now| {
                // Ordered against offboardings and reloads (see `standing`).
                standing.check(&approver)?;
                if let Some(why) = &request.flagged {
                    return Err(BrokerError::Invalid(format!(
                        "{id} is flagged and runs only to its end: {why}"
                    )));
                }
                // Approvals of people who left since stop counting before this one is added.
                let snapshot = rules.current();
                let gone = request
                    .drop_extension_approvals(|who| standing.leaving(&snapshot, who).is_some());
                let voided: Vec<_> = gone
                    .iter()
                    .map(|who| {
                        entry::about(
                            &request,
                            now,
                            Actor::System,
                            Happened::ApprovalVoided {
                                approver: who.clone(),
                                reason: format!("{who} left"),
                                extension: true,
                            },
                        )
                    })
                    .collect();
                let transition = request.approve_extension(&approver, comment.clone(), now)?;
                Ok(recorded_after(
                    voided,
                    transition,
                    now,
                    Actor::Principal(approver.clone()),
                ))
            })
            .await?;
        if !changed {
            return Ok(request);
        }
        self.apply_extension_if_approved(request).await
    }

    /// Records `caller`'s refusal of the extension waiting on `id`.
    pub(super) async fn deny_extension(
        &self,
        caller: &Caller,
        id: RequestId,
        reason: Reason,
    ) -> Result<AccessRequest, BrokerError> {
        let approver = caller.principal.clone();
        let standing = self.inner.standing.clone();
        self.commit(id, move |request, now| {
            // Ordered against offboardings and reloads (see `standing`).
            standing.check(&approver)?;
            let transition = request.deny_extension(&approver, reason.clone(), now)?;
            Ok(recorded(
                transition,
                now,
                Actor::Principal(approver.clone()),
            ))
        })
        .await
    }

    async fn apply_extension_if_approved(
        &self,
        request: AccessRequest,
    ) -> Result<AccessRequest, BrokerError> {
        let approved = request.kind() == StateKind::Active
            && request
                .open_extension()
                .is_some_and(|e| e.state == ExtensionState::Approved);
        if !approved {
            return Ok(request);
        }
        let broker = self.clone();
        let id = request.id;
        let task = self
            .inner
            .effects
            .tasks
            .spawn(async move { broker.apply_extension(id).await });
        task.await.map_err(|_| BrokerError::ShuttingDown)?
    }

    /// Takes the request's lock and applies its approved extension, if it has one.
    async fn apply_extension(&self, id: RequestId) -> Result<AccessRequest, BrokerError> {
        let _held = self.inner.effects.requests.lock(id).await;
        let request = self
            .read_request(id)
            .await?
            .ok_or(BrokerError::NotFound(id))?;
        self.apply_extension_locked(request).await
    }

    /// Tells the target the approved extension's end, then moves the expiry. Call under the
    /// request's lock, so expiry, release and this never interleave; the grant's lock is
    /// taken too, so a grant of the same key never runs meanwhile. An extension whose lease
    /// reached its end first lapses: a lease is never revived.
    pub(super) async fn apply_extension_locked(
        &self,
        request: AccessRequest,
    ) -> Result<AccessRequest, BrokerError> {
        let id = request.id;
        let until = match request.open_extension() {
            Some(extension)
                if request.kind() == StateKind::Active
                    && extension.state == ExtensionState::Approved =>
            {
                extension.until()
            }
            _ => return Ok(request),
        };
        if request
            .expires_at
            .is_some_and(|end| end <= self.inner.clock.now())
        {
            // The expiry is due and comes first (see `Due`); it lapses the extension.
            return Ok(request);
        }
        let target = Self::target(&request, until);
        let result = match self.inner.effects.provisioners.get(&request.provisioner) {
            Ok(provisioner) => {
                let _grant = self
                    .lock_grant(&request.provisioner, provisioner.grant_key(&target))
                    .await;
                provisioner.extend(&target).await
            }
            Err(error) => Err(error),
        };
        let now = self.inner.clock.now();
        match result {
            Ok(granted) => {
                if let Some(credentials) = granted.credentials {
                    // A certificate with the new end: the holder collects it as a grant's.
                    self.inner.effects.credentials.put(id, credentials);
                }
                let request = self
                    .commit(id, move |request, _| {
                        Ok(recorded(request.extension_applied(now), now, Actor::System))
                    })
                    .await?;
                tracing::info!(%id, until = %until, "lease extended");
                Ok(request)
            }
            Err(error) => {
                tracing::warn!(%id, %error, "the target refused an extension; the lease keeps its end");
                self.commit(id, move |request, _| {
                    Ok(recorded(
                        request.extension_failed(error.0, now),
                        now,
                        Actor::System,
                    ))
                })
                .await
            }
        }
    }
}
