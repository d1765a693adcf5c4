//! Break-glass: access at once during an incident, and the review that must follow.
//!
//! Submitting checks, inside one write transaction, the rate limit and whether the principal
//! has an overdue (or recently unjustified) review: then the break-glass waits for one approval
//! from the review group instead of being immediate. A pending normal request for the same
//! resource is superseded (cancelled) rather than blocking an incident response. The grant opens
//! the review; closing it is final, and an unjustified verdict can revoke the lease at once.

use super::commit::recorded;
use super::{Broker, BrokerError, Caller};
use crate::audit::{Actor, entry};
use crate::model::{
    AccessRequest, Approval, Attempts, BreakGlass, Ending, Happened, Reason, RequestId,
    ReviewState, Route, State, StateKind, Transition, TransitionError,
};
use crate::policy::{BreakGlassAsk, Refusal};
use crate::store::Changes;

impl Broker {
    /// Breaks glass for `caller`: granted before this returns, unless the caller has an
    /// overdue or unjustified review, in which case it waits for one approval.
    pub async fn break_glass(
        &self,
        caller: &Caller,
        ask: BreakGlassAsk,
    ) -> Result<AccessRequest, BrokerError> {
        for _ in 0..2 {
            match self.break_glass_once(caller, ask.clone()).await {
                Err(BrokerError::Reloaded) => continue,
                other => return other,
            }
        }
        self.break_glass_once(caller, ask).await
    }

    async fn break_glass_once(
        &self,
        caller: &Caller,
        ask: BreakGlassAsk,
    ) -> Result<AccessRequest, BrokerError> {
        let snapshot = self.inner.rules.current();
        let plan = snapshot.evaluate_break_glass(&caller.principal, &ask)?;
        self.check_ssh_key(&plan.provisioner, &ask.resource, ask.ssh_key.as_ref())?;
        let rules = self.inner.rules.clone();
        let record = self.inner.record.clone();
        let clock = self.inner.clock.clone();
        let requester = caller.principal.clone();
        let standing = self.inner.standing.clone();
        let request = self
            .inner
            .store
            .write(move |view| -> Result<_, BrokerError> {
                // Ordered against offboardings and reloads (see `standing`): a break-glass
                // evaluated against files no longer in force is evaluated again.
                if !std::sync::Arc::ptr_eq(&rules.current(), &snapshot) {
                    return Err(BrokerError::Reloaded);
                }
                standing.check(&requester)?;
                let now = clock.now();
                let mut superseded = None;
                // A pending request is superseded; an active lease blocks unless the policy
                // allows overlapping leases.
                for existing in view.open_requests(&requester, &ask.resource)? {
                    match existing.kind() {
                        StateKind::Pending => superseded = Some(existing),
                        StateKind::Active | StateKind::RevokeFailing if plan.allow_overlap => {}
                        state => {
                            return Err(BrokerError::AlreadyOpen {
                                id: existing.id,
                                state,
                            });
                        }
                    }
                }
                let history = view.break_glass_of(&requester)?;
                let window_start = now.saturating_sub(plan.rate_window.get());
                // Grants count, and break-glass still in progress; refused, failed or withdrawn
                // ones do not use up the allowance.
                let recent: Vec<&AccessRequest> = history
                    .iter()
                    .filter(|r| r.created_at > window_start)
                    .filter(|r| r.granted_at.is_some() || r.kind().is_open())
                    .collect();
                if recent.len() >= plan.rate_limit as usize {
                    let next = recent
                        .iter()
                        .map(|r| r.created_at)
                        .min()
                        .map(|first| first.saturating_add(plan.rate_window.get()))
                        .unwrap_or(now);
                    return Err(Refusal::RateLimited(format!(
                        "{requester} broke glass {} time(s) within {}, the limit for {}; the next break-glass is possible at {next}",
                        recent.len(),
                        plan.rate_window,
                        ask.resource
                    ))
                    .into());
                }
                let unjustified_since = now.saturating_sub(plan.unjustified_window.get());
                let unreviewed: Vec<String> = history
                    .iter()
                    .filter(|r| {
                        r.review().is_some_and(|review| match review.state {
                            ReviewState::Overdue => true,
                            ReviewState::Unjustified => review
                                .verdict
                                .as_ref()
                                .is_some_and(|v| v.at >= unjustified_since),
                            ReviewState::Pending | ReviewState::Justified => false,
                        })
                    })
                    .map(|r| r.id.to_string())
                    .collect();
                let needs_approval = plan.approval_when_unreviewed && !unreviewed.is_empty();
                // Somebody other than the holder must be able to review it (and, when needed,
                // approve it): otherwise it is refused, never granted unreviewed.
                let reviewers = plan.approval_route.clone()?;
                let route = if needs_approval {
                    reviewers
                } else {
                    Route::default()
                };
                let request = AccessRequest {
                    ssh_key: ask.ssh_key.clone(),
                    id: view.next_request_id()?,
                    requester: requester.clone(),
                    resource: ask.resource.clone(),
                    reason: Some(ask.reason.clone()),
                    ticket: None,
                    duration: plan.duration,
                    created_at: now,
                    decide_by: now.saturating_add(plan.request_ttl),
                    route,
                    policy_version: plan.policy_version.clone(),
                    provisioner: plan.provisioner.clone(),
                    account: Some(plan.account.clone()),
                    extensions: Vec::new(),
                    decisions: Vec::new(),
                    state: if needs_approval {
                        State::Pending { stage: 0 }
                    } else {
                        State::Approved {
                            attempts: Attempts::due(now),
                        }
                    },
                    approved_at: (!needs_approval).then_some(now),
                    granted_at: None,
                    expires_at: None,
                    ended_at: None,
                    end_reason: None,
                    break_glass: Some(BreakGlass {
                        incident: ask.incident.clone(),
                        review_group: plan.review_group.clone(),
                        review_within: plan.review_within,
                        remind_every: plan.remind_every,
                        escalate_to: plan.escalate_to.clone(),
                        revoke_on_unjustified: plan.revoke_on_unjustified,
                        needed_approval: needs_approval,
                        review: None,
                    }),
                    notices: Default::default(),
                    flagged: None,
                };
                let mut drafts = vec![entry::about(
                    &request,
                    request.created_at,
                    Actor::Principal(request.requester.clone()),
                    Happened::Submitted {
                        needs_approval_because: needs_approval.then_some(unreviewed),
                    },
                )];
                if !needs_approval {
                    drafts.push(entry::about(
                        &request,
                        now,
                        Actor::System,
                        Happened::Approved {
                            how: Approval::BreakGlass,
                        },
                    ));
                }
                let mut changes = Changes::default();
                if let Some(old) = superseded {
                    let cancelled = old.clone().cancel(&requester, now)?.into_request();
                    let draft = entry::about(
                        &cancelled,
                        now,
                        Actor::Principal(requester.clone()),
                        Happened::Cancelled {
                            superseded_by: Some(request.id),
                            reason: None,
                        },
                    );
                    changes.absorb(record.changes(Some(&old), cancelled, vec![draft], now).0);
                }
                let (more, request) = record.changes(None, request, drafts, now);
                changes.absorb(more);
                Ok((changes, request))
            })
            .await?;
        tracing::warn!(
            id = %request.id,
            holder = %request.requester,
            resource = %request.resource,
            state = %request.kind(),
            "break-glass requested"
        );
        if request.kind() == StateKind::Approved {
            return self.drive_now(request.id).await;
        }
        Ok(request)
    }

    /// Closes the review of break-glass `id`. Reviewers are active members of its review group,
    /// never the holder; notes are required for an unjustified verdict, which revokes the lease
    /// at once when the policy says so.
    pub async fn review(
        &self,
        caller: &Caller,
        id: RequestId,
        justified: bool,
        notes: Option<Reason>,
    ) -> Result<AccessRequest, BrokerError> {
        if !justified && notes.is_none() {
            return Err(BrokerError::Invalid(
                "notes are required for an unjustified verdict".to_owned(),
            ));
        }
        let request = self.read_visible(caller, id).await?;
        let Some(break_glass) = &request.break_glass else {
            return Err(TransitionError::NotBreakGlass { id }.into());
        };
        if caller.principal == request.requester {
            return Err(TransitionError::SelfReview { id }.into());
        }
        if !caller.groups.contains(&break_glass.review_group) {
            return Err(BrokerError::Forbidden(format!(
                "only members of {} review {id}",
                break_glass.review_group
            )));
        }
        let reviewer = caller.principal.clone();
        let standing = self.inner.standing.clone();
        let rules = self.inner.rules.clone();
        let closed = self
            .commit(id, move |request, now| {
                // Checked again inside the transaction, ordered against offboardings and
                // reloads: a reviewer who left, or left the review group, closes nothing.
                standing.check(&reviewer)?;
                let group = request
                    .break_glass
                    .as_ref()
                    .map(|b| b.review_group.clone())
                    .ok_or(TransitionError::NotBreakGlass { id })?;
                let snapshot = rules.current();
                let member = snapshot
                    .directory
                    .person(&reviewer)
                    .is_some_and(|person| person.groups.contains(&group));
                if !member {
                    return Err(BrokerError::Forbidden(format!(
                        "only members of {group} review {id}"
                    )));
                }
                let transition = request.close_review(&reviewer, justified, notes.clone(), now)?;
                let revoke = matches!(
                    &transition,
                    Transition::Changed(_, happened)
                        if happened.iter().any(|h| matches!(h, Happened::ReviewClosed { revoke: true, .. }))
                );
                let (transition, drafts) =
                    recorded(transition, now, Actor::Principal(reviewer.clone()));
                // The revoke is decided in the same transaction as the verdict.
                let transition = match transition {
                    Transition::Changed(closed, happened) if revoke => {
                        let mut closed = closed.begin_revoke(Ending::Revoked, now)?.into_request();
                        closed.end_reason = Some(format!(
                            "revoked: {reviewer} found the break-glass unjustified"
                        ));
                        Transition::Changed(closed, happened)
                    }
                    other => other,
                };
                Ok((transition, drafts))
            })
            .await?;
        if closed.kind() == StateKind::RevokeFailing {
            tracing::warn!(%id, reviewer = %caller.principal, "unjustified break-glass: revoking");
            return self.drive_now(id).await;
        }
        Ok(closed)
    }

    /// Break-glass requests with reviews the caller may act on: open ones (or only overdue
    /// ones) of review groups the caller belongs to, never their own; with `all`, closed ones
    /// too, and every review for auditors and admins.
    pub async fn reviews(
        &self,
        caller: &Caller,
        overdue_only: bool,
        all: bool,
    ) -> Result<Vec<AccessRequest>, BrokerError> {
        let states: &'static [ReviewState] = match (overdue_only, all) {
            (true, _) => &[ReviewState::Overdue],
            (false, false) => &[ReviewState::Pending, ReviewState::Overdue],
            (false, true) => &[
                ReviewState::Pending,
                ReviewState::Overdue,
                ReviewState::Justified,
                ReviewState::Unjustified,
            ],
        };
        let mut reviews = self.inner.store.read(move |r| r.reviews(states)).await?;
        let caller = caller.clone();
        reviews.retain(|request| {
            let reviewer = request.requester != caller.principal
                && request
                    .break_glass
                    .as_ref()
                    .is_some_and(|b| caller.groups.contains(&b.review_group));
            reviewer || (all && caller.sees_all())
        });
        Ok(reviews)
    }
}
