//! The request state machine. Every transition consumes the record and returns the next one or
//! a typed error, so an illegal transition is an error value, never a panic or a silent change.
//!
//! ```text
//!             ┌────────── denied
//! pending ────┼────────── cancelled (by requester)
//!             ├────────── timed_out (no decision before decide_by)
//!             └─▶ approved ─▶ active ─┬─▶ expired
//!    (auto-approve skips pending)     ├─▶ released
//!      │                              └─▶ revoked
//!      └─▶ failed (grant kept failing; cleaned up)
//! active ─▶ revoke_failing ─▶ expired | released | revoked   (retried without limit)
//! ```
//!
//! Longer than most files: the state machine's transitions are one concept, and the checks
//! they share (stage, quorum, one person once) must be read next to each other.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{
    AccessRequest, Approval, Comment, Decision, Happened, Principal, Reason, RequestId, Review,
    Timestamp, Verdict,
};

/// How a lease ended (or is ending, while its revoke is retried).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The lease reached its expiry.
    Expired,
    /// The holder ended it early.
    Released,
    /// An administrator ended it.
    Revoked,
    /// The grant never succeeded; whatever it left was removed.
    Failed,
}

/// Progress of a side effect that is retried with backoff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    /// Attempts made so far.
    pub count: u32,
    /// What the target said the last time it failed.
    pub last_error: Option<String>,
    /// When to try next.
    pub retry_at: Timestamp,
}

impl Attempts {
    /// No attempt yet; due at `now`.
    pub fn due(now: Timestamp) -> Self {
        Self {
            count: 0,
            last_error: None,
            retry_at: now,
        }
    }
}

/// Where a request is. Data that only one state has lives in its variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum State {
    /// Waiting for decisions at route stage `stage`.
    Pending {
        /// Index of the current stage.
        stage: u32,
    },
    /// Approved; the grant is in progress or waiting for a retry.
    Approved {
        /// Grant attempts.
        attempts: Attempts,
    },
    /// Granted; ends at the record's `expires_at`.
    Active,
    /// Should have ended; the target has not confirmed the revoke yet.
    RevokeFailing {
        /// How it ends once the revoke is confirmed.
        ending: Ending,
        /// Revoke attempts.
        attempts: Attempts,
    },
    /// Denied by an approver.
    Denied,
    /// Withdrawn by the requester.
    Cancelled,
    /// No decision in time.
    TimedOut,
    /// The lease is over and the target confirmed it.
    Ended {
        /// How.
        ending: Ending,
    },
}

/// The state as users see it: one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKind {
    /// Waiting for approvals.
    Pending,
    /// Approved; being granted.
    Approved,
    /// Granted and running.
    Active,
    /// Denied.
    Denied,
    /// Cancelled by the requester.
    Cancelled,
    /// No decision in time.
    TimedOut,
    /// Ended at expiry.
    Expired,
    /// Ended early by the holder.
    Released,
    /// Ended by an administrator.
    Revoked,
    /// Revoke retrying; still holds access.
    RevokeFailing,
    /// Grant failed for good.
    Failed,
}

impl StateKind {
    /// Every kind, in lifecycle order.
    pub const ALL: [StateKind; 11] = [
        StateKind::Pending,
        StateKind::Approved,
        StateKind::Active,
        StateKind::Denied,
        StateKind::Cancelled,
        StateKind::TimedOut,
        StateKind::Expired,
        StateKind::Released,
        StateKind::Revoked,
        StateKind::RevokeFailing,
        StateKind::Failed,
    ];

    /// The word used in output and filters ("revoke_failing").
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Pending => "pending",
            StateKind::Approved => "approved",
            StateKind::Active => "active",
            StateKind::Denied => "denied",
            StateKind::Cancelled => "cancelled",
            StateKind::TimedOut => "timed_out",
            StateKind::Expired => "expired",
            StateKind::Released => "released",
            StateKind::Revoked => "revoked",
            StateKind::RevokeFailing => "revoke_failing",
            StateKind::Failed => "failed",
        }
    }

    /// Whether the request is still in flight (not final).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            StateKind::Pending | StateKind::Approved | StateKind::Active | StateKind::RevokeFailing
        )
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StateKind {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        StateKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| {
                let known: Vec<&str> = StateKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown state '{}': expected one of {}",
                    value.chars().take(40).collect::<String>(),
                    known.join(", ")
                )
            })
    }
}

impl State {
    /// The user-facing kind.
    pub fn kind(&self) -> StateKind {
        match self {
            State::Pending { .. } => StateKind::Pending,
            State::Approved { .. } => StateKind::Approved,
            State::Active => StateKind::Active,
            State::RevokeFailing { .. } => StateKind::RevokeFailing,
            State::Denied => StateKind::Denied,
            State::Cancelled => StateKind::Cancelled,
            State::TimedOut => StateKind::TimedOut,
            State::Ended { ending } => match ending {
                Ending::Expired => StateKind::Expired,
                Ending::Released => StateKind::Released,
                Ending::Revoked => StateKind::Revoked,
                Ending::Failed => StateKind::Failed,
            },
        }
    }
}

/// What a caller tried to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Approve.
    Approve,
    /// Deny.
    Deny,
    /// Cancel.
    Cancel,
    /// Release.
    Release,
    /// Confirm a grant.
    Grant,
    /// Confirm or fail a revoke.
    Revoke,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Deny => "deny",
            Action::Cancel => "cancel",
            Action::Release => "release",
            Action::Grant => "grant",
            Action::Revoke => "revoke",
        }
    }
}

/// The result of a legal transition.
#[derive(Debug)]
pub enum Transition {
    /// The record changed and must be stored; what happened, in order (the audit trail records
    /// each, notifications are routed from them).
    Changed(AccessRequest, Vec<Happened>),
    /// Nothing to do: a repeated call, or a timer that is no longer due.
    Unchanged(AccessRequest),
}

impl Transition {
    /// The record, changed or not.
    pub fn into_request(self) -> AccessRequest {
        match self {
            Transition::Changed(request, _) | Transition::Unchanged(request) => request,
        }
    }
}

/// A transition that the rules forbid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The requester tried to decide on their own request.
    #[error("you cannot approve or deny your own request (cancel it to withdraw it)")]
    SelfDecision,
    /// The caller is not in any stage of the route.
    #[error("you are not an eligible approver of {id}: stage '{stage}' is decided by {approvers}")]
    NotEligible {
        /// The request.
        id: RequestId,
        /// The current stage.
        stage: String,
        /// Who may decide it.
        approvers: String,
    },
    /// The caller approves at another stage than the current one.
    #[error("you decide at stage '{own}' of {id}, but it is at stage '{current}'")]
    WrongStage {
        /// The request.
        id: RequestId,
        /// The caller's stage.
        own: String,
        /// The current stage.
        current: String,
    },
    /// The caller's approval already counted at an earlier stage.
    #[error(
        "you already approved stage '{stage}' of {id}; one person counts once across all stages"
    )]
    AlreadyCounted {
        /// The request.
        id: RequestId,
        /// Where it counted.
        stage: String,
    },
    /// The request waited past its decision deadline (the time-out is being recorded).
    #[error("cannot {action} {id}: its decision deadline passed at {deadline}")]
    PastDeadline {
        /// The request.
        id: RequestId,
        /// The action.
        action: &'static str,
        /// When it passed.
        deadline: Timestamp,
    },
    /// This approval would leave the remaining stages without enough distinct approvers.
    #[error(
        "approving {id} now would leave its remaining stages needing {needed} distinct approvers with only {available} left; leave this stage to another approver"
    )]
    WouldStrand {
        /// The request.
        id: RequestId,
        /// Approvals still needed after this one.
        needed: usize,
        /// How many of them could still be given.
        available: usize,
    },
    /// A review was asked of a request that is not break-glass.
    #[error("{id} is not a break-glass request; it has no review")]
    NotBreakGlass {
        /// The request.
        id: RequestId,
    },
    /// The review is not open yet (the break-glass grant has not succeeded).
    #[error("the review of {id} opens when its grant succeeds")]
    ReviewNotOpen {
        /// The request.
        id: RequestId,
    },
    /// The holder tried to review their own break-glass.
    #[error("you cannot review your own break-glass {id}")]
    SelfReview {
        /// The request.
        id: RequestId,
    },
    /// The review has a verdict already; it cannot be changed.
    #[error("the review of {id} is closed ({state}, by {by}); a verdict cannot be changed")]
    ReviewClosed {
        /// The request.
        id: RequestId,
        /// Its verdict.
        state: &'static str,
        /// Who gave it.
        by: Principal,
    },
    /// Only the requester (holder) may do this.
    #[error("only the requester of {id} can {action}")]
    NotRequester {
        /// The request.
        id: RequestId,
        /// The action.
        action: &'static str,
    },
    /// The request is in a state where the action makes no sense.
    #[error("cannot {action} {id}: it is {state}{hint}")]
    Illegal {
        /// The request.
        id: RequestId,
        /// The action.
        action: &'static str,
        /// Its state.
        state: StateKind,
        /// What to do instead, when there is something.
        hint: &'static str,
    },
}

impl AccessRequest {
    fn illegal(&self, action: Action) -> TransitionError {
        let hint = match (action, self.kind()) {
            (Action::Cancel, StateKind::Active) => " (release it instead)",
            (Action::Release, StateKind::Pending) => " (cancel it instead)",
            (Action::Cancel | Action::Release, StateKind::Approved) => {
                " (its grant is in progress or being retried; release it once it is active)"
            }
            _ => "",
        };
        TransitionError::Illegal {
            id: self.id,
            action: action.verb(),
            state: self.kind(),
            hint,
        }
    }

    /// Decisions are refused once the decision deadline passed, even before the timer recorded
    /// the time-out.
    fn check_deadline(&self, action: Action, now: Timestamp) -> Result<(), TransitionError> {
        if now >= self.decide_by {
            return Err(TransitionError::PastDeadline {
                id: self.id,
                action: action.verb(),
                deadline: self.decide_by,
            });
        }
        Ok(())
    }

    fn check_eligible(&self, approver: &Principal, stage: u32) -> Result<(), TransitionError> {
        let stages = &self.route.stages;
        let Some(current) = stages.get(stage as usize) else {
            return Err(self.illegal(Action::Approve));
        };
        if current.approvers.contains(approver) {
            return Ok(());
        }
        match stages.iter().find(|s| s.approvers.contains(approver)) {
            Some(own) => Err(TransitionError::WrongStage {
                id: self.id,
                own: own.name.clone(),
                current: current.name.clone(),
            }),
            None => Err(TransitionError::NotEligible {
                id: self.id,
                stage: current.name.clone(),
                approvers: current
                    .approvers
                    .iter()
                    .map(Principal::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Records an approval at the current stage. A quorum moves the request to the next stage
    /// or, after the last one, to `approved`. Repeating an approval changes nothing.
    pub fn approve(
        mut self,
        approver: &Principal,
        comment: Option<Comment>,
        now: Timestamp,
    ) -> Result<Transition, TransitionError> {
        if *approver == self.requester {
            return Err(TransitionError::SelfDecision);
        }
        let earlier = self
            .decisions
            .iter()
            .find(|d| d.approver == *approver && d.counts())
            .map(|d| d.stage);
        if let Some(earlier) = earlier {
            return match self.state {
                State::Pending { stage } if stage != earlier => {
                    Err(TransitionError::AlreadyCounted {
                        id: self.id,
                        stage: self.stage_name(earlier).to_owned(),
                    })
                }
                _ => Ok(Transition::Unchanged(self)),
            };
        }
        let State::Pending { stage } = self.state else {
            return Err(self.illegal(Action::Approve));
        };
        self.check_deadline(Action::Approve, now)?;
        self.check_eligible(approver, stage)?;
        let mut happened = vec![Happened::ApprovalRecorded {
            stage,
            stage_name: self.stage_name(stage).to_owned(),
            comment: comment.clone(),
        }];
        self.decisions.push(Decision {
            approver: approver.clone(),
            verdict: Verdict::Approve,
            comment: comment.map(String::from),
            at: now,
            stage,
            void: None,
        });
        let counted = self.approvals_at(stage).count();
        let used: BTreeSet<&Principal> = self
            .decisions
            .iter()
            .filter(|d| d.counts())
            .map(|d| &d.approver)
            .collect();
        if let Some((needed, available)) = self.route.shortfall(stage as usize, counted, &used) {
            return Err(TransitionError::WouldStrand {
                id: self.id,
                needed,
                available,
            });
        }
        let quorum = self.route.stages[stage as usize].quorum as usize;
        if counted >= quorum {
            if stage as usize + 1 == self.route.stages.len() {
                self.state = State::Approved {
                    attempts: Attempts::due(now),
                };
                self.approved_at = Some(now);
                happened.push(Happened::Approved {
                    how: Approval::Route,
                });
            } else {
                self.state = State::Pending { stage: stage + 1 };
            }
        }
        Ok(Transition::Changed(self, happened))
    }

    /// Denies at the current stage; one deny ends the request. Repeating it changes nothing.
    pub fn deny(
        mut self,
        approver: &Principal,
        reason: Reason,
        now: Timestamp,
    ) -> Result<Transition, TransitionError> {
        if *approver == self.requester {
            return Err(TransitionError::SelfDecision);
        }
        if self.state == State::Denied
            && self
                .decisions
                .iter()
                .any(|d| d.approver == *approver && d.verdict == Verdict::Deny)
        {
            return Ok(Transition::Unchanged(self));
        }
        let State::Pending { stage } = self.state else {
            return Err(self.illegal(Action::Deny));
        };
        self.check_deadline(Action::Deny, now)?;
        self.check_eligible(approver, stage)?;
        let happened = Happened::Denied {
            stage,
            stage_name: self.stage_name(stage).to_owned(),
            reason: reason.clone(),
        };
        self.end_reason = Some(format!("denied by {approver}: {reason}"));
        self.decisions.push(Decision {
            approver: approver.clone(),
            verdict: Verdict::Deny,
            comment: Some(reason.into()),
            at: now,
            stage,
            void: None,
        });
        self.state = State::Denied;
        self.ended_at = Some(now);
        Ok(Transition::Changed(self, vec![happened]))
    }

    /// The requester withdraws a pending request.
    pub fn cancel(mut self, by: &Principal, now: Timestamp) -> Result<Transition, TransitionError> {
        if *by != self.requester {
            return Err(TransitionError::NotRequester {
                id: self.id,
                action: "cancel it",
            });
        }
        match self.state {
            State::Cancelled => Ok(Transition::Unchanged(self)),
            State::Pending { .. } => {
                self.state = State::Cancelled;
                self.ended_at = Some(now);
                self.end_reason = Some(format!("cancelled by {by}"));
                Ok(Transition::Changed(
                    self,
                    vec![Happened::Cancelled {
                        superseded_by: None,
                        reason: None,
                    }],
                ))
            }
            _ => Err(self.illegal(Action::Cancel)),
        }
    }

    /// Withdraws a pending request on the broker's own authority (its requester left, or is no
    /// longer eligible), with `why` as its end reason. Anything already decided is unchanged:
    /// a lease is ended by a revoke instead.
    pub fn withdraw(mut self, why: String, now: Timestamp) -> Transition {
        match self.state {
            State::Pending { .. } => {
                self.state = State::Cancelled;
                self.ended_at = Some(now);
                self.end_reason = Some(why.clone());
                Transition::Changed(
                    self,
                    vec![Happened::Cancelled {
                        superseded_by: None,
                        reason: Some(why),
                    }],
                )
            }
            _ => Transition::Unchanged(self),
        }
    }

    /// Stops counting the approvals `approver` gave at the current stage of a pending request
    /// (they left before its quorum was reached), recording `why`. Approvals at stages already
    /// passed stay: those quorums were reached while the approver could decide.
    pub fn void_approvals(mut self, approver: &Principal, why: &str) -> Transition {
        let State::Pending { stage } = self.state else {
            return Transition::Unchanged(self);
        };
        let mut changed = false;
        for decision in &mut self.decisions {
            if decision.stage == stage && decision.approver == *approver && decision.counts() {
                decision.void = Some(why.to_owned());
                changed = true;
            }
        }
        if changed {
            Transition::Changed(
                self,
                vec![Happened::ApprovalVoided {
                    approver: approver.clone(),
                    reason: why.to_owned(),
                    extension: false,
                }],
            )
        } else {
            Transition::Unchanged(self)
        }
    }

    /// Ends a pending request whose decision deadline has passed; anything else is unchanged.
    pub fn time_out(mut self, now: Timestamp) -> Transition {
        match self.state {
            State::Pending { stage } if now >= self.decide_by => {
                self.state = State::TimedOut;
                self.ended_at = Some(now);
                self.end_reason = Some(format!(
                    "no decision at stage '{}' before {}",
                    self.stage_name(stage),
                    self.decide_by
                ));
                Transition::Changed(self, vec![Happened::TimedOut])
            }
            _ => Transition::Unchanged(self),
        }
    }

    /// Checks that `by` may release this lease now. Releasing what is already ending or ended
    /// is not an error: the caller gets the record as it is.
    pub fn check_release(&self, by: &Principal) -> Result<(), TransitionError> {
        if *by != self.requester {
            return Err(TransitionError::NotRequester {
                id: self.id,
                action: "release it",
            });
        }
        match self.state {
            State::Active | State::RevokeFailing { .. } | State::Ended { .. } => Ok(()),
            _ => Err(self.illegal(Action::Release)),
        }
    }

    /// The target confirmed the grant (and issued credentials, when `credentials_issued`): the
    /// lease starts now.
    pub fn grant_succeeded(
        mut self,
        now: Timestamp,
        credentials_issued: bool,
    ) -> Result<Transition, TransitionError> {
        match self.state {
            State::Approved { .. } => {
                self.state = State::Active;
                self.granted_at = Some(now);
                self.expires_at = Some(now.saturating_add(self.duration.get()));
                if let Some(break_glass) = &mut self.break_glass {
                    // The grant opens the review at once.
                    break_glass.review = Some(Review::open(now, break_glass.review_within));
                }
                Ok(Transition::Changed(
                    self,
                    vec![Happened::Granted { credentials_issued }],
                ))
            }
            State::Active => Ok(Transition::Unchanged(self)),
            _ => Err(self.illegal(Action::Grant)),
        }
    }

    /// A grant attempt failed at `now`; try again at `retry_at`, or (`None`: that was the last
    /// attempt) clean up at once.
    pub fn grant_failed(
        mut self,
        error: String,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Transition, TransitionError> {
        match &mut self.state {
            State::Approved { attempts } => {
                attempts.count += 1;
                attempts.last_error = Some(error.clone());
                attempts.retry_at = retry_at.unwrap_or(now);
                let attempt = attempts.count;
                Ok(Transition::Changed(
                    self,
                    vec![Happened::GrantFailed {
                        attempt,
                        error,
                        retry_at,
                    }],
                ))
            }
            _ => Err(self.illegal(Action::Grant)),
        }
    }

    /// Ends the lease as `ending` from now on: the revoke is due at once and carried out by
    /// the timer (or by recovery after a crash), so deciding to revoke and doing it cannot be
    /// separated by a failure. Already ending or ended: unchanged.
    pub fn begin_revoke(
        mut self,
        ending: Ending,
        now: Timestamp,
    ) -> Result<Transition, TransitionError> {
        match self.state {
            State::Active => {
                self.state = State::RevokeFailing {
                    ending,
                    attempts: Attempts::due(now),
                };
                // Decided, not done: what happened is recorded when the target confirms.
                Ok(Transition::Changed(self, Vec::new()))
            }
            State::RevokeFailing { .. } | State::Ended { .. } => Ok(Transition::Unchanged(self)),
            _ => Err(self.illegal(Action::Revoke)),
        }
    }

    /// The target confirmed that access is gone (or kept the grant for `grant_kept_for`, a live
    /// lease sharing it). A lease already ending keeps the ending it started with; one already
    /// ended is unchanged. `why`, when someone gave a reason, is the end reason unless one was
    /// recorded before.
    pub fn revoke_succeeded(
        mut self,
        ending: Ending,
        now: Timestamp,
        why: Option<String>,
        grant_kept_for: Option<RequestId>,
    ) -> Result<Transition, TransitionError> {
        let ending = match &self.state {
            State::Active => ending,
            State::Approved { .. } if matches!(ending, Ending::Failed | Ending::Revoked) => ending,
            State::RevokeFailing { ending, .. } => *ending,
            State::Ended { .. } => return Ok(Transition::Unchanged(self)),
            _ => return Err(self.illegal(Action::Revoke)),
        };
        if why.is_some() && self.end_reason.is_none() {
            self.end_reason = why.clone();
        }
        if ending == Ending::Failed && self.end_reason.is_none() {
            self.end_reason = self.last_error().map(|e| format!("grant failed: {e}"));
        }
        self.state = State::Ended { ending };
        self.ended_at = Some(now);
        let lag = self
            .expires_at
            .filter(|_| ending == Ending::Expired)
            .map(|expires_at| now.saturating_duration_since(expires_at));
        Ok(Transition::Changed(
            self,
            vec![Happened::Ended {
                ending,
                grant_kept_for,
                reason: why,
                lag,
            }],
        ))
    }

    /// A revoke attempt failed: the lease is `revoke_failing` until a retry succeeds. `why`,
    /// when someone gave a reason, is the end reason unless one was recorded before.
    pub fn revoke_failed(
        mut self,
        ending: Ending,
        error: String,
        retry_at: Timestamp,
        why: Option<String>,
    ) -> Result<Transition, TransitionError> {
        if why.is_some() && self.end_reason.is_none() {
            self.end_reason = why.clone();
        }
        let detail = error.clone();
        match &mut self.state {
            State::Active => {
                self.state = State::RevokeFailing {
                    ending,
                    attempts: Attempts {
                        count: 1,
                        last_error: Some(error),
                        retry_at,
                    },
                };
            }
            State::Approved { attempts } if matches!(ending, Ending::Failed | Ending::Revoked) => {
                if ending == Ending::Failed {
                    let grant_error = attempts.last_error.clone();
                    self.end_reason = grant_error.map(|e| format!("grant failed: {e}"));
                }
                self.state = State::RevokeFailing {
                    ending,
                    attempts: Attempts {
                        count: 1,
                        last_error: Some(error),
                        retry_at,
                    },
                };
            }
            State::RevokeFailing { attempts, .. } => {
                attempts.count += 1;
                attempts.last_error = Some(error);
                attempts.retry_at = retry_at;
            }
            State::Ended { .. } => return Ok(Transition::Unchanged(self)),
            _ => return Err(self.illegal(Action::Revoke)),
        }
        let attempt = self.attempts().map_or(1, |a| a.count);
        Ok(Transition::Changed(
            self,
            vec![Happened::RevokeFailed {
                attempt,
                error: detail,
                retry_at,
                reason: why,
            }],
        ))
    }

    /// Flags an active lease whose holder stopped being eligible, kept to its end for review
    /// (`why` says why). Anything else, or a lease flagged already, is unchanged.
    pub fn flag(mut self, why: String) -> Transition {
        if self.kind() == StateKind::Active && self.flagged.is_none() {
            self.flagged = Some(why.clone());
            Transition::Changed(self, vec![Happened::Flagged { reason: why }])
        } else {
            Transition::Unchanged(self)
        }
    }

    /// Attempts of the grant or revoke in progress.
    pub fn attempts(&self) -> Option<&Attempts> {
        match &self.state {
            State::Approved { attempts } | State::RevokeFailing { attempts, .. } => Some(attempts),
            _ => None,
        }
    }

    /// The last error a target reported for the side effect in progress.
    pub fn last_error(&self) -> Option<&str> {
        self.attempts().and_then(|a| a.last_error.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::fixtures::{p, t, two_stage};

    fn changed(result: Result<Transition, TransitionError>) -> AccessRequest {
        match result.unwrap() {
            Transition::Changed(request, _) => request,
            Transition::Unchanged(request) => panic!("unexpectedly unchanged: {:?}", request.state),
        }
    }

    #[test]
    fn two_stages_in_order_then_grant_and_expiry() {
        let r = changed(two_stage().approve(&p("manager"), None, t(1)));
        assert_eq!(r.state, State::Pending { stage: 1 });
        let r = changed(r.approve(&p("security"), None, t(2)));
        assert_eq!(r.kind(), StateKind::Approved);
        assert_eq!(r.approved_at, Some(t(2)));
        let r = changed(r.grant_succeeded(t(3), false));
        assert_eq!(r.kind(), StateKind::Active);
        assert_eq!(r.expires_at, Some(t(3 + 1800)));
        assert_eq!(r.next_deadline(), Some(t(1803)));
        let r = changed(r.revoke_succeeded(Ending::Expired, t(1803), None, None));
        assert_eq!(r.kind(), StateKind::Expired);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn a_voided_approval_stops_counting_only_at_the_undecided_stage() {
        let mut request = two_stage();
        request.route.stages[1].quorum = 2;
        request.route.stages[1].approvers.insert(p("lead"));
        request.route.stages[1].approvers.insert(p("ciso"));
        let r = changed(request.approve(&p("manager"), None, t(1)));
        let r = changed(r.approve(&p("security"), None, t(2)));
        assert_eq!(r.approvals_at(1).count(), 1);
        // The manager's approval passed stage 0 already: it stays.
        let r = match r.void_approvals(&p("manager"), "left") {
            Transition::Unchanged(r) => r,
            Transition::Changed(_, _) => panic!("a passed stage's approval was voided"),
        };
        let r = match r.void_approvals(&p("security"), "security left") {
            Transition::Changed(r, _) => r,
            Transition::Unchanged(_) => panic!("nothing voided"),
        };
        assert_eq!(r.approvals_at(1).count(), 0);
        assert_eq!(r.decisions[1].void.as_deref(), Some("security left"));
        // Two more approvals are needed now.
        let r = changed(r.approve(&p("lead"), None, t(3)));
        assert_eq!(r.state, State::Pending { stage: 1 });
        let r = changed(r.approve(&p("ciso"), None, t(4)));
        assert_eq!(r.kind(), StateKind::Approved);
    }

    #[test]
    fn withdraw_ends_only_a_pending_request() {
        let r = match two_stage().withdraw("engineer left".to_owned(), t(5)) {
            Transition::Changed(r, _) => r,
            Transition::Unchanged(_) => panic!("not withdrawn"),
        };
        assert_eq!(r.kind(), StateKind::Cancelled);
        assert_eq!(r.end_reason.as_deref(), Some("engineer left"));
        assert_eq!(r.ended_at, Some(t(5)));
        let active = changed(
            changed(
                changed(two_stage().approve(&p("manager"), None, t(1))).approve(
                    &p("security"),
                    None,
                    t(2),
                ),
            )
            .grant_succeeded(t(3), false),
        );
        assert!(matches!(
            active.withdraw("x".to_owned(), t(4)),
            Transition::Unchanged(_)
        ));
    }

    #[test]
    fn an_approved_request_can_be_revoked_before_its_grant_lands() {
        let approved = changed(
            changed(two_stage().approve(&p("manager"), None, t(1))).approve(
                &p("security"),
                None,
                t(2),
            ),
        );
        let r = changed(
            approved
                .clone()
                .revoke_succeeded(Ending::Revoked, t(3), None, None),
        );
        assert_eq!(r.kind(), StateKind::Revoked);
        let r = changed(approved.revoke_failed(Ending::Revoked, "down".to_owned(), t(9), None));
        assert_eq!(r.kind(), StateKind::RevokeFailing);
        assert!(
            two_stage()
                .revoke_succeeded(Ending::Revoked, t(3), None, None)
                .is_err()
        );
    }

    #[test]
    fn requester_cannot_decide() {
        let error = two_stage().approve(&p("engineer"), None, t(1)).unwrap_err();
        assert_eq!(error, TransitionError::SelfDecision);
        let error = two_stage()
            .deny(&p("engineer"), Reason::parse("no").unwrap(), t(1))
            .unwrap_err();
        assert_eq!(error, TransitionError::SelfDecision);
    }

    #[test]
    fn one_person_counts_once_across_stages() {
        let r = changed(two_stage().approve(&p("manager"), None, t(1)));
        let error = r.approve(&p("manager"), None, t(2)).unwrap_err();
        assert!(
            matches!(error, TransitionError::AlreadyCounted { .. }),
            "{error}"
        );
    }

    #[test]
    fn repeated_approval_is_unchanged() {
        let mut request = two_stage();
        request.route.stages[0].quorum = 2;
        request.route.stages[0].approvers.insert(p("lead"));
        let r = changed(request.approve(&p("manager"), None, t(1)));
        let r = match r.approve(&p("manager"), None, t(2)).unwrap() {
            Transition::Unchanged(r) => r,
            Transition::Changed(_, _) => panic!("repeat changed the request"),
        };
        assert_eq!(r.decisions.len(), 1);
        assert_eq!(r.state, State::Pending { stage: 0 });
    }

    #[test]
    fn wrong_stage_and_ineligible_are_distinguished() {
        let error = two_stage().approve(&p("security"), None, t(1)).unwrap_err();
        assert!(
            matches!(error, TransitionError::WrongStage { .. }),
            "{error}"
        );
        let error = two_stage().approve(&p("stranger"), None, t(1)).unwrap_err();
        assert!(
            matches!(error, TransitionError::NotEligible { .. }),
            "{error}"
        );
    }

    #[test]
    fn deny_ends_it_and_approval_after_deny_is_illegal() {
        let r = changed(two_stage().deny(&p("manager"), Reason::parse("no").unwrap(), t(1)));
        assert_eq!(r.kind(), StateKind::Denied);
        let error = r.clone().approve(&p("security"), None, t(2)).unwrap_err();
        assert!(matches!(
            error,
            TransitionError::Illegal {
                state: StateKind::Denied,
                ..
            }
        ));
        assert!(matches!(
            r.deny(&p("manager"), Reason::parse("no").unwrap(), t(3)),
            Ok(Transition::Unchanged(_))
        ));
    }

    #[test]
    fn cancel_only_by_requester_and_only_while_pending() {
        assert!(matches!(
            two_stage().cancel(&p("manager"), t(1)),
            Err(TransitionError::NotRequester { .. })
        ));
        let r = changed(two_stage().cancel(&p("engineer"), t(1)));
        assert!(matches!(
            r.clone().cancel(&p("engineer"), t(2)),
            Ok(Transition::Unchanged(_))
        ));
        let r = changed(
            changed(two_stage().approve(&p("manager"), None, t(1))).approve(
                &p("security"),
                None,
                t(2),
            ),
        );
        assert!(r.cancel(&p("engineer"), t(3)).is_err());
    }

    #[test]
    fn no_decision_after_the_deadline_even_before_the_timer() {
        let error = two_stage()
            .approve(&p("manager"), None, t(3600))
            .unwrap_err();
        assert!(
            matches!(error, TransitionError::PastDeadline { .. }),
            "{error}"
        );
        let error = two_stage()
            .deny(&p("manager"), Reason::parse("no").unwrap(), t(3601))
            .unwrap_err();
        assert!(
            matches!(error, TransitionError::PastDeadline { .. }),
            "{error}"
        );
    }

    #[test]
    fn an_approval_that_would_strand_a_later_stage_is_refused() {
        // Stage 1: manager or lead; stage 2: manager only. If the manager takes stage 1,
        // nobody is left for stage 2.
        let mut request = two_stage();
        request.route.stages[0].approvers.insert(p("lead"));
        request.route.stages[1].approvers = BTreeSet::from([p("manager")]);
        let error = request
            .clone()
            .approve(&p("manager"), None, t(1))
            .unwrap_err();
        assert!(
            matches!(
                error,
                TransitionError::WouldStrand {
                    needed: 1,
                    available: 0,
                    ..
                }
            ),
            "{error}"
        );
        let r = changed(request.approve(&p("lead"), None, t(1)));
        let r = changed(r.approve(&p("manager"), None, t(2)));
        assert_eq!(r.kind(), StateKind::Approved);
    }

    #[test]
    fn time_out_only_when_due() {
        assert!(matches!(
            two_stage().time_out(t(10)),
            Transition::Unchanged(_)
        ));
        match two_stage().time_out(t(3600)) {
            Transition::Changed(r, _) => assert_eq!(r.kind(), StateKind::TimedOut),
            Transition::Unchanged(_) => panic!("not timed out"),
        }
    }

    #[test]
    fn failing_revoke_keeps_its_ending_until_confirmed() {
        let r = changed(two_stage().approve(&p("manager"), None, t(1)));
        let r = changed(r.approve(&p("security"), None, t(2)));
        let r = changed(r.grant_succeeded(t(3), false));
        let r = changed(r.revoke_failed(Ending::Expired, "down".into(), t(1900), None));
        assert_eq!(r.kind(), StateKind::RevokeFailing);
        assert_eq!(r.last_error(), Some("down"));
        let r = changed(r.revoke_failed(Ending::Released, "still down".into(), t(1950), None));
        assert_eq!(r.attempts().unwrap().count, 2);
        let r = changed(r.revoke_succeeded(Ending::Released, t(2000), None, None));
        assert_eq!(r.kind(), StateKind::Expired, "the first ending wins");
    }

    #[test]
    fn transitions_say_what_happened() {
        let happened = |transition: Transition| match transition {
            Transition::Changed(request, happened) => (request, happened),
            Transition::Unchanged(_) => panic!("unchanged"),
        };
        let (first, events) = happened(two_stage().approve(&p("manager"), None, t(1)).unwrap());
        assert_eq!(
            events,
            [Happened::ApprovalRecorded {
                stage: 0,
                stage_name: "manager".into(),
                comment: None,
            }]
        );
        let (approved, events) = happened(first.approve(&p("security"), None, t(2)).unwrap());
        assert!(matches!(
            events.as_slice(),
            [
                Happened::ApprovalRecorded { stage: 1, .. },
                Happened::Approved {
                    how: Approval::Route
                }
            ]
        ));
        let (active, events) = happened(approved.grant_succeeded(t(3), true).unwrap());
        assert_eq!(
            events,
            [Happened::Granted {
                credentials_issued: true
            }]
        );
        let end = active.expires_at.unwrap();
        let late = end.saturating_add(std::time::Duration::from_millis(250));
        let (_, events) = happened(
            active
                .revoke_succeeded(Ending::Expired, late, None, None)
                .unwrap(),
        );
        assert_eq!(
            events,
            [Happened::Ended {
                ending: Ending::Expired,
                grant_kept_for: None,
                reason: None,
                lag: Some(std::time::Duration::from_millis(250)),
            }]
        );
        // Deciding to revoke is not yet a revoke: nothing happened that is recorded. Its first
        // failed attempt is attempt 1.
        let (revoking, events) = happened(
            two_stage()
                .approve(&p("manager"), None, t(1))
                .unwrap()
                .into_request()
                .approve(&p("security"), None, t(2))
                .unwrap()
                .into_request()
                .grant_succeeded(t(3), false)
                .unwrap()
                .into_request()
                .begin_revoke(Ending::Revoked, t(4))
                .unwrap(),
        );
        assert!(events.is_empty());
        let (_, events) = happened(
            revoking
                .revoke_failed(Ending::Revoked, "down".into(), t(9), Some("audit".into()))
                .unwrap(),
        );
        assert_eq!(
            events,
            [Happened::RevokeFailed {
                attempt: 1,
                error: "down".into(),
                retry_at: t(9),
                reason: Some("audit".into()),
            }]
        );
    }
}
