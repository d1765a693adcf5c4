//! Extensions of an active lease. The holder asks to move the end by some duration with a
//! reason; within the resource's limits (how many extensions, the longest total lifetime) the
//! extension applies at once or waits for the quorum of the route's first stage. The end moves
//! only after the target accepted the new end (an ephemeral login's `VALID UNTIL`), so a
//! failed extension leaves the earlier, shorter lease in force. Every extension is kept in the
//! record, whatever became of it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{
    AccessRequest, Comment, Happened, LeaseDuration, Principal, Reason, RouteStage, State,
    StateKind, Timestamp, Transition, TransitionError,
};

/// What became of an extension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ExtensionState {
    /// Waiting for approvals.
    Pending,
    /// Approved (or auto-approved); the target is being told the new end.
    Approved,
    /// The lease's end moved.
    Applied {
        /// When.
        at: Timestamp,
    },
    /// An approver refused it.
    Denied {
        /// Who.
        by: Principal,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
    },
    /// The target refused the new end; the lease keeps its earlier end.
    Failed {
        /// What the target said.
        error: String,
        /// When.
        at: Timestamp,
    },
    /// The lease ended before the extension was decided.
    Lapsed {
        /// When.
        at: Timestamp,
    },
}

impl ExtensionState {
    /// The name shown to people.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Applied { .. } => "applied",
            Self::Denied { .. } => "denied",
            Self::Failed { .. } => "failed",
            Self::Lapsed { .. } => "lapsed",
        }
    }

    /// Pending or approved: counts toward the limit and blocks another ask.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Pending | Self::Approved)
    }
}

/// One extension of a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// How far the end moves.
    pub by: LeaseDuration,
    /// Why.
    pub reason: Reason,
    /// When the holder asked.
    pub asked_at: Timestamp,
    /// The end before the extension.
    pub from: Timestamp,
    /// The stage whose quorum must approve; `None` when extensions apply at once.
    pub stage: Option<RouteStage>,
    /// Who approved so far.
    pub approvals: Vec<(Principal, Timestamp)>,
    /// Where it is.
    pub state: ExtensionState,
}

impl Extension {
    /// The end the lease gets once the extension applies.
    pub fn until(&self) -> Timestamp {
        self.from.saturating_add(self.by.get())
    }
}

/// The resource's limits, as the broker reads them from the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtensionLimits {
    /// Most extensions (applied or in progress) per lease.
    pub max_count: u32,
    /// Longest lifetime from grant to end.
    pub max_total: LeaseDuration,
}

/// Why an extension was refused as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// The resource allows no extensions.
    #[error("{0} does not allow extensions")]
    NotAllowed(String),
    /// The lease already had its extensions.
    #[error("{id} was extended {count} time(s), the most {resource} allows")]
    TooMany {
        /// The lease.
        id: String,
        /// Extensions so far.
        count: u32,
        /// The resource.
        resource: String,
    },
    /// The new end would make the lease live longer than allowed.
    #[error(
        "extending {id} by {by} would end it at {until}, {total} after its grant; {resource} allows at most {max_total}"
    )]
    TooLong {
        /// The lease.
        id: String,
        /// The asked extension.
        by: LeaseDuration,
        /// The end it would have.
        until: Timestamp,
        /// Lifetime it would have.
        total: String,
        /// The resource.
        resource: String,
        /// The limit.
        max_total: LeaseDuration,
    },
    /// Another extension is still being decided.
    #[error("{id} already has an extension waiting for approval")]
    AlreadyAsked {
        /// The lease.
        id: String,
    },
}

impl AccessRequest {
    /// The extension being decided or applied, if any.
    pub fn open_extension(&self) -> Option<&Extension> {
        self.extensions.iter().rev().find(|e| e.state.is_open())
    }

    fn open_extension_mut(&mut self) -> Option<&mut Extension> {
        self.extensions.iter_mut().rev().find(|e| e.state.is_open())
    }

    /// Whether an approver's decision on this request is about an extension: the lease is
    /// active and an extension waits for approvals.
    pub fn extension_pending(&self) -> bool {
        self.kind() == StateKind::Active
            && self
                .open_extension()
                .is_some_and(|e| e.state == ExtensionState::Pending)
    }

    /// Whether `approver` repeats the decision they gave the latest extension: its approval
    /// when `approve`, else its denial. A repeated decision answers with the lease as it is,
    /// like a repeated decision on the request, also once nothing waits any more.
    pub fn repeats_extension_decision(&self, approver: &Principal, approve: bool) -> bool {
        self.extensions.last().is_some_and(|e| {
            if approve {
                e.approvals.iter().any(|(who, _)| who == approver)
            } else {
                matches!(&e.state, ExtensionState::Denied { by, .. } if by == approver)
            }
        })
    }

    /// The holder asks to extend the active lease by `by`. With a `stage` the extension waits
    /// for its quorum; without, it is approved at once. Refused beyond `limits`.
    pub fn ask_extension(
        mut self,
        holder: &Principal,
        by: LeaseDuration,
        reason: Reason,
        limits: ExtensionLimits,
        stage: Option<RouteStage>,
        now: Timestamp,
    ) -> Result<Result<Transition, ExtensionError>, TransitionError> {
        if *holder != self.requester {
            return Err(TransitionError::NotRequester {
                id: self.id,
                action: "extend it",
            });
        }
        let (State::Active, Some(from), Some(granted_at)) =
            (&self.state, self.expires_at, self.granted_at)
        else {
            return Err(TransitionError::Illegal {
                id: self.id,
                action: "extend",
                state: self.kind(),
                hint: " (only an active lease can be extended)",
            });
        };
        if from <= now {
            return Err(TransitionError::Illegal {
                id: self.id,
                action: "extend",
                state: self.kind(),
                hint: " (its end has passed; it is being revoked)",
            });
        }
        if self.open_extension().is_some() {
            return Ok(Err(ExtensionError::AlreadyAsked {
                id: self.id.to_string(),
            }));
        }
        let count = self
            .extensions
            .iter()
            .filter(|e| matches!(e.state, ExtensionState::Applied { .. }))
            .count() as u32;
        if count >= limits.max_count {
            return Ok(Err(ExtensionError::TooMany {
                id: self.id.to_string(),
                count,
                resource: self.resource.to_string(),
            }));
        }
        let until = from.saturating_add(by.get());
        let total = until.saturating_duration_since(granted_at);
        if total > limits.max_total.get() {
            return Ok(Err(ExtensionError::TooLong {
                id: self.id.to_string(),
                by,
                until,
                total: humantime::format_duration(total).to_string(),
                resource: self.resource.to_string(),
                max_total: limits.max_total,
            }));
        }
        let state = if stage.is_some() {
            ExtensionState::Pending
        } else {
            ExtensionState::Approved
        };
        let extension = Extension {
            by,
            reason: reason.clone(),
            asked_at: now,
            from,
            stage,
            approvals: Vec::new(),
            state,
        };
        let happened = Happened::ExtensionRequested {
            by,
            reason,
            until: Some(extension.until()),
            stage: extension.stage.as_ref().map(|stage| stage.name.clone()),
        };
        self.extensions.push(extension);
        Ok(Ok(Transition::Changed(self, vec![happened])))
    }

    /// The index of the extension waiting for `approver`'s decision; `None` when there is
    /// none and `repeated` (the approver repeats a decision already recorded) makes the call
    /// a no-op.
    fn extension_to_decide(
        &self,
        approver: &Principal,
        repeated: bool,
    ) -> Result<Option<usize>, TransitionError> {
        if *approver == self.requester {
            return Err(TransitionError::SelfDecision);
        }
        let waiting = self
            .extensions
            .iter()
            .rposition(|e| e.state == ExtensionState::Pending)
            .filter(|_| self.kind() == StateKind::Active);
        let Some(index) = waiting else {
            return if repeated {
                Ok(None)
            } else {
                Err(decided(self.id, self.kind()))
            };
        };
        let Some(stage) = &self.extensions[index].stage else {
            return Err(decided(self.id, self.kind()));
        };
        if !stage.approvers.contains(approver) {
            return Err(TransitionError::NotEligible {
                id: self.id,
                stage: stage.name.clone(),
                approvers: join(&stage.approvers),
            });
        }
        Ok(Some(index))
    }

    /// Removes the approvals of the pending extension given by people `leaving` says left:
    /// they no longer count toward its quorum. Returns who was removed.
    pub fn drop_extension_approvals(
        &mut self,
        leaving: impl Fn(&Principal) -> bool,
    ) -> Vec<Principal> {
        let Some(extension) = self
            .extensions
            .last_mut()
            .filter(|e| e.state == ExtensionState::Pending)
        else {
            return Vec::new();
        };
        let (gone, kept): (Vec<_>, Vec<_>) = extension
            .approvals
            .drain(..)
            .partition(|(who, _)| leaving(who));
        extension.approvals = kept;
        gone.into_iter().map(|(who, _)| who).collect()
    }

    /// An approver approves the pending extension; its stage's quorum approves it.
    /// Repeating an approval changes nothing.
    pub fn approve_extension(
        mut self,
        approver: &Principal,
        comment: Option<Comment>,
        now: Timestamp,
    ) -> Result<Transition, TransitionError> {
        let repeated = self
            .extensions
            .last()
            .is_some_and(|e| e.approvals.iter().any(|(who, _)| who == approver));
        let Some(index) = self.extension_to_decide(approver, repeated)? else {
            return Ok(Transition::Unchanged(self));
        };
        if repeated {
            return Ok(Transition::Unchanged(self));
        }
        let extension = &mut self.extensions[index];
        extension.approvals.push((approver.clone(), now));
        let quorum = extension.stage.as_ref().map_or(1, |s| s.quorum as usize);
        if extension.approvals.len() >= quorum {
            extension.state = ExtensionState::Approved;
        }
        Ok(Transition::Changed(
            self,
            vec![Happened::ExtensionApproval { comment }],
        ))
    }

    /// An approver denies the pending extension; the lease keeps its end. Repeating a
    /// denial changes nothing.
    pub fn deny_extension(
        mut self,
        approver: &Principal,
        reason: Reason,
        now: Timestamp,
    ) -> Result<Transition, TransitionError> {
        let repeated = self.extensions.last().is_some_and(
            |e| matches!(&e.state, ExtensionState::Denied { by, .. } if by == approver),
        );
        let Some(index) = self.extension_to_decide(approver, repeated)? else {
            return Ok(Transition::Unchanged(self));
        };
        self.extensions[index].state = ExtensionState::Denied {
            by: approver.clone(),
            reason: reason.to_string(),
            at: now,
        };
        Ok(Transition::Changed(
            self,
            vec![Happened::ExtensionDenied { reason }],
        ))
    }

    /// The target accepted the approved extension's end: the lease now ends there.
    pub fn extension_applied(mut self, now: Timestamp) -> Transition {
        let active = self.kind() == StateKind::Active;
        match self.open_extension_mut() {
            Some(extension) if active && extension.state == ExtensionState::Approved => {
                let until = extension.until();
                extension.state = ExtensionState::Applied { at: now };
                let from = self.expires_at.replace(until);
                Transition::Changed(self, vec![Happened::Extended { from, until }])
            }
            _ => Transition::Unchanged(self),
        }
    }

    /// The target refused the approved extension's end; the lease keeps its end.
    pub fn extension_failed(mut self, error: String, now: Timestamp) -> Transition {
        match self.open_extension_mut() {
            Some(extension) if extension.state == ExtensionState::Approved => {
                extension.state = ExtensionState::Failed {
                    error: error.clone(),
                    at: now,
                };
                Transition::Changed(self, vec![Happened::ExtensionFailed { error }])
            }
            _ => Transition::Unchanged(self),
        }
    }

    /// Marks an undecided extension of a lease that is no longer active as lapsed; `true`
    /// when there was one.
    pub fn lapse_extension(&mut self, now: Timestamp) -> bool {
        if self.kind() == StateKind::Active {
            return false;
        }
        match self.open_extension_mut() {
            Some(extension) => {
                extension.state = ExtensionState::Lapsed { at: now };
                true
            }
            None => false,
        }
    }
}

/// A decision on an extension that is no longer waiting for one.
fn decided(id: super::RequestId, state: StateKind) -> TransitionError {
    TransitionError::Illegal {
        id,
        action: "decide the extension of",
        state,
        hint: " (no extension of it waits for a decision any more)",
    }
}

fn join(people: &BTreeSet<Principal>) -> String {
    people
        .iter()
        .map(Principal::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;
    use std::time::Duration;

    fn minutes(n: u64) -> LeaseDuration {
        LeaseDuration::new(Duration::from_secs(60 * n)).unwrap()
    }

    fn active() -> AccessRequest {
        let mut request = fixtures::two_stage();
        let granted = Timestamp::from_unix_millis(1_000_000);
        request.state = State::Active;
        request.granted_at = Some(granted);
        request.expires_at = Some(granted.saturating_add(minutes(60).get()));
        request
    }

    fn limits() -> ExtensionLimits {
        ExtensionLimits {
            max_count: 2,
            max_total: minutes(120),
        }
    }

    fn reason() -> Reason {
        Reason::parse("still migrating").unwrap()
    }

    #[test]
    fn an_auto_extension_applies_and_counts() {
        let request = active();
        let holder = request.requester.clone();
        let now = request.granted_at.unwrap();
        let end = request.expires_at.unwrap();
        let request = request
            .ask_extension(&holder, minutes(30), reason(), limits(), None, now)
            .unwrap()
            .unwrap()
            .into_request();
        assert_eq!(
            request.open_extension().unwrap().state,
            ExtensionState::Approved
        );
        let request = request.extension_applied(now).into_request();
        assert_eq!(
            request.expires_at,
            Some(end.saturating_add(minutes(30).get()))
        );
        let request = request
            .ask_extension(&holder, minutes(30), reason(), limits(), None, now)
            .unwrap()
            .unwrap()
            .into_request()
            .extension_applied(now)
            .into_request();
        let refused = request
            .ask_extension(&holder, minutes(1), reason(), limits(), None, now)
            .unwrap()
            .unwrap_err();
        assert!(matches!(refused, ExtensionError::TooMany { count: 2, .. }));
    }

    #[test]
    fn the_total_lifetime_is_bounded() {
        let request = active();
        let holder = request.requester.clone();
        let now = request.granted_at.unwrap();
        let refused = request
            .ask_extension(&holder, minutes(61), reason(), limits(), None, now)
            .unwrap()
            .unwrap_err();
        assert!(
            refused.to_string().contains("allows at most 2h"),
            "{refused}"
        );
    }

    #[test]
    fn only_the_holder_of_an_active_lease_extends() {
        let request = active();
        let other = Principal::parse("someone-else").unwrap();
        let now = request.granted_at.unwrap();
        let error = request
            .clone()
            .ask_extension(&other, minutes(5), reason(), limits(), None, now)
            .unwrap_err();
        assert!(matches!(error, TransitionError::NotRequester { .. }));
        let mut pending = fixtures::two_stage();
        pending.state = State::Pending { stage: 0 };
        let holder = pending.requester.clone();
        let error = pending
            .ask_extension(&holder, minutes(5), reason(), limits(), None, now)
            .unwrap_err();
        assert!(matches!(error, TransitionError::Illegal { .. }));
    }

    #[test]
    fn a_routed_extension_waits_for_its_quorum_and_can_be_denied() {
        let request = active();
        let holder = request.requester.clone();
        let now = request.granted_at.unwrap();
        let approver = Principal::parse("approver").unwrap();
        let stage = RouteStage {
            name: "manager".into(),
            quorum: 1,
            approvers: [approver.clone()].into(),
        };
        let request = request
            .ask_extension(&holder, minutes(30), reason(), limits(), Some(stage), now)
            .unwrap()
            .unwrap()
            .into_request();
        assert!(request.extension_pending());
        let error = request
            .clone()
            .approve_extension(&holder, None, now)
            .unwrap_err();
        assert_eq!(error, TransitionError::SelfDecision);
        let denied = request
            .clone()
            .deny_extension(&approver, reason(), now)
            .unwrap()
            .into_request();
        assert_eq!(denied.open_extension(), None);
        let approved = request
            .approve_extension(&approver, None, now)
            .unwrap()
            .into_request();
        assert_eq!(
            approved.open_extension().unwrap().state,
            ExtensionState::Approved
        );
        assert!(!approved.extension_pending());
    }
}
