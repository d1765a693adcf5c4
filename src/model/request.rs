//! The access-request record: what was asked, the route it must pass, the decisions made, and
//! the lease it became. History is never deleted, so a record is kept whole for its whole life.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    BreakGlass, LeaseDuration, Principal, Reason, RequestId, ResourceName, ReviewState, State,
    StateKind, Ticket, Timestamp,
};

/// The approval route resolved at request time: ordered stages. Empty means auto-approved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Stages in the order they must be passed.
    pub stages: Vec<RouteStage>,
}

impl Route {
    /// Whether the route can still be completed, one person counting once: the approvals still
    /// missing at stage `stage` (which has `counted` already) and every later stage must be
    /// filled by distinct people from the stages' approvers, none of them in `used`. Returns
    /// the approvals needed and how many can be filled when that is too few.
    ///
    /// Exact: a bipartite matching of missing approvals to people (augmenting paths).
    pub fn shortfall(
        &self,
        stage: usize,
        counted: usize,
        used: &BTreeSet<&Principal>,
    ) -> Option<(usize, usize)> {
        let mut slots: Vec<Vec<&Principal>> = Vec::new();
        for (index, each) in self.stages.iter().enumerate().skip(stage) {
            let missing = if index == stage {
                (each.quorum as usize).saturating_sub(counted)
            } else {
                each.quorum as usize
            };
            let candidates: Vec<&Principal> = each
                .approvers
                .iter()
                .filter(|p| !used.contains(p))
                .collect();
            slots.extend((0..missing).map(|_| candidates.clone()));
        }
        let mut taken: BTreeMap<&Principal, usize> = BTreeMap::new();
        let matched = (0..slots.len())
            .filter(|&slot| augment(slot, &slots, &mut taken, &mut BTreeSet::new()))
            .count();
        (matched < slots.len()).then_some((slots.len(), matched))
    }
}

fn augment<'a>(
    slot: usize,
    slots: &[Vec<&'a Principal>],
    taken: &mut BTreeMap<&'a Principal, usize>,
    seen: &mut BTreeSet<&'a Principal>,
) -> bool {
    for &person in &slots[slot] {
        if !seen.insert(person) {
            continue;
        }
        let free = match taken.get(person) {
            None => true,
            Some(&other) => augment(other, slots, taken, seen),
        };
        if free {
            taken.insert(person, slot);
            return true;
        }
    }
    false
}

/// One stage: `quorum` distinct approvals from `approvers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStage {
    /// Human name of the stage ("manager", "security").
    pub name: String,
    /// Approvals needed to pass the stage.
    pub quorum: u32,
    /// Who may approve at this stage; resolved from the directory at request time, never
    /// containing the requester.
    pub approvers: BTreeSet<Principal>,
}

/// Approve or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Counts toward the stage's quorum.
    Approve,
    /// Ends the request.
    Deny,
}

impl Verdict {
    /// "approve" or "deny".
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }
}

/// An administrator offboarded a principal: they can make no call, and the broker treats them
/// as a leaver whatever the directory says, until an administrator reinstates them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offboarding {
    /// Who was offboarded.
    pub principal: Principal,
    /// When.
    pub at: Timestamp,
    /// The administrator.
    pub by: Principal,
    /// Why.
    pub reason: String,
}

/// One approver's decision at one stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Who decided.
    pub approver: Principal,
    /// What they decided.
    pub verdict: Verdict,
    /// Their comment (the reason, for a deny); validated as a `Comment` or `Reason` on entry.
    pub comment: Option<String>,
    /// When.
    pub at: Timestamp,
    /// Index of the stage the decision was made at.
    pub stage: u32,
    /// Why an approval no longer counts toward its stage's quorum (the approver left before
    /// the quorum was reached); `None` while it counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub void: Option<String>,
}

impl Decision {
    /// Whether this is an approval that counts.
    pub fn counts(&self) -> bool {
        self.verdict == Verdict::Approve && self.void.is_none()
    }
}

/// An access request and, once granted, its lease. One id for its whole life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// The id of the request and of its lease.
    pub id: RequestId,
    /// Who asked; the holder once granted.
    pub requester: Principal,
    /// What for.
    pub resource: ResourceName,
    /// Why (required by most resources).
    pub reason: Option<Reason>,
    /// Ticket reference, when given.
    pub ticket: Option<Ticket>,
    /// How long the lease lasts once granted.
    pub duration: LeaseDuration,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When a pending request times out.
    pub decide_by: Timestamp,
    /// The route resolved at submission.
    pub route: Route,
    /// Content hash of the policy the route came from.
    pub policy_version: String,
    /// The provisioner that grants and revokes this lease, fixed at submission so that a
    /// policy change never strands a grant.
    pub provisioner: String,
    /// Extensions of the lease, in the order asked.
    #[serde(default)]
    pub extensions: Vec<super::Extension>,
    /// The requester's account on the provisioner's target, fixed at submission so that a
    /// directory change never makes a revoke miss the account that was granted. `None` in
    /// records written before accounts existed: the requester's name.
    #[serde(default)]
    pub account: Option<String>,
    /// Every decision, in order.
    pub decisions: Vec<Decision>,
    /// Where the request is now.
    pub state: State,
    /// When the last stage was passed (or the request auto-approved).
    pub approved_at: Option<Timestamp>,
    /// When the target confirmed the grant.
    pub granted_at: Option<Timestamp>,
    /// When the lease ends; set at grant.
    pub expires_at: Option<Timestamp>,
    /// When the request reached a final state.
    pub ended_at: Option<Timestamp>,
    /// Why it ended, when the state alone does not say (deny reason, failure).
    pub end_reason: Option<String>,
    /// The break-glass part, for break-glass requests.
    #[serde(default)]
    pub break_glass: Option<BreakGlass>,
    /// When notifications that depend on time are due.
    #[serde(default)]
    pub notices: Notices,
    /// Why the lease was flagged for review instead of revoked when its holder stopped being
    /// eligible for the resource (a policy or directory change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged: Option<String>,
    /// The requester's SSH public key, for resources granted by SSH certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<super::SshPublicKey>,
}

/// Times at which notifications fall due; each is cleared (or moved on) once sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notices {
    /// When to remind the approvers of the current stage again.
    pub approval_reminder_at: Option<Timestamp>,
    /// When to tell the holder that the lease expires soon.
    pub expiring_at: Option<Timestamp>,
    /// When to tell the reviewers that the review is due soon.
    pub review_due_at: Option<Timestamp>,
}

/// What is due for a request at some instant, in the order the broker handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// The state's own deadline: time-out, grant or revoke attempt, expiry.
    State,
    /// An approved extension waits to be applied on the target (at once; this makes it
    /// survive a restart between approval and application).
    Extension,
    /// The review's deadline passed.
    ReviewOverdue,
    /// An overdue review's reminder.
    ReviewReminder,
    /// The approvers of the current stage are reminded.
    ApprovalReminder,
    /// The holder is told the lease expires soon.
    Expiring,
    /// The reviewers are told the review is due soon.
    ReviewDueSoon,
}

impl AccessRequest {
    /// The state's kind, as shown to users.
    pub fn kind(&self) -> StateKind {
        self.state.kind()
    }

    /// Name of stage `index`, or a placeholder for a corrupt index.
    pub fn stage_name(&self, index: u32) -> &str {
        self.route
            .stages
            .get(index as usize)
            .map_or("?", |stage| stage.name.as_str())
    }

    /// The stage waiting for decisions, if pending.
    pub fn current_stage(&self) -> Option<(u32, &RouteStage)> {
        match self.state {
            State::Pending { stage } => self
                .route
                .stages
                .get(stage as usize)
                .map(|found| (stage, found)),
            _ => None,
        }
    }

    /// Whether `principal` may decide now: eligible at the current stage, not the requester,
    /// and not already counted.
    pub fn awaits_decision_from(&self, principal: &Principal) -> bool {
        if *principal == self.requester {
            return false;
        }
        if self.extension_pending() {
            return self.open_extension().is_some_and(|extension| {
                extension
                    .stage
                    .as_ref()
                    .is_some_and(|stage| stage.approvers.contains(principal))
                    && !extension.approvals.iter().any(|(who, _)| who == principal)
            });
        }
        self.current_stage()
            .is_some_and(|(_, stage)| stage.approvers.contains(principal))
            && !self
                .decisions
                .iter()
                .any(|d| d.approver == *principal && d.void.is_none())
    }

    /// Whether `principal` appears anywhere in the route, or among the approvers of an
    /// extension.
    pub fn is_approver(&self, principal: &Principal) -> bool {
        self.route
            .stages
            .iter()
            .chain(self.extensions.iter().filter_map(|e| e.stage.as_ref()))
            .any(|stage| stage.approvers.contains(principal))
    }

    /// Approvals that count at stage `index` (voided ones do not).
    pub fn approvals_at(&self, index: u32) -> impl Iterator<Item = &Decision> {
        self.decisions
            .iter()
            .filter(move |d| d.stage == index && d.counts())
    }

    /// The state's own deadline: the time-out of a pending request, the next grant or revoke
    /// attempt, or the lease's expiry.
    pub fn state_deadline(&self) -> Option<Timestamp> {
        match &self.state {
            State::Pending { .. } => Some(self.decide_by),
            State::Approved { attempts } | State::RevokeFailing { attempts, .. } => {
                Some(attempts.retry_at)
            }
            State::Active => self.expires_at,
            State::Denied | State::Cancelled | State::TimedOut | State::Ended { .. } => None,
        }
    }

    /// Everything that falls due for this request, with its instant, in handling order.
    fn deadlines(&self) -> [(Due, Option<Timestamp>); 7] {
        let review = self.review();
        [
            (Due::State, self.state_deadline()),
            (
                Due::Extension,
                self.open_extension()
                    .filter(|e| {
                        self.kind() == StateKind::Active
                            && e.state == super::ExtensionState::Approved
                    })
                    .map(|e| e.asked_at),
            ),
            (
                Due::ReviewOverdue,
                review
                    .filter(|r| r.state == ReviewState::Pending)
                    .map(|r| r.due_at),
            ),
            (
                Due::ReviewReminder,
                review
                    .filter(|r| r.state == ReviewState::Overdue)
                    .and_then(|r| r.next_reminder_at),
            ),
            (Due::ApprovalReminder, self.notices.approval_reminder_at),
            (Due::Expiring, self.notices.expiring_at),
            (Due::ReviewDueSoon, self.notices.review_due_at),
        ]
    }

    /// The next instant the broker must act on this request by itself: the earliest of the
    /// state's deadline, the review's deadline or reminder, and the notices.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines().into_iter().filter_map(|(_, at)| at).min()
    }

    /// What is due at `now`, if anything, in handling order: the state's deadline and the
    /// review's before notices, so that after a delay a warning never goes out after (or
    /// just before) the thing it warns about; acting on the former clears the latter.
    pub fn due(&self, now: Timestamp) -> Option<Due> {
        self.deadlines()
            .into_iter()
            .find(|(_, at)| at.is_some_and(|at| at <= now))
            .map(|(due, _)| due)
    }

    /// Whether this is a break-glass request.
    pub fn is_break_glass(&self) -> bool {
        self.break_glass.is_some()
    }
}
