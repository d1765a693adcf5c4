//! Access reports: figures per resource and per approver, computed from stored request records
//! streamed one at a time through a [`Builder`]. Pure: no store, no clock, no I/O.
//!
//! Definitions (all times in milliseconds; "decision" is an entry of `AccessRequest::decisions`):
//!
//! - **Window.** A request counts when `since <= created_at < until`; either bound may be
//!   absent. Requests outside the window are ignored entirely.
//! - **Break-glass** requests (`break_glass` set) count only in their resource's `break_glass`
//!   figures, never in `requests`, `approved`, ..., decision times or denied reasons. The
//!   decisions they carry (when one had to be approved) do count in the approver figures.
//! - `requests`: the other requests. `approved`: those with `approved_at` set, whatever happened
//!   since (granted, expired, released, revoked, failed). `denied`, `cancelled`, `timed_out`:
//!   those in that state. `undecided`: still pending. `auto_approved`: approved with a route of
//!   no stages.
//! - `approval_rate` = approved / (approved + denied), auto-approved ones included; none when
//!   both are 0. `auto_approved_share` = auto_approved / requests; none when there are none.
//! - **Time to decision**, for requests whose route has stages: `approved_at - created_at` when
//!   approved; when denied, the `at` of the first decision whose verdict is deny (else
//!   `ended_at`) minus `created_at`. Skipped when the end is missing or before `created_at`.
//! - **Nearest rank**: sort ascending and take index `ceil(q * n) - 1`, q = 0.5 for the median
//!   and 0.9 for p90; none when n = 0.
//! - `denied_reasons`: the comment of the first deny decision of each denied request, trimmed,
//!   [`NO_REASON`] when missing or blank; sorted by count descending, then reason ascending.
//! - **Break-glass figures**: `count` = break-glass requests. Of those whose review has opened
//!   (the grant was confirmed): `justified` / `unjustified` by the review's verdict; `open` =
//!   review pending or overdue; `overdue_now` = overdue; `missed_deadline` = `overdue_since` set,
//!   closed since or not. A break-glass request without a review counts in `count` only.
//! - **Approver figures**, over every decision of every counted request: `decisions`,
//!   `approvals`, `denials`, and the median response time `at - opened`, where stage 0 opens at
//!   `created_at` and stage k > 0 at the `at` of the quorum-th approval at stage k - 1 in
//!   decision order (quorum from `route.stages[k - 1]`). When the opening cannot be determined
//!   (no such stage, quorum 0, too few approvals) or comes after the decision, the decision is
//!   counted but its response time is skipped.
//! - Resources and approvers are sorted by name (byte order); no input gives empty lists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{AccessRequest, Review, ReviewState, State, Timestamp, Verdict};

/// Shown for a denial whose comment is missing or blank.
pub const NO_REASON: &str = "(no reason given)";

/// The window a report covers: requests submitted at or after `since` and before `until`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive lower bound on `created_at`; none means from the beginning.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound on `created_at`; none means to the end.
    pub until: Option<Timestamp>,
}

impl Window {
    /// Whether a request submitted at `created_at` falls in the window.
    pub fn contains(&self, created_at: Timestamp) -> bool {
        self.since.is_none_or(|since| since <= created_at)
            && self.until.is_none_or(|until| created_at < until)
    }
}

/// The access report over one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The window's lower bound.
    pub since: Option<Timestamp>,
    /// The window's upper bound.
    pub until: Option<Timestamp>,
    /// One entry per resource with a counted request, sorted by name.
    pub resources: Vec<ResourceReport>,
    /// One entry per approver with a counted decision, sorted by name.
    pub approvers: Vec<ApproverReport>,
}

/// Figures of one resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceReport {
    /// The resource's name.
    pub resource: String,
    /// Requests that are not break-glass.
    pub requests: u64,
    /// Of those, approved at some point (`approved_at` set).
    pub approved: u64,
    /// Denied.
    pub denied: u64,
    /// Cancelled by the requester.
    pub cancelled: u64,
    /// Timed out without a decision.
    pub timed_out: u64,
    /// Still pending.
    pub undecided: u64,
    /// Approved with a route of no stages.
    pub auto_approved: u64,
    /// approved / (approved + denied).
    pub approval_rate: Option<f64>,
    /// auto_approved / requests.
    pub auto_approved_share: Option<f64>,
    /// Median time to decision, by nearest rank.
    pub decision_ms_median: Option<u64>,
    /// 90th percentile of the time to decision, by nearest rank.
    pub decision_ms_p90: Option<u64>,
    /// Break-glass figures.
    pub break_glass: BreakGlassCounts,
    /// Reasons of denials, most frequent first.
    pub denied_reasons: Vec<ReasonCount>,
}

/// Break-glass requests of one resource and their reviews.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassCounts {
    /// Break-glass requests.
    pub count: u64,
    /// Reviews closed as justified.
    pub justified: u64,
    /// Reviews closed as unjustified.
    pub unjustified: u64,
    /// Reviews pending or overdue: no verdict yet.
    pub open: u64,
    /// Reviews overdue now.
    pub overdue_now: u64,
    /// Reviews that went overdue at any time (`overdue_since` set), even if closed later.
    pub missed_deadline: u64,
}

impl BreakGlassCounts {
    fn add(&mut self, review: Option<&Review>) {
        self.count += 1;
        let Some(review) = review else {
            return;
        };
        let justified = review.verdict.as_ref().map(|verdict| verdict.justified);
        self.justified += u64::from(justified == Some(true));
        self.unjustified += u64::from(justified == Some(false));
        self.open += u64::from(review.state.is_open());
        self.overdue_now += u64::from(review.state == ReviewState::Overdue);
        self.missed_deadline += u64::from(review.overdue_since.is_some());
    }
}

/// How often one denial reason was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    /// The reason, trimmed.
    pub reason: String,
    /// Denials that gave it.
    pub count: u64,
}

/// Figures of one approver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApproverReport {
    /// The approver's principal.
    pub approver: String,
    /// Decisions made.
    pub decisions: u64,
    /// Of those, approvals.
    pub approvals: u64,
    /// Of those, denials.
    pub denials: u64,
    /// Median time from the stage opening to the decision, by nearest rank.
    pub response_ms_median: Option<u64>,
}

/// Accumulates requests one at a time (so callers can stream millions of records without
/// holding them), then finishes. Keeps counters and one duration per decision, never requests.
#[derive(Debug)]
pub struct Builder {
    window: Window,
    resources: BTreeMap<String, ResourceTally>,
    approvers: BTreeMap<String, ApproverTally>,
}

impl Builder {
    /// An empty report over `window`.
    pub fn new(window: Window) -> Self {
        Self {
            window,
            resources: BTreeMap::new(),
            approvers: BTreeMap::new(),
        }
    }

    /// Counts `request` if it was submitted in the window.
    pub fn add(&mut self, request: &AccessRequest) {
        if !self.window.contains(request.created_at) {
            return;
        }
        for decision in &request.decisions {
            let name = decision.approver.as_str().to_owned();
            let tally = self.approvers.entry(name).or_default();
            tally.counts.decisions += 1;
            match decision.verdict {
                Verdict::Approve => tally.counts.approvals += 1,
                Verdict::Deny => tally.counts.denials += 1,
            }
            let response = stage_opened(request, decision.stage)
                .and_then(|opened| millis_between(opened, decision.at));
            tally.response_ms.extend(response);
        }
        let name = request.resource.as_str().to_owned();
        let tally = self.resources.entry(name).or_default();
        match &request.break_glass {
            Some(glass) => tally.counts.break_glass.add(glass.review.as_ref()),
            None => tally.add(request),
        }
    }

    /// The report.
    pub fn finish(self) -> Report {
        Report {
            since: self.window.since,
            until: self.window.until,
            resources: self
                .resources
                .into_iter()
                .map(|(resource, tally)| tally.finish(resource))
                .collect(),
            approvers: self
                .approvers
                .into_iter()
                .map(|(approver, mut tally)| {
                    tally.response_ms.sort_unstable();
                    ApproverReport {
                        approver,
                        response_ms_median: nearest_rank(&tally.response_ms, 50),
                        ..tally.counts
                    }
                })
                .collect(),
        }
    }
}

/// One resource's counters (in `counts`; `finish` derives the rest) and what the derived
/// figures need.
#[derive(Debug, Default)]
struct ResourceTally {
    counts: ResourceReport,
    decision_ms: Vec<u64>,
    denied_reasons: BTreeMap<String, u64>,
}

impl ResourceTally {
    /// Counts a request that is not break-glass.
    fn add(&mut self, request: &AccessRequest) {
        let counts = &mut self.counts;
        counts.requests += 1;
        let auto = request.route.stages.is_empty();
        let mut decided_at = None;
        if let Some(approved_at) = request.approved_at {
            counts.approved += 1;
            counts.auto_approved += u64::from(auto);
            decided_at = Some(approved_at);
        }
        match request.state {
            State::Denied => {
                counts.denied += 1;
                let deny = request
                    .decisions
                    .iter()
                    .find(|d| d.verdict == Verdict::Deny);
                let reason = deny
                    .and_then(|d| d.comment.as_deref())
                    .map(str::trim)
                    .filter(|reason| !reason.is_empty())
                    .unwrap_or(NO_REASON);
                *self.denied_reasons.entry(reason.to_owned()).or_default() += 1;
                decided_at = deny.map(|d| d.at).or(request.ended_at);
            }
            State::Cancelled => counts.cancelled += 1,
            State::TimedOut => counts.timed_out += 1,
            State::Pending { .. } => counts.undecided += 1,
            _ => {}
        }
        if !auto {
            let elapsed = decided_at.and_then(|at| millis_between(request.created_at, at));
            self.decision_ms.extend(elapsed);
        }
    }

    fn finish(mut self, resource: String) -> ResourceReport {
        self.decision_ms.sort_unstable();
        let mut denied_reasons: Vec<ReasonCount> = self
            .denied_reasons
            .into_iter()
            .map(|(reason, count)| ReasonCount { reason, count })
            .collect();
        denied_reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        let counts = self.counts;
        ResourceReport {
            resource,
            approval_rate: ratio(counts.approved, counts.approved + counts.denied),
            auto_approved_share: ratio(counts.auto_approved, counts.requests),
            decision_ms_median: nearest_rank(&self.decision_ms, 50),
            decision_ms_p90: nearest_rank(&self.decision_ms, 90),
            denied_reasons,
            ..counts
        }
    }
}

/// One approver's counters (in `counts`) and response times.
#[derive(Debug, Default)]
struct ApproverTally {
    counts: ApproverReport,
    response_ms: Vec<u64>,
}

/// When stage `stage` of `request` opened, when the record says.
fn stage_opened(request: &AccessRequest, stage: u32) -> Option<Timestamp> {
    let Some(previous) = stage.checked_sub(1) else {
        return Some(request.created_at);
    };
    let quorum = request.route.stages.get(previous as usize)?.quorum as usize;
    let completing = quorum.checked_sub(1)?;
    request.approvals_at(previous).nth(completing).map(|d| d.at)
}

/// Milliseconds from `from` to `to`; none when `to` is earlier.
fn millis_between(from: Timestamp, to: Timestamp) -> Option<u64> {
    to.unix_millis().checked_sub(from.unix_millis())
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The `percent`-th percentile of ascending `sorted` by nearest rank: index
/// `ceil(percent * n / 100) - 1`, in integers so that no rounding creeps in.
fn nearest_rank(sorted: &[u64], percent: usize) -> Option<u64> {
    let rank = percent.saturating_mul(sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::fixtures::{granted_break_glass, p, t, two_stage};
    use crate::model::{Decision, Ending, ResourceName, ReviewVerdict, Route, RouteStage};

    const S: u64 = 1000;

    fn decide(who: &str, verdict: Verdict, stage: u32, at: u64, why: Option<&str>) -> Decision {
        let (approver, at, comment) = (p(who), t(at), why.map(str::to_owned));
        Decision {
            void: None,
            approver,
            verdict,
            comment,
            at,
            stage,
        }
    }

    fn yes(who: &str, stage: u32, at: u64) -> Decision {
        decide(who, Verdict::Approve, stage, at, None)
    }

    fn no(who: &str, stage: u32, at: u64, why: Option<&str>) -> Decision {
        decide(who, Verdict::Deny, stage, at, why)
    }

    fn window(since: Option<u64>, until: Option<u64>) -> Window {
        let (since, until) = (since.map(t), until.map(t));
        Window { since, until }
    }

    /// prod-db-admin (manager, then security) submitted at `created`; approved at the last
    /// decision when active or ended.
    fn prod(created: u64, state: State, decisions: Vec<Decision>) -> AccessRequest {
        let approved_at = match state {
            State::Active | State::Ended { .. } => decisions.last().map(|d| d.at),
            _ => None,
        };
        let created_at = t(created);
        AccessRequest {
            created_at,
            state,
            decisions,
            approved_at,
            ..two_stage()
        }
    }

    /// staging-shell submitted at `created`: auto-approved without `lead`, else one stage.
    fn staging(created: u64, lead: Option<Decision>) -> AccessRequest {
        let mut request = prod(created, State::Active, vec![]);
        request.resource = ResourceName::parse("staging-shell").unwrap();
        request.approved_at = Some(t(created));
        request.route = Route::default();
        if let Some(decision) = lead {
            let approvers = BTreeSet::from([p("lead")]);
            let stage = RouteStage {
                name: "lead".into(),
                quorum: 1,
                approvers,
            };
            request.route.stages.push(stage);
            let denied = decision.verdict == Verdict::Deny;
            request.approved_at = (!denied).then_some(decision.at);
            request.state = if denied { State::Denied } else { State::Active };
            request.decisions.push(decision);
        }
        request
    }

    /// A break-glass on prod-db-admin at `created` with its review's state, verdict and
    /// whether it went overdue; `review` none leaves the review unopened.
    fn glass(created: u64, review: Option<(ReviewState, Option<bool>, bool)>) -> AccessRequest {
        let mut request = granted_break_glass();
        request.created_at = t(created);
        let part = request.break_glass.as_mut().unwrap();
        let Some((state, justified, overdue)) = review else {
            part.review = None;
            return request;
        };
        let review = part.review.as_mut().unwrap();
        review.state = state;
        review.overdue_since = overdue.then_some(review.due_at);
        let (reviewer, at) = (p("security"), t(created + 100_000));
        review.verdict = justified.map(|justified| ReviewVerdict {
            reviewer,
            justified,
            notes: None,
            at,
        });
        request
    }

    fn scenario() -> Vec<AccessRequest> {
        let mut needed_approval = glass(9600, Some((ReviewState::Justified, Some(true), true)));
        needed_approval.route.stages = two_stage().route.stages[..1].to_vec();
        needed_approval.decisions = vec![yes("manager", 0, 9645)];
        let expired = State::Ended {
            ending: Ending::Expired,
        };
        vec![
            // Before `since`: ignored, the manager's decision too.
            prod(50, State::Denied, vec![no("manager", 0, 60, Some("old"))]),
            prod(
                1000,
                expired,
                vec![yes("manager", 0, 1060), yes("security", 1, 1180)],
            ),
            prod(
                2000,
                State::Active,
                vec![yes("manager", 0, 2030), yes("security", 1, 2330)],
            ),
            prod(
                3000,
                State::Denied,
                vec![no("manager", 0, 3090, Some(" no ticket "))],
            ),
            prod(
                4000,
                State::Denied,
                vec![yes("manager", 0, 4010), no("security", 1, 4410, Some(" "))],
            ),
            prod(5000, State::TimedOut, vec![]),
            prod(6000, State::Cancelled, vec![]),
            prod(7000, State::Pending { stage: 0 }, vec![]),
            prod(
                7500,
                State::Denied,
                vec![no("manager", 0, 7520, Some("no ticket"))],
            ),
            staging(1500, None),
            staging(2500, None),
            staging(3500, Some(yes("lead", 0, 3620))),
            staging(4500, Some(no("lead", 0, 4560, None))),
            staging(5500, Some(no("lead", 0, 5800, Some("after hours")))),
            glass(9000, Some((ReviewState::Justified, Some(true), false))),
            glass(9100, Some((ReviewState::Unjustified, Some(false), true))),
            glass(9200, Some((ReviewState::Overdue, None, true))),
            glass(9300, Some((ReviewState::Pending, None, false))),
            glass(9400, None),
            needed_approval,
        ]
    }

    fn report(window: Window, requests: &[AccessRequest]) -> Report {
        let mut builder = Builder::new(window);
        requests.iter().for_each(|request| builder.add(request));
        builder.finish()
    }

    fn reasons(pairs: &[(&str, u64)]) -> Vec<ReasonCount> {
        let reason = |&(reason, count): &(&str, u64)| ReasonCount {
            reason: reason.into(),
            count,
        };
        pairs.iter().map(reason).collect()
    }

    /// requests, approved, denied, cancelled, timed_out, undecided, auto_approved.
    fn counts(r: &ResourceReport) -> [u64; 7] {
        [
            r.requests,
            r.approved,
            r.denied,
            r.cancelled,
            r.timed_out,
            r.undecided,
            r.auto_approved,
        ]
    }

    #[test]
    fn hand_computed_scenario() {
        let report = report(window(Some(100), Some(100_000)), &scenario());
        let bounds = (Some(t(100)), Some(t(100_000)));
        assert_eq!((report.since, report.until), bounds);
        let [prod, staging] = &report.resources[..] else {
            panic!("two resources expected: {:?}", report.resources);
        };
        assert_eq!(prod.resource, "prod-db-admin");
        assert_eq!(counts(prod), [8, 2, 3, 1, 1, 1, 0]);
        let rates = (Some(2.0 / 5.0), Some(0.0));
        assert_eq!((prod.approval_rate, prod.auto_approved_share), rates);
        // Times to decision, sorted: 20 s, 90 s, 180 s, 330 s, 410 s.
        let times = (Some(180 * S), Some(410 * S));
        assert_eq!((prod.decision_ms_median, prod.decision_ms_p90), times);
        let break_glass = BreakGlassCounts {
            count: 6,
            justified: 2,
            unjustified: 1,
            open: 2,
            overdue_now: 1,
            missed_deadline: 3,
        };
        assert_eq!(prod.break_glass, break_glass);
        let expected = reasons(&[("no ticket", 2), (NO_REASON, 1)]);
        assert_eq!(prod.denied_reasons, expected);
        assert_eq!(staging.resource, "staging-shell");
        assert_eq!(counts(staging), [5, 3, 2, 0, 0, 0, 2]);
        let rates = (Some(3.0 / 5.0), Some(2.0 / 5.0));
        assert_eq!((staging.approval_rate, staging.auto_approved_share), rates);
        // Sorted: 60 s, 120 s, 300 s; the auto-approved ones take no time to decide.
        let times = (Some(120 * S), Some(300 * S));
        assert_eq!((staging.decision_ms_median, staging.decision_ms_p90), times);
        assert_eq!(staging.break_glass, BreakGlassCounts::default());
        let expected = reasons(&[(NO_REASON, 1), ("after hours", 1)]);
        assert_eq!(staging.denied_reasons, expected);
        let approver = |name: &str, decisions, approvals, denials, median: u64| ApproverReport {
            approver: name.into(),
            decisions,
            approvals,
            denials,
            response_ms_median: Some(median * S),
        };
        let expected = [
            // 60 s, 120 s, 300 s.
            approver("lead", 3, 1, 2, 120),
            // 10, 20, 30, 45 (the break-glass approval), 60, 90 s.
            approver("manager", 6, 4, 2, 30),
            // Stage 1 opens at the manager's approval: 120, 300, 400 s.
            approver("security", 3, 2, 1, 300),
        ];
        assert_eq!(report.approvers, expected);
    }

    #[test]
    fn nearest_rank_median_and_p90() {
        let both = |values: &[u64]| (nearest_rank(values, 50), nearest_rank(values, 90));
        assert_eq!(both(&[]), (None, None));
        assert_eq!(both(&[10]), (Some(10), Some(10)));
        assert_eq!(both(&[10, 20]), (Some(10), Some(20)));
        assert_eq!(both(&(1..=10).collect::<Vec<_>>()), (Some(5), Some(9)));
        assert_eq!(both(&(1..=11).collect::<Vec<_>>()), (Some(6), Some(10)));
    }

    #[test]
    fn window_is_half_open_and_each_bound_optional() {
        let requests = [
            prod(100, State::Cancelled, vec![]),
            prod(200, State::Cancelled, vec![]),
        ];
        let count = |window| {
            report(window, &requests)
                .resources
                .first()
                .map_or(0, |r| r.requests)
        };
        assert_eq!(count(window(Some(100), Some(200))), 1);
        assert_eq!(count(window(Some(101), Some(200))), 0);
        assert_eq!(count(window(None, Some(201))), 2);
        assert_eq!(count(window(Some(200), None)), 1);
        assert_eq!(count(Window::default()), 2);
    }

    #[test]
    fn no_input_gives_empty_lists_and_no_figures() {
        let empty = report(Window::default(), &[]);
        assert!(empty.resources.is_empty() && empty.approvers.is_empty());
        let only_glass = report(Window::default(), &[glass(10, None)]);
        let r = &only_glass.resources[0];
        assert_eq!((r.requests, r.break_glass.count), (0, 1));
        let (rates, times) = ((None, None), (None, None));
        assert_eq!((r.approval_rate, r.auto_approved_share), rates);
        assert_eq!((r.decision_ms_median, r.decision_ms_p90), times);
    }

    #[test]
    fn a_later_stage_opens_at_the_quorum_th_approval() {
        let decisions = vec![
            yes("manager", 0, 10),
            yes("lead", 0, 40),
            yes("security", 1, 100),
        ];
        let mut request = prod(0, State::Active, decisions);
        request.route.stages[0].quorum = 2;
        request.route.stages[0].approvers.insert(p("lead"));
        let report = report(Window::default(), &[request]);
        let median = |a: &ApproverReport| (a.approver.clone(), a.response_ms_median);
        let medians: Vec<_> = report.approvers.iter().map(median).collect();
        let expected = [("lead", 40), ("manager", 10), ("security", 60)];
        let expected: Vec<_> = expected
            .map(|(name, secs)| (name.to_owned(), Some(secs * S)))
            .into();
        assert_eq!(medians, expected);
        assert_eq!(report.resources[0].decision_ms_median, Some(100 * S));
    }

    #[test]
    fn malformed_records_count_but_skip_the_times_they_cannot_give() {
        // Stage 1 decided without a stage 0 approval; a decision at a stage past the route.
        let mut orphan = prod(0, State::Denied, vec![no("security", 1, 30, None)]);
        orphan.decisions.push(yes("auditor", 5, 40));
        // Denied with no deny decision: the time comes from `ended_at`.
        let mut bare = prod(0, State::Denied, vec![]);
        bare.ended_at = Some(t(50));
        let report = report(Window::default(), &[orphan, bare]);
        let figures = |a: &ApproverReport| (a.approver.clone(), a.decisions, a.response_ms_median);
        let approvers: Vec<_> = report.approvers.iter().map(figures).collect();
        let expected = [
            ("auditor".to_owned(), 1, None),
            ("security".to_owned(), 1, None),
        ];
        assert_eq!(approvers, expected);
        let r = &report.resources[0];
        assert_eq!(r.denied_reasons, reasons(&[(NO_REASON, 2)]));
        // 30 s to the deny decision, 50 s to `ended_at`.
        let times = (Some(30 * S), Some(50 * S));
        assert_eq!((r.decision_ms_median, r.decision_ms_p90), times);
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let report = report(window(Some(100), None), &scenario());
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    }
}
