//! A model-based property test of the approval rules of one request: random routes (up to
//! three stages, quorums up to three, approver sets overlapping between stages) and random
//! sequences of approvals, denials and voided approvals (an approver who left), checked step
//! by step against a brute-force reference.
//!
//! The integration model (`tests/it/model.rs`) drives the daemon through the demo policy,
//! whose stages all have a quorum of one and can never strand a later stage; this one covers
//! what that policy cannot reach: quorums, one person counting once across overlapping stages,
//! an approval refused because it would leave a later stage without enough distinct people,
//! and approvals that stop counting. The reference decides feasibility by trying every
//! assignment of people to the missing approvals, independently of the matching the record
//! uses.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::fixtures::{p, t, two_stage};
use super::{AccessRequest, Route, RouteStage, State, StateKind, Transition, TransitionError};
use super::{Reason, Verdict};

/// The requester, then everyone who may be an approver.
const PEOPLE: [&str; 6] = ["engineer", "ann", "bob", "cat", "dan", "eve"];
const REQUESTER: usize = 0;

#[derive(Clone, Debug)]
enum Step {
    Approve(usize),
    Deny(usize),
    /// The person left: their approvals at the undecided stage stop counting.
    Void(usize),
}

/// What a step did, as both sides report it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Changed,
    Unchanged,
    Refused(&'static str),
}

fn refused(error: &TransitionError) -> Outcome {
    Outcome::Refused(match error {
        TransitionError::SelfDecision => "self decision",
        TransitionError::NotEligible { .. } => "not eligible",
        TransitionError::WrongStage { .. } => "wrong stage",
        TransitionError::AlreadyCounted { .. } => "already counted",
        TransitionError::PastDeadline { .. } => "past deadline",
        TransitionError::WouldStrand { .. } => "would strand",
        TransitionError::Illegal { .. } => "illegal",
        _ => "other",
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    Pending(usize),
    Approved,
    Denied,
}

#[derive(Clone, Debug)]
struct Given {
    who: usize,
    stage: usize,
    approve: bool,
    void: bool,
}

/// Quorum and approvers of each stage.
type Stages = Vec<(usize, BTreeSet<usize>)>;

/// Whether the approvals still missing from stage `from` on (`have` given at `from`) can all
/// come from distinct people outside `used`, each eligible where they count: tries every
/// assignment.
fn feasible(stages: &Stages, from: usize, have: usize, used: &BTreeSet<usize>) -> bool {
    let mut slots = Vec::new();
    for (index, (quorum, approvers)) in stages.iter().enumerate().skip(from) {
        let missing = if index == from {
            quorum.saturating_sub(have)
        } else {
            *quorum
        };
        slots.extend(std::iter::repeat_n(approvers, missing));
    }
    fn fill(slots: &[&BTreeSet<usize>], taken: &mut BTreeSet<usize>) -> bool {
        let Some((first, rest)) = slots.split_first() else {
            return true;
        };
        for &person in *first {
            if taken.insert(person) {
                if fill(rest, taken) {
                    return true;
                }
                taken.remove(&person);
            }
        }
        false
    }
    fill(&slots, &mut used.clone())
}

/// The reference: the rules as DESIGN.md states them, written out plainly.
#[derive(Clone, Debug)]
struct Reference {
    stages: Stages,
    at: Where,
    decisions: Vec<Given>,
}

impl Reference {
    fn counted(&self) -> impl Iterator<Item = &Given> {
        self.decisions.iter().filter(|d| d.approve && !d.void)
    }

    fn approve(&mut self, who: usize) -> Outcome {
        if who == REQUESTER {
            return Outcome::Refused("self decision");
        }
        if let Some(earlier) = self.counted().find(|d| d.who == who).map(|d| d.stage) {
            return match self.at {
                Where::Pending(stage) if stage != earlier => Outcome::Refused("already counted"),
                _ => Outcome::Unchanged,
            };
        }
        let Where::Pending(stage) = self.at else {
            return Outcome::Refused("illegal");
        };
        if !self.stages[stage].1.contains(&who) {
            return if self
                .stages
                .iter()
                .any(|(_, approvers)| approvers.contains(&who))
            {
                Outcome::Refused("wrong stage")
            } else {
                Outcome::Refused("not eligible")
            };
        }
        let have = self.counted().filter(|d| d.stage == stage).count() + 1;
        let mut used: BTreeSet<usize> = self.counted().map(|d| d.who).collect();
        used.insert(who);
        if !feasible(&self.stages, stage, have, &used) {
            return Outcome::Refused("would strand");
        }
        self.decisions.push(Given {
            who,
            stage,
            approve: true,
            void: false,
        });
        if have >= self.stages[stage].0 {
            self.at = if stage + 1 == self.stages.len() {
                Where::Approved
            } else {
                Where::Pending(stage + 1)
            };
        }
        Outcome::Changed
    }

    fn deny(&mut self, who: usize) -> Outcome {
        if who == REQUESTER {
            return Outcome::Refused("self decision");
        }
        if self.at == Where::Denied && self.decisions.iter().any(|d| d.who == who && !d.approve) {
            return Outcome::Unchanged;
        }
        let Where::Pending(stage) = self.at else {
            return Outcome::Refused("illegal");
        };
        if !self.stages[stage].1.contains(&who) {
            return if self
                .stages
                .iter()
                .any(|(_, approvers)| approvers.contains(&who))
            {
                Outcome::Refused("wrong stage")
            } else {
                Outcome::Refused("not eligible")
            };
        }
        self.decisions.push(Given {
            who,
            stage,
            approve: false,
            void: false,
        });
        self.at = Where::Denied;
        Outcome::Changed
    }

    fn void(&mut self, who: usize) -> Outcome {
        let Where::Pending(stage) = self.at else {
            return Outcome::Unchanged;
        };
        let mut changed = false;
        for decision in &mut self.decisions {
            if decision.who == who && decision.stage == stage && decision.approve && !decision.void
            {
                decision.void = true;
                changed = true;
            }
        }
        if changed {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        }
    }

    /// Whether the request waits for `who`: pending at a stage they may decide, not the
    /// requester, and nothing of theirs counts yet.
    fn awaits(&self, who: usize) -> bool {
        match self.at {
            Where::Pending(stage) => {
                who != REQUESTER
                    && self.stages[stage].1.contains(&who)
                    && !self.decisions.iter().any(|d| d.who == who && !d.void)
            }
            _ => false,
        }
    }
}

/// Up to three stages; approvers drawn from everyone but the requester, as the policy
/// resolves them. Only routes that someone could complete: the policy refuses the others, so
/// they never become requests.
fn stages() -> impl Strategy<Value = Stages> {
    prop::collection::vec(
        (
            prop_oneof![4 => Just(1usize), 2 => Just(2), 1 => Just(3)],
            prop::collection::btree_set(1..PEOPLE.len(), 1..=5),
        ),
        1..=3,
    )
    .prop_filter("a route someone can complete", |stages| {
        feasible(stages, 0, 0, &BTreeSet::new())
    })
}

fn step() -> impl Strategy<Value = Step> {
    let who = 0..PEOPLE.len();
    prop_oneof![
        6 => who.clone().prop_map(Step::Approve),
        1 => who.clone().prop_map(Step::Deny),
        1 => who.prop_map(Step::Void),
    ]
}

fn record(stages: &Stages) -> AccessRequest {
    AccessRequest {
        route: Route {
            stages: stages
                .iter()
                .enumerate()
                .map(|(index, (quorum, approvers))| RouteStage {
                    name: format!("stage{index}"),
                    quorum: u32::try_from(*quorum).unwrap(),
                    approvers: approvers.iter().map(|&i| p(PEOPLE[i])).collect(),
                })
                .collect(),
        },
        ..two_stage()
    }
}

/// Compares the record with the reference after a step.
fn agree(request: &AccessRequest, reference: &Reference) -> Result<(), TestCaseError> {
    let at = match request.state {
        State::Pending { stage } => Where::Pending(stage as usize),
        State::Approved { .. } => Where::Approved,
        State::Denied => Where::Denied,
        ref other => return Err(TestCaseError::fail(format!("unexpected state {other:?}"))),
    };
    prop_assert_eq!(at, reference.at);
    let decisions: Vec<(String, u32, bool, bool)> = request
        .decisions
        .iter()
        .map(|d| {
            (
                d.approver.to_string(),
                d.stage,
                d.verdict == Verdict::Approve,
                d.void.is_some(),
            )
        })
        .collect();
    let wanted: Vec<(String, u32, bool, bool)> = reference
        .decisions
        .iter()
        .map(|d| {
            (
                PEOPLE[d.who].to_owned(),
                u32::try_from(d.stage).unwrap(),
                d.approve,
                d.void,
            )
        })
        .collect();
    prop_assert_eq!(decisions, wanted);
    for (index, name) in PEOPLE.iter().enumerate() {
        prop_assert_eq!(
            request.awaits_decision_from(&p(name)),
            reference.awaits(index),
            "waits for {}",
            name
        );
    }
    // Approved only with every stage's quorum of eligible, distinct people, never the
    // requester.
    if request.kind() == StateKind::Approved {
        let mut counted = BTreeSet::new();
        for (index, stage) in request.route.stages.iter().enumerate() {
            let approvals: Vec<_> = request
                .approvals_at(u32::try_from(index).unwrap())
                .collect();
            prop_assert!(approvals.len() >= stage.quorum as usize);
            for approval in approvals {
                prop_assert!(stage.approvers.contains(&approval.approver));
                prop_assert!(approval.approver != request.requester);
                prop_assert!(counted.insert(approval.approver.clone()));
            }
        }
    }
    Ok(())
}

proptest! {
    /// Every approval, denial and voided approval does what the reference says, and the record
    /// never holds an approval the rules forbid.
    #[test]
    fn approvals_follow_the_reference(
        stages in stages(),
        steps in prop::collection::vec(step(), 1..25),
    ) {
        let mut reference = Reference {
            stages: stages.clone(),
            at: Where::Pending(0),
            decisions: Vec::new(),
        };
        let mut request = record(&stages);
        for (index, step) in steps.iter().enumerate() {
            let (expected, result) = match *step {
                Step::Approve(who) => (
                    reference.approve(who),
                    request.clone().approve(&p(PEOPLE[who]), None, t(1 + index as u64)),
                ),
                Step::Deny(who) => (
                    reference.deny(who),
                    request.clone().deny(
                        &p(PEOPLE[who]),
                        Reason::parse("no").unwrap(),
                        t(1 + index as u64),
                    ),
                ),
                Step::Void(who) => (
                    reference.void(who),
                    Ok(request.clone().void_approvals(&p(PEOPLE[who]), "left")),
                ),
            };
            let actual = match result {
                Ok(Transition::Changed(changed, _)) => {
                    request = changed;
                    Outcome::Changed
                }
                Ok(Transition::Unchanged(unchanged)) => {
                    prop_assert_eq!(&unchanged, &request, "unchanged, but different");
                    Outcome::Unchanged
                }
                Err(error) => refused(&error),
            };
            prop_assert_eq!(actual, expected, "step {} {:?}", index, step);
            // What each decision says is compared; when it was given is not modelled.
            agree(&request, &reference)?;
        }
    }
}
