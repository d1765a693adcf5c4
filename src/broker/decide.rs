//! Decisions: approve, deny, cancel. Each is checked against the state and the stored route
//! inside the write transaction, so concurrent calls are linearized and a quorum is reached
//! exactly once: only the call whose transition produced `approved` starts the grant.

use super::{Broker, BrokerError, Caller, events};
use crate::audit::Actor;
use crate::model::{
    AccessRequest, Comment, Reason, RequestId, StateKind, Transition, TransitionError,
};
use crate::store::Changes;

impl Broker {
    /// Approves `id` at its current stage. Returns the request as it is afterwards (active,
    /// when this approval completed the route and the grant succeeded).
    pub async fn approve(
        &self,
        caller: &Caller,
        id: RequestId,
        comment: Option<Comment>,
    ) -> Result<AccessRequest, BrokerError> {
        let clock = self.inner.clock.clone();
        let record = self.inner.record.clone();
        let approver = caller.principal.clone();
        let (request, completed) = self
            .inner
            .store
            .write(move |view| -> Result<_, BrokerError> {
                // Read inside the transaction: a queued decision is judged by when it commits.
                let now = clock.now();
                let request = view.request(id)?.ok_or(BrokerError::NotFound(id))?;
                let stage = request
                    .current_stage()
                    .map(|(index, s)| (index, s.name.clone()));
                let old = request.clone();
                match request.approve(&approver, comment.clone(), now)? {
                    Transition::Changed(request) => {
                        let (index, name) = stage.unwrap_or_default();
                        let actor = Actor::Principal(approver.clone());
                        let mut drafts = vec![
                            events::about(&request, now, actor.clone(), events::APPROVAL)
                                .detail("stage", index)
                                .detail("stage_name", name)
                                .detail(
                                    "comment",
                                    comment.as_ref().map(Comment::as_str).unwrap_or(""),
                                ),
                        ];
                        let completed = request.kind() == StateKind::Approved;
                        if completed {
                            drafts.push(events::about(&request, now, actor, events::APPROVED));
                        }
                        let (changes, request) = record.changes(Some(&old), request, drafts, now);
                        Ok((changes, (request, completed)))
                    }
                    Transition::Unchanged(request) => Ok((Changes::default(), (request, false))),
                }
            })
            .await
            .inspect_err(|error| self.nudge_if_past_deadline(id, error))?;
        if completed {
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
        let clock = self.inner.clock.clone();
        let record = self.inner.record.clone();
        let approver = caller.principal.clone();
        self.inner
            .store
            .write(move |view| {
                let now = clock.now();
                let request = view.request(id)?.ok_or(BrokerError::NotFound(id))?;
                let stage = request
                    .current_stage()
                    .map(|(index, s)| (index, s.name.clone()));
                let old = request.clone();
                match request.deny(&approver, reason.clone(), now)? {
                    Transition::Changed(request) => {
                        let (index, name) = stage.unwrap_or_default();
                        let draft = events::about(
                            &request,
                            now,
                            Actor::Principal(approver.clone()),
                            events::DENIED,
                        )
                        .detail("stage", index)
                        .detail("stage_name", name)
                        .detail("reason", &reason);
                        Ok(record.changes(Some(&old), request, vec![draft], now))
                    }
                    Transition::Unchanged(request) => Ok((Changes::default(), request)),
                }
            })
            .await
            .inspect_err(|error| self.nudge_if_past_deadline(id, error))
    }

    /// A decision refused because the deadline passed: record the time-out now rather than
    /// when the timer gets to it.
    fn nudge_if_past_deadline(&self, id: RequestId, error: &BrokerError) {
        if let BrokerError::Transition(TransitionError::PastDeadline { .. }) = error {
            let broker = self.clone();
            self.inner.effects.spawn(async move {
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
        let now = self.inner.clock.now();
        let record = self.inner.record.clone();
        let by = caller.principal.clone();
        self.inner
            .store
            .write(move |view| {
                let request = view.request(id)?.ok_or(BrokerError::NotFound(id))?;
                let old = request.clone();
                match request.cancel(&by, now)? {
                    Transition::Changed(request) => {
                        let draft = events::about(
                            &request,
                            now,
                            Actor::Principal(by.clone()),
                            events::CANCELLED,
                        );
                        Ok(record.changes(Some(&old), request, vec![draft], now))
                    }
                    Transition::Unchanged(request) => Ok((Changes::default(), request)),
                }
            })
            .await
    }
}
