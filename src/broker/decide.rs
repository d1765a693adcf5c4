//! Decisions: approve, deny, cancel. On an active lease whose extension waits for approvals,
//! approve and deny decide the extension (see `extend`), and so does a repeat of the decision
//! the caller gave its latest extension. Each is checked against the state and the stored route
//! inside the write transaction (see [`Broker::commit`]), so concurrent calls are linearized
//! and a quorum is reached exactly once: only the call whose transition produced `approved`
//! starts the grant.

use super::commit::{recorded, recorded_after};
use super::{Broker, BrokerError, Caller};
use crate::audit::Actor;
use crate::model::{AccessRequest, Comment, Reason, RequestId, StateKind, TransitionError};

impl Broker {
    /// Approves `id` at its current stage. Returns the request as it is afterwards (active,
    /// when this approval completed the route and the grant succeeded).
    pub async fn approve(
        &self,
        caller: &Caller,
        id: RequestId,
        comment: Option<Comment>,
    ) -> Result<AccessRequest, BrokerError> {
        let visible = self.read_visible(caller, id).await?;
        if decides_extension(&visible, caller, true) {
            return self.approve_extension(caller, id, comment).await;
        }
        let approver = caller.principal.clone();
        let standing = self.inner.standing.clone();
        let rules = self.inner.rules.clone();
        let (request, changed) = self
            .commit_changed(id, move |request, now| {
                // Ordered against offboardings and reloads (see `standing`): an approver who
                // left cannot approve, a requester who left or moved cannot be approved, and
                // approvals of people who left no longer count toward this quorum.
                standing.check(&approver)?;
                let snapshot = rules.current();
                if request.kind() == StateKind::Pending {
                    if let Some(why) = standing.entitlement(&snapshot, &request) {
                        return Err(BrokerError::NotEntitled(format!(
                            "{id} can no longer be approved: {why}"
                        )));
                    }
                }
                let (request, voided) =
                    standing.void_leavers(&snapshot, request, &Actor::System, now);
                let actor = Actor::Principal(approver.clone());
                let transition = request.approve(&approver, comment.clone(), now)?;
                Ok(recorded_after(voided, transition, now, actor))
            })
            .await
            .inspect_err(|error| self.nudge_if_past_deadline(id, error))?;
        if changed && request.kind() == StateKind::Approved {
            tracing::info!(%id, approver = %caller.principal, "request approved");
            return self.drive_now(id).await;
        }
        Ok(request)
    }

    /// Denies `id`; one deny ends it.
    pub async fn deny(
        &self,
        caller: &Caller,
        id: RequestId,
        reason: Reason,
    ) -> Result<AccessRequest, BrokerError> {
        let visible = self.read_visible(caller, id).await?;
        if decides_extension(&visible, caller, false) {
            return self.deny_extension(caller, id, reason).await;
        }
        let approver = caller.principal.clone();
        let standing = self.inner.standing.clone();
        self.commit(id, move |request, now| {
            // Ordered against offboardings and reloads (see `standing`).
            standing.check(&approver)?;
            let transition = request.deny(&approver, reason.clone(), now)?;
            Ok(recorded(
                transition,
                now,
                Actor::Principal(approver.clone()),
            ))
        })
        .await
        .inspect_err(|error| self.nudge_if_past_deadline(id, error))
    }

    /// A decision refused because the deadline passed: record the time-out now rather than
    /// when the timer gets to it.
    fn nudge_if_past_deadline(&self, id: RequestId, error: &BrokerError) {
        if let BrokerError::Transition(TransitionError::PastDeadline { .. }) = error {
            let broker = self.clone();
            self.inner.effects.tasks.spawn(async move {
                if let Err(error) = broker.drive(id).await {
                    tracing::warn!(%id, %error, "could not record a time-out");
                }
            });
        }
    }

    /// Withdraws the caller's pending request `id`.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: RequestId,
    ) -> Result<AccessRequest, BrokerError> {
        self.read_visible(caller, id).await?;
        let by = caller.principal.clone();
        self.commit(id, move |request, now| {
            let transition = request.cancel(&by, now)?;
            Ok(recorded(transition, now, Actor::Principal(by.clone())))
        })
        .await
    }
}

/// Whether `caller`'s decision (an approval when `approve`) on `request` is about the extension
/// of its lease: one waits for decisions, or the caller repeats the decision they gave the
/// latest one. A repeat goes to the extension too, so that it gets the first result rather than
/// being judged against the request, which was decided long before.
fn decides_extension(request: &AccessRequest, caller: &Caller, approve: bool) -> bool {
    request.extension_pending() || request.repeats_extension_decision(&caller.principal, approve)
}
