//! What a committed change means for people: the notice times it sets and the events it
//! causes. Every commit of a request goes through here, so no path can forget to notify.
//!
//! Outcomes (a decision, a grant, an end, a failing revoke, a review's steps) are routed from
//! what happened, as the workflow said it ([`Happened`], the same events the audit trail
//! records). What is awaited now (a stage waiting for approvers) and the notices the broker
//! sends by moving their times on (reminders, early warnings) are read from the record.

use std::collections::BTreeSet;

use super::{Event, Notices, Priority, RequestSummary};
use crate::model::{
    AccessRequest, Approval, Ending, Happened, Principal, ReviewState, State, StateKind, Timestamp,
    one_line,
};
use crate::policy::Snapshot;

/// Sets `new`'s notice times after a change from `old` (`None` for a new request): approval
/// reminders while a stage waits, the early warning of a lease's end, the warning that a review
/// is due. Times already set are kept; the broker moves them on when it sends a notice.
pub fn refresh_notices(
    old: Option<&AccessRequest>,
    new: &mut AccessRequest,
    notices: &Notices,
    now: Timestamp,
) {
    let after = |lead: Option<std::time::Duration>| lead.map(|lead| now.saturating_add(lead));
    new.notices.approval_reminder_at = match (&new.state, old.map(|o| &o.state)) {
        (State::Pending { stage }, Some(State::Pending { stage: before })) if stage == before => {
            new.notices.approval_reminder_at
        }
        (State::Pending { .. }, _) => after(notices.approval_reminder),
        _ => None,
    };
    new.notices.expiring_at = match (new.kind(), old.map(AccessRequest::kind)) {
        // An extension moved the end: the warning moves with it.
        (StateKind::Active, Some(StateKind::Active))
            if old.is_some_and(|o| o.expires_at == new.expires_at) =>
        {
            new.notices.expiring_at
        }
        (StateKind::Active, _) => match (new.expires_at, notices.expiring_soon) {
            (Some(expires_at), Some(lead)) => {
                Some(expires_at.saturating_sub(lead)).filter(|at| *at > now)
            }
            _ => None,
        },
        _ => None,
    };
    new.notices.review_due_at = match (new.review(), old.and_then(AccessRequest::review)) {
        (Some(review), Some(_)) if review.state == ReviewState::Pending => {
            new.notices.review_due_at
        }
        (Some(review), None) if review.state == ReviewState::Pending => notices
            .review_due_soon
            .map(|lead| review.due_at.saturating_sub(lead))
            .filter(|at| *at > review.opened_at),
        _ => None,
    };
}

/// Longest user-supplied text an event's `text` quotes, in characters.
pub const QUOTED_MAX: usize = 120;

/// A string someone typed (a reason, a comment, an incident, a target's error), as an event's
/// human-readable `text` quotes it: on one line (line breaks and control characters escaped by
/// [`one_line`]) and cut at [`QUOTED_MAX`] characters with `…`, so that no requester can write
/// lines of their own into an approver's message. The structured fields of the event carry
/// the exact value.
pub fn quoted(text: &str) -> String {
    let line = one_line(text);
    match line.char_indices().nth(QUOTED_MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

fn summary(request: &AccessRequest) -> RequestSummary {
    let review = request.review();
    RequestSummary {
        id: request.id.to_string(),
        requester: request.requester.to_string(),
        resource: request.resource.to_string(),
        state: request.kind().as_str().to_owned(),
        reason: request.reason.as_ref().map(ToString::to_string),
        ticket: request.ticket.as_ref().map(ToString::to_string),
        break_glass: request.is_break_glass(),
        incident: request.break_glass.as_ref().map(|b| b.incident.to_string()),
        expires_at: request.expires_at.map(Timestamp::rfc3339),
        review: review.map(|r| r.state.as_str().to_owned()),
        review_due_at: review.map(|r| r.due_at.rfc3339()),
    }
}

/// Builds the events of one change.
struct Events<'a> {
    request: &'a AccessRequest,
    now: Timestamp,
    out: Vec<Event>,
}

impl Events<'_> {
    fn push(
        &mut self,
        kind: &str,
        priority: Priority,
        recipients: impl IntoIterator<Item = Principal>,
        text: String,
    ) {
        let recipients: BTreeSet<Principal> = recipients.into_iter().collect();
        // Break-glass is marked in every event about it, text included (chat formats show
        // only the text).
        let text = match &self.request.break_glass {
            Some(_) if !text.starts_with("[break-glass]") => format!("[break-glass] {text}"),
            _ => text,
        };
        self.out.push(Event {
            id: format!("{}:{kind}:{}", self.request.id, self.now.unix_millis()),
            kind: kind.to_owned(),
            priority,
            at: self.now.rfc3339(),
            recipients: recipients.iter().map(ToString::to_string).collect(),
            text,
            request: Some(summary(self.request)),
            checkpoint: None,
        });
    }
}

/// Active members of the request's review group, except the holder.
fn reviewers(snapshot: &Snapshot, request: &AccessRequest) -> Vec<Principal> {
    let Some(break_glass) = &request.break_glass else {
        return Vec::new();
    };
    snapshot
        .directory
        .members(&break_glass.review_group)
        .filter(|p| **p != request.requester)
        .filter(|p| snapshot.directory.person(p).is_some_and(|x| x.is_active()))
        .cloned()
        .collect()
}

/// Active members of the admin groups.
fn admins(snapshot: &Snapshot) -> Vec<Principal> {
    snapshot
        .policy
        .admin_groups
        .iter()
        .flat_map(|group| snapshot.directory.members(group))
        .filter(|p| snapshot.directory.person(p).is_some_and(|x| x.is_active()))
        .cloned()
        .collect()
}

/// The requester hears of the decision on their request (`outcome`: approved, denied, timed
/// out), with its reason when one was given.
fn decided(events: &mut Events<'_>, outcome: &str) {
    let request = events.request;
    let why = request
        .end_reason
        .as_deref()
        .map(|r| format!(": {}", quoted(r)))
        .unwrap_or_default();
    events.push(
        "request.decided",
        Priority::Normal,
        [request.requester.clone()],
        format!("{} for {} was {outcome}{why}", request.id, request.resource),
    );
}

/// The events the change from `old` (`None` for a new request) to `new` causes, where
/// `happened` is what the workflow said happened in it.
pub fn events(
    old: Option<&AccessRequest>,
    new: &AccessRequest,
    happened: &[&Happened],
    snapshot: &Snapshot,
    now: Timestamp,
) -> Vec<Event> {
    let mut events = Events {
        request: new,
        now,
        out: Vec::new(),
    };
    let who = &new.requester;
    let what = &new.resource;
    let urgent = if new.is_break_glass() {
        Priority::High
    } else {
        Priority::Normal
    };

    // Waiting for decisions, and reminders while a stage waits.
    if let Some((index, stage)) = new.current_stage() {
        let waiting: Vec<Principal> = stage
            .approvers
            .iter()
            .filter(|p| new.awaits_decision_from(p))
            .cloned()
            .collect();
        let reason = new
            .reason
            .as_ref()
            .map_or_else(|| "no reason given".to_owned(), |r| quoted(r.as_str()));
        match old.and_then(AccessRequest::current_stage) {
            Some((was, _)) if was == index => {
                let reminded = matches!(
                    (old.and_then(|o| o.notices.approval_reminder_at), new.notices.approval_reminder_at),
                    (Some(a), Some(b)) if b > a
                );
                if reminded {
                    events.push(
                        "request.reminder",
                        urgent,
                        waiting,
                        format!(
                            "{} still waits for your decision: {who} asks for {what} ({reason})",
                            new.id
                        ),
                    );
                }
            }
            _ => events.push(
                "request.waiting",
                urgent,
                waiting,
                format!(
                    "{who} asks for {what} for {} ({reason}); {} waits for stage '{}'",
                    new.duration, new.id, stage.name
                ),
            ),
        }
    }

    // Decisions, grants and ends, to the requester; failing revokes, to the admins.
    for happened in happened {
        match happened {
            Happened::Approved {
                how: Approval::Route,
            } => decided(&mut events, "approved"),
            Happened::Denied { .. } => decided(&mut events, "denied"),
            Happened::TimedOut => decided(&mut events, "timed out"),
            Happened::Granted { .. } => {
                let until = new.expires_at.map(Timestamp::rfc3339).unwrap_or_default();
                events.push(
                    "access.granted",
                    Priority::Normal,
                    [who.clone()],
                    format!("{who} has {what} until {until} ({})", new.id),
                );
                if let Some(break_glass) = &new.break_glass {
                    let reason = new
                        .reason
                        .as_ref()
                        .map(|r| quoted(r.as_str()))
                        .unwrap_or_default();
                    events.push(
                        "break_glass.granted",
                        Priority::High,
                        reviewers(snapshot, new),
                        format!(
                            "{who} broke glass on {what} for {} until {until}: {reason}; review {} by {}",
                            quoted(break_glass.incident.as_str()),
                            new.id,
                            new.review().map(|r| r.due_at.rfc3339()).unwrap_or_default()
                        ),
                    );
                }
            }
            Happened::Ended {
                ending: Ending::Expired,
                ..
            } => events.push(
                "access.expired",
                Priority::Normal,
                [who.clone()],
                format!(
                    "{what} access of {who} expired and was removed ({})",
                    new.id
                ),
            ),
            Happened::Ended {
                ending: Ending::Revoked,
                ..
            } => events.push(
                "access.revoked",
                Priority::Normal,
                [who.clone()],
                format!("{what} access of {who} was revoked ({})", new.id),
            ),
            // The first failure and every tenth.
            Happened::RevokeFailed { attempt, error, .. } if *attempt == 1 || attempt % 10 == 0 => {
                events.push(
                    "revoke.failing",
                    Priority::High,
                    admins(snapshot),
                    format!(
                        "revoking {what} from {who} ({}) failed {attempt} time(s); access is still held: {}",
                        new.id,
                        quoted(error)
                    ),
                );
            }
            _ => {}
        }
    }
    let warned = new.kind() == StateKind::Active
        && old.is_some_and(|o| o.notices.expiring_at.is_some())
        && new.notices.expiring_at.is_none();
    if warned {
        let until = new.expires_at.map(Timestamp::rfc3339).unwrap_or_default();
        events.push(
            "access.expiring",
            Priority::Normal,
            [who.clone()],
            format!(
                "{what} access of {who} ends at {until} ({}); extend or finish up",
                new.id
            ),
        );
    }

    // The break-glass review.
    if let (Some(review), Some(break_glass)) = (new.review(), &new.break_glass) {
        let escalation = break_glass.escalate_to.iter().cloned();
        let due_soon = review.state == ReviewState::Pending
            && old.is_some_and(|o| o.notices.review_due_at.is_some())
            && new.notices.review_due_at.is_none();
        if due_soon {
            events.push(
                "review.due",
                Priority::Normal,
                reviewers(snapshot, new)
                    .into_iter()
                    .chain(escalation.clone()),
                format!(
                    "the review of {who}'s break-glass on {what} ({}) is due at {}",
                    new.id, review.due_at
                ),
            );
        }
        for happened in happened {
            match happened {
                Happened::ReviewOverdue => events.push(
                    "review.overdue",
                    Priority::High,
                    reviewers(snapshot, new).into_iter().chain(escalation.clone()),
                    format!(
                        "the review of {who}'s break-glass on {what} ({}) is overdue since {}",
                        new.id, review.due_at
                    ),
                ),
                Happened::ReviewReminded { reminder } => events.push(
                    "review.reminder",
                    Priority::High,
                    reviewers(snapshot, new).into_iter().chain(escalation.clone()),
                    format!(
                        "reminder {reminder}: the review of {who}'s break-glass on {what} ({}) is overdue since {}",
                        new.id, review.due_at
                    ),
                ),
                Happened::ReviewClosed { .. } => {
                    let by = review
                        .verdict
                        .as_ref()
                        .map(|v| v.reviewer.to_string())
                        .unwrap_or_default();
                    events.push(
                        "review.closed",
                        Priority::Normal,
                        std::iter::once(who.clone()).chain(escalation.clone()),
                        format!(
                            "{by} found {who}'s break-glass on {what} ({}) {}",
                            new.id,
                            review.state.as_str()
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    events.out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Transition;
    use crate::model::fixtures::{granted_break_glass, p, t, two_stage};

    fn snapshot() -> Snapshot {
        crate::policy::demo::snapshot().unwrap()
    }

    const NOTICES: Notices = Notices {
        approval_reminder: Some(Duration::from_secs(600)),
        expiring_soon: Some(Duration::from_secs(300)),
        review_due_soon: Some(Duration::from_secs(3600)),
    };

    const APPROVED: Happened = Happened::Approved {
        how: Approval::Route,
    };
    const GRANTED: Happened = Happened::Granted {
        credentials_issued: false,
    };

    fn submitted() -> Happened {
        Happened::Submitted {
            needs_approval_because: None,
        }
    }

    fn approval() -> Happened {
        Happened::ApprovalRecorded {
            stage: 0,
            stage_name: "manager".into(),
            comment: None,
        }
    }

    fn ended(ending: Ending) -> Happened {
        Happened::Ended {
            ending,
            grant_kept_for: None,
            reason: None,
            lag: None,
        }
    }

    fn revoke_failed(attempt: u32) -> Happened {
        Happened::RevokeFailed {
            attempt,
            error: "down".into(),
            retry_at: t(10),
            reason: None,
        }
    }

    fn closed_review() -> Happened {
        Happened::ReviewClosed {
            justified: true,
            notes: None,
            revoke: false,
        }
    }

    fn kinds(events: &[Event]) -> Vec<(&str, Vec<&str>)> {
        events
            .iter()
            .map(|e| {
                (
                    e.kind.as_str(),
                    e.recipients.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    fn changed(transition: Transition) -> AccessRequest {
        match transition {
            Transition::Changed(request, _) => request,
            Transition::Unchanged(_) => panic!("unchanged"),
        }
    }

    #[test]
    fn quoted_text_is_one_line_and_capped() {
        assert_eq!(quoted("fix\nit\r\tnow"), "fix\\nit\\r\\tnow");
        let long = quoted(&"é".repeat(500));
        assert_eq!(long.chars().count(), QUOTED_MAX + 1);
        assert!(long.ends_with('…'));
        assert_eq!(quoted("short"), "short");
    }

    #[test]
    fn a_waiting_stage_is_announced_reminded_and_moved_on() {
        let s = snapshot();
        let mut new = two_stage();
        refresh_notices(None, &mut new, &NOTICES, t(0));
        assert_eq!(new.notices.approval_reminder_at, Some(t(600)));
        assert_eq!(
            kinds(&events(None, &new, &[&submitted()], &s, t(0))),
            [("request.waiting", vec!["manager"])]
        );

        // The broker moves the reminder on: that is the reminder.
        let mut reminded = new.clone();
        reminded.notices.approval_reminder_at = Some(t(1200));
        refresh_notices(Some(&new), &mut reminded, &NOTICES, t(600));
        assert_eq!(reminded.notices.approval_reminder_at, Some(t(1200)));
        assert_eq!(
            kinds(&events(Some(&new), &reminded, &[], &s, t(600))),
            [("request.reminder", vec!["manager"])]
        );

        // The next stage is announced to its approvers, and its reminder starts afresh.
        let mut advanced = changed(
            reminded
                .clone()
                .approve(&p("manager"), None, t(700))
                .unwrap(),
        );
        refresh_notices(Some(&reminded), &mut advanced, &NOTICES, t(700));
        assert_eq!(advanced.notices.approval_reminder_at, Some(t(1300)));
        assert_eq!(
            kinds(&events(
                Some(&reminded),
                &advanced,
                &[&approval()],
                &s,
                t(700)
            )),
            [("request.waiting", vec!["security"])],
            "manager approved stage one and is not asked again"
        );
    }

    #[test]
    fn decisions_grants_and_warnings_reach_the_requester() {
        let s = snapshot();
        let old = changed(two_stage().approve(&p("manager"), None, t(1)).unwrap());
        let approved = changed(old.clone().approve(&p("security"), None, t(2)).unwrap());
        assert_eq!(
            kinds(&events(
                Some(&old),
                &approved,
                &[&approval(), &APPROVED],
                &s,
                t(2)
            )),
            [("request.decided", vec!["engineer"])]
        );
        let mut active = changed(approved.clone().grant_succeeded(t(3), false).unwrap());
        refresh_notices(Some(&approved), &mut active, &NOTICES, t(3));
        assert_eq!(active.notices.expiring_at, Some(t(3 + 1800 - 300)));
        assert_eq!(
            kinds(&events(Some(&approved), &active, &[&GRANTED], &s, t(3))),
            [("access.granted", vec!["engineer"])]
        );
        let mut warned = active.clone();
        warned.notices.expiring_at = None;
        assert_eq!(
            kinds(&events(Some(&active), &warned, &[], &s, t(1503))),
            [("access.expiring", vec!["engineer"])]
        );
        // An expiry handled late clears the warning without sending it.
        let mut expired = changed(
            active
                .clone()
                .revoke_succeeded(Ending::Expired, t(1803), None, None)
                .unwrap(),
        );
        refresh_notices(Some(&active), &mut expired, &NOTICES, t(1803));
        assert_eq!(expired.notices.expiring_at, None);
        assert_eq!(
            kinds(&events(
                Some(&active),
                &expired,
                &[&ended(Ending::Expired)],
                &s,
                t(1803)
            )),
            [("access.expired", vec!["engineer"])]
        );
    }

    #[test]
    fn admins_hear_of_revoke_failures_but_not_of_decided_revokes() {
        let s = snapshot();
        let active = granted_break_glass();
        let decided = changed(active.clone().begin_revoke(Ending::Revoked, t(5)).unwrap());
        assert!(
            !events(Some(&active), &decided, &[], &s, t(5))
                .iter()
                .any(|e| e.kind == "revoke.failing")
        );
        let mut failing = changed(
            decided
                .clone()
                .revoke_failed(Ending::Revoked, "down".into(), t(10), None)
                .unwrap(),
        );
        let first = events(Some(&decided), &failing, &[&revoke_failed(1)], &s, t(6));
        assert_eq!(
            first.iter().filter(|e| e.kind == "revoke.failing").count(),
            1
        );
        assert_eq!(first[0].recipients, ["admin"]);
        assert!(
            first[0].text.starts_with("[break-glass] "),
            "{}",
            first[0].text
        );
        for attempt in 2..=10 {
            let before = failing.clone();
            failing = changed(
                failing
                    .revoke_failed(Ending::Revoked, "down".into(), t(10), None)
                    .unwrap(),
            );
            let told = events(
                Some(&before),
                &failing,
                &[&revoke_failed(attempt)],
                &s,
                t(6),
            )
            .iter()
            .any(|e| e.kind == "revoke.failing");
            assert_eq!(told, attempt == 10, "attempt {attempt}");
        }
    }

    #[test]
    fn a_review_is_announced_warned_escalated_and_closed() {
        let s = snapshot();
        let approved = AccessRequest {
            state: crate::model::State::Approved {
                attempts: crate::model::Attempts::due(t(0)),
            },
            ..granted_break_glass()
        };
        let mut opened = granted_break_glass();
        let old = AccessRequest {
            break_glass: approved.break_glass.clone().map(|mut b| {
                b.review = None;
                b
            }),
            ..approved
        };
        refresh_notices(Some(&old), &mut opened, &NOTICES, t(1));
        let due = opened.review().unwrap().due_at;
        assert_eq!(
            opened.notices.review_due_at,
            Some(due.saturating_sub(Duration::from_secs(3600)))
        );
        let granted = events(Some(&old), &opened, &[&GRANTED], &s, t(1));
        assert_eq!(
            kinds(&granted),
            [
                ("access.granted", vec!["oncall"]),
                ("break_glass.granted", vec!["security"])
            ]
        );

        let mut warned = opened.clone();
        warned.notices.review_due_at = None;
        assert_eq!(
            kinds(&events(Some(&opened), &warned, &[], &s, t(2))),
            [("review.due", vec!["manager", "security"])]
        );
        let overdue = match warned.clone().review_overdue(due) {
            Transition::Changed(r, _) => r,
            Transition::Unchanged(_) => panic!(),
        };
        assert_eq!(
            kinds(&events(
                Some(&warned),
                &overdue,
                &[&Happened::ReviewOverdue],
                &s,
                due
            )),
            [("review.overdue", vec!["manager", "security"])]
        );
        let closed = changed(
            overdue
                .clone()
                .close_review(&p("security"), true, None, due)
                .unwrap(),
        );
        assert_eq!(
            kinds(&events(
                Some(&overdue),
                &closed,
                &[&closed_review()],
                &s,
                due
            )),
            [("review.closed", vec!["manager", "oncall"])]
        );
    }
}
