//! Break-glass and its mandatory retroactive review.
//!
//! ```text
//! review: pending ──verdict──▶ justified | unjustified        (closed for good)
//!            └──due_at passes──▶ overdue ──verdict──▶ justified | unjustified
//!                                  └── reminded every remind_every until closed
//! ```
//!
//! The review opens when the break-glass grant succeeds. Nobody reviews their own break-glass.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{
    AccessRequest, GroupName, Happened, LeaseDuration, Principal, Reason, StateKind, Ticket,
    Timestamp, Transition, TransitionError,
};

/// The break-glass part of a request: the incident and the review rule fixed at submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    /// The incident reference.
    pub incident: Ticket,
    /// Members of this group review (never the holder).
    pub review_group: GroupName,
    /// The review is due this long after the grant.
    pub review_within: LeaseDuration,
    /// Overdue reviews are reminded about this often.
    pub remind_every: LeaseDuration,
    /// Told when the review is overdue, besides the reviewers.
    pub escalate_to: BTreeSet<Principal>,
    /// An unjustified verdict revokes the lease if it is still active.
    pub revoke_on_unjustified: bool,
    /// Whether this break-glass had to wait for an approval (the holder had an overdue or
    /// unjustified review when asking).
    pub needed_approval: bool,
    /// The review, once the grant opened it.
    pub review: Option<Review>,
}

/// Where a review is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Open, before its deadline.
    Pending,
    /// Open, past its deadline: escalated and reminded about.
    Overdue,
    /// Closed: the break-glass was justified.
    Justified,
    /// Closed: the break-glass was not justified.
    Unjustified,
}

impl ReviewState {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Overdue => "overdue",
            ReviewState::Justified => "justified",
            ReviewState::Unjustified => "unjustified",
        }
    }

    /// Whether the review still waits for a verdict.
    pub fn is_open(self) -> bool {
        matches!(self, ReviewState::Pending | ReviewState::Overdue)
    }
}

/// A reviewer's verdict; final.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewVerdict {
    /// Who reviewed.
    pub reviewer: Principal,
    /// Justified or not.
    pub justified: bool,
    /// The reviewer's notes (required for unjustified).
    pub notes: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// The retroactive review of one break-glass grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// When the grant opened it.
    pub opened_at: Timestamp,
    /// When it is due.
    pub due_at: Timestamp,
    /// Where it is.
    pub state: ReviewState,
    /// When it became overdue.
    pub overdue_since: Option<Timestamp>,
    /// When the next reminder goes out (overdue only).
    pub next_reminder_at: Option<Timestamp>,
    /// Reminders sent so far.
    pub reminders: u32,
    /// The verdict, once closed.
    pub verdict: Option<ReviewVerdict>,
}

impl Review {
    /// A review opened at `now`, due `within` later.
    pub fn open(now: Timestamp, within: LeaseDuration) -> Self {
        Self {
            opened_at: now,
            due_at: now.saturating_add(within.get()),
            state: ReviewState::Pending,
            overdue_since: None,
            next_reminder_at: None,
            reminders: 0,
            verdict: None,
        }
    }

    /// The next instant the review needs the broker: its deadline or its next reminder.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.state {
            ReviewState::Pending => Some(self.due_at),
            ReviewState::Overdue => self.next_reminder_at,
            ReviewState::Justified | ReviewState::Unjustified => None,
        }
    }
}

impl AccessRequest {
    /// The review of this break-glass request, if it is one and the grant opened it.
    pub fn review(&self) -> Option<&Review> {
        self.break_glass.as_ref().and_then(|b| b.review.as_ref())
    }

    /// Closes the review with a verdict. The holder cannot review their own break-glass; a
    /// closed review stays closed (repeating the same verdict changes nothing). Whether the
    /// reviewer belongs to the review group is checked by the caller against the directory.
    pub fn close_review(
        mut self,
        reviewer: &Principal,
        justified: bool,
        notes: Option<Reason>,
        now: Timestamp,
    ) -> Result<Transition, TransitionError> {
        let id = self.id;
        if self.break_glass.is_none() {
            return Err(TransitionError::NotBreakGlass { id });
        }
        if *reviewer == self.requester {
            return Err(TransitionError::SelfReview { id });
        }
        let Some(review) = self.break_glass.as_mut().and_then(|b| b.review.as_mut()) else {
            return Err(TransitionError::ReviewNotOpen { id });
        };
        if let Some(verdict) = &review.verdict {
            let notes = notes.map(String::from);
            if verdict.reviewer == *reviewer
                && verdict.justified == justified
                && verdict.notes == notes
            {
                return Ok(Transition::Unchanged(self));
            }
            return Err(TransitionError::ReviewClosed {
                id,
                state: review.state.as_str(),
                by: verdict.reviewer.clone(),
            });
        }
        review.state = if justified {
            ReviewState::Justified
        } else {
            ReviewState::Unjustified
        };
        review.next_reminder_at = None;
        review.verdict = Some(ReviewVerdict {
            reviewer: reviewer.clone(),
            justified,
            notes: notes.clone().map(String::from),
            at: now,
        });
        // An unjustified verdict revokes an active lease when the resource says so.
        let revoke = !justified
            && self.kind() == StateKind::Active
            && self
                .break_glass
                .as_ref()
                .is_some_and(|b| b.revoke_on_unjustified);
        Ok(Transition::Changed(
            self,
            vec![Happened::ReviewClosed {
                justified,
                notes,
                revoke,
            }],
        ))
    }

    /// Marks an open review overdue once its deadline passed; the first reminder follows
    /// `remind_every` later. Anything else is unchanged.
    pub fn review_overdue(mut self, now: Timestamp) -> Transition {
        let remind_every = self.break_glass.as_ref().map(|b| b.remind_every.get());
        match (
            self.break_glass.as_mut().and_then(|b| b.review.as_mut()),
            remind_every,
        ) {
            (Some(review), Some(every))
                if review.state == ReviewState::Pending && now >= review.due_at =>
            {
                review.state = ReviewState::Overdue;
                review.overdue_since = Some(now);
                review.next_reminder_at = Some(now.saturating_add(every));
                Transition::Changed(self, vec![Happened::ReviewOverdue])
            }
            _ => Transition::Unchanged(self),
        }
    }

    /// Counts a reminder of an overdue review and schedules the next one. Anything else is
    /// unchanged.
    pub fn review_reminded(mut self, now: Timestamp) -> Transition {
        let remind_every = self.break_glass.as_ref().map(|b| b.remind_every.get());
        match (
            self.break_glass.as_mut().and_then(|b| b.review.as_mut()),
            remind_every,
        ) {
            (Some(review), Some(every)) if review.state == ReviewState::Overdue => {
                match review.next_reminder_at {
                    Some(at) if now >= at => {
                        review.reminders += 1;
                        // After a long outage, one reminder now rather than a burst.
                        let mut next = at.saturating_add(every);
                        while next <= now {
                            next = next.saturating_add(every);
                        }
                        review.next_reminder_at = Some(next);
                        let reminder = review.reminders;
                        Transition::Changed(self, vec![Happened::ReviewReminded { reminder }])
                    }
                    _ => Transition::Unchanged(self),
                }
            }
            _ => Transition::Unchanged(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::fixtures::{granted_break_glass, p, t};
    use crate::model::{Ending, StateKind};

    fn granted() -> AccessRequest {
        granted_break_glass()
    }

    fn changed(transition: Transition) -> AccessRequest {
        match transition {
            Transition::Changed(request, _) => request,
            Transition::Unchanged(request) => panic!("unchanged: {:?}", request.review()),
        }
    }

    #[test]
    fn the_grant_opens_the_review_and_its_deadline_is_scheduled() {
        let request = granted();
        let review = request.review().unwrap();
        assert_eq!(review.state, ReviewState::Pending);
        assert_eq!(review.due_at, t(1 + 24 * 3600));
        // The lease's expiry comes first; the review deadline is next.
        assert_eq!(request.next_deadline(), Some(t(1 + 3600)));
        assert_eq!(request.due(t(1 + 3600)), Some(crate::model::Due::State));
        let ended = match request
            .revoke_succeeded(Ending::Expired, t(3601), None, None)
            .unwrap()
        {
            Transition::Changed(r, _) => r,
            Transition::Unchanged(_) => panic!(),
        };
        assert_eq!(ended.kind(), StateKind::Expired);
        assert_eq!(
            ended.next_deadline(),
            Some(t(1 + 24 * 3600)),
            "the review outlives the lease"
        );
    }

    #[test]
    fn overdue_then_reminders_until_a_verdict() {
        let request = granted();
        let due = request.review().unwrap().due_at;
        assert!(matches!(
            request.clone().review_overdue(t(100)),
            Transition::Unchanged(_)
        ));
        let overdue = changed(request.review_overdue(due));
        let review = overdue.review().unwrap();
        assert_eq!(review.state, ReviewState::Overdue);
        let first = review.next_reminder_at.unwrap();
        assert_eq!(first, due.saturating_add(Duration::from_secs(4 * 3600)));
        let reminded = changed(overdue.review_reminded(first));
        assert_eq!(reminded.review().unwrap().reminders, 1);
        // Three intervals later, one reminder, not three.
        let later = first.saturating_add(Duration::from_secs(3 * 4 * 3600));
        let reminded = changed(reminded.review_reminded(later));
        assert_eq!(reminded.review().unwrap().reminders, 2);
        assert!(reminded.review().unwrap().next_reminder_at.unwrap() > later);
        let closed = changed(
            reminded
                .close_review(&p("security"), true, None, later)
                .unwrap(),
        );
        assert_eq!(closed.review().unwrap().state, ReviewState::Justified);
        assert_eq!(closed.review().unwrap().next_deadline(), None);
    }

    #[test]
    fn nobody_reviews_their_own_and_a_verdict_is_final() {
        let request = granted();
        assert!(matches!(
            request.clone().close_review(&p("oncall"), true, None, t(5)),
            Err(TransitionError::SelfReview { .. })
        ));
        let notes = Reason::parse("no incident at that time").unwrap();
        let closed = changed(
            request
                .close_review(&p("security"), false, Some(notes.clone()), t(5))
                .unwrap(),
        );
        assert_eq!(closed.review().unwrap().state, ReviewState::Unjustified);
        assert!(matches!(
            closed
                .clone()
                .close_review(&p("security"), false, Some(notes), t(6)),
            Ok(Transition::Unchanged(_))
        ));
        assert!(matches!(
            closed
                .clone()
                .close_review(&p("security"), true, None, t(6)),
            Err(TransitionError::ReviewClosed { .. })
        ));
        assert!(matches!(
            closed.close_review(&p("auditor"), false, None, t(6)),
            Err(TransitionError::ReviewClosed { .. })
        ));
    }
}
