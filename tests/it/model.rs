//! Model-based property tests of the request workflow.
//!
//! Proptest generates interleavings of operations across several principals: submissions
//! (auto-approved, one-stage and two-stage routed; durations within and beyond the limits;
//! missing reasons and bad tickets), approvals and denials by the right approver, by the
//! requester, by someone who already approved and by people who may not decide, cancels,
//! releases, extensions, administrative revokes, a target that refuses the next revoke, jumps
//! of the manual clock (onto, just before and just past the next deadline too) and restarts,
//! clean or abrupt. Each operation runs against the real daemon and against [`Model`], a plain
//! reference of what DESIGN.md says must happen. After every operation the daemon is let
//! settle (its timer work for the current time done, never by sleeping through a lease) and
//! checked against the model and the invariants:
//!
//! - every request ever made is still listed, in exactly the state, stage, decisions, times
//!   and extensions the model predicts (history is never deleted; an acknowledged transition
//!   survives a restart; a refused call changes nothing);
//! - refused calls fail with the status code the contract names;
//! - the targets grant exactly the active (or still revoking) leases, and each of them has one
//!   distinct, eligible approval other than the requester's at every stage of its route;
//! - no active lease is past its end, nothing is overdue, and the timer wheel holds exactly
//!   one timer for each deadline in the store;
//! - every grant happened once, and the audit trail records exactly the transitions the model
//!   made, by whom and when; at the end the whole chain verifies offline.
//!
//! The model is the contract. Where the daemon and the model disagree, the model either
//! misread DESIGN.md or the daemon breaks it; the model is not bent to what the daemon happens
//! to do. Only what the design leaves to chance (which of several leases meets a refused
//! revoke, whether a jittered retry came yet) is read back from the daemon, and then only
//! among the outcomes the model allows.
//!
//! Operations name their request by a [`Pick`] resolved when they run (the newest, one waiting
//! for a decision, an active lease...), modulo the number of candidates, so that shrinking can
//! drop any operation and still replay the rest. A failing case is printed shrunk, usually to
//! a handful of operations; turn it into a named regression test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use elevate::broker::BrokerError;
use elevate::cli::client::Clients;
use elevate::clock::Clock;
use elevate::model::{LeaseDuration, RequestId, Timestamp};
use elevate::proto::v1 as pb;
use elevate::server::BuildError;
use elevate::store::{Changes, StoreError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tonic::Code;

use super::harness::*;

const ENGINEER: &str = "engineer";
const ONCALL: &str = "oncall";
const MANAGER: &str = "manager";
const SECURITY: &str = "security";
const AUDITOR: &str = "auditor";
const ADMIN: &str = "admin";
/// Everyone who takes part in the generated operations.
const PEOPLE: [&str; 6] = [ENGINEER, ONCALL, MANAGER, SECURITY, AUDITOR, ADMIN];
/// Who `Who::Anyone` picks from.
const ANYONE: [&str; 5] = [ENGINEER, ONCALL, MANAGER, SECURITY, AUDITOR];
/// The system's name as an audit actor.
const SYSTEM: &str = "elevated";

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
/// How long a request waits for decisions (the policy's default).
const REQUEST_TTL: u64 = HOUR;
/// The first revoke retry comes within this long after a failure: the test daemon's backoff
/// starts at one second, jittered into its upper half.
const FIRST_RETRY: (u64, u64) = (SECOND / 2, SECOND);

/// Test cases unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 48;
/// The longest generated sequence of operations.
const MAX_OPS: usize = 30;

// ---------------------------------------------------------------------------------------------
// The policy, as the model knows it (the demo policy of `src/dev/policy.toml`).

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Res {
    /// Auto-approved; extensions apply at once.
    Staging,
    /// One stage (the manager); extensions wait for the manager.
    Read,
    /// Two stages (the manager, then security); no extensions.
    Admin,
}

const RESOURCES: [Res; 3] = [Res::Staging, Res::Read, Res::Admin];
/// A resource the policy does not have.
const UNKNOWN_RESOURCE: &str = "ledger-db";

/// Extension limits of a resource.
#[derive(Clone, Copy, Debug)]
struct ExtensionRule {
    max_count: usize,
    max_total: u64,
    first_stage: bool,
}

impl Res {
    fn name(self) -> &'static str {
        match self {
            Res::Staging => "staging-db",
            Res::Read => "prod-db-read",
            Res::Admin => "prod-db-admin",
        }
    }

    fn min(self) -> u64 {
        MINUTE
    }

    fn max(self) -> u64 {
        match self {
            Res::Staging => 8 * HOUR,
            Res::Read => 4 * HOUR,
            Res::Admin => HOUR,
        }
    }

    fn default_duration(self) -> u64 {
        match self {
            Res::Staging | Res::Read => HOUR,
            Res::Admin => 30 * MINUTE,
        }
    }

    fn needs_reason(self) -> bool {
        self != Res::Staging
    }

    /// Whether `ticket` passes: prod-db-admin requires one matching `^[A-Z]+-[0-9]+$`.
    fn ticket_ok(self, ticket: &str) -> bool {
        match self {
            Res::Admin => ticket == "INC-42",
            _ => true,
        }
    }

    /// The approvers of each stage for `requester`, as the policy resolves them: `manager` is
    /// the requester's manager (the manager, for both requesters), `group:security` every
    /// member of the security group; never the requester.
    fn route(self, requester: &str) -> Vec<Vec<&'static str>> {
        let stages: &[&[&'static str]] = match self {
            Res::Staging => &[],
            Res::Read => &[&[MANAGER]],
            Res::Admin => &[&[MANAGER], &[MANAGER, SECURITY]],
        };
        stages
            .iter()
            .map(|stage| stage.iter().copied().filter(|p| *p != requester).collect())
            .collect()
    }

    fn extensions(self) -> Option<ExtensionRule> {
        match self {
            Res::Staging => Some(ExtensionRule {
                max_count: 3,
                max_total: 12 * HOUR,
                first_stage: false,
            }),
            Res::Read => Some(ExtensionRule {
                max_count: 2,
                max_total: 6 * HOUR,
                first_stage: true,
            }),
            Res::Admin => None,
        }
    }
}

/// Who may request: both requesters are eligible for every resource; security is not.
fn eligible(requester: &str) -> bool {
    matches!(requester, ENGINEER | ONCALL)
}

/// Lease lengths asked for: the default (empty), lengths within and beyond each resource's
/// bounds, and one that does not parse. The first `VALID_DURATIONS` parse and are at least a
/// minute long.
const DURATIONS: [&str; 12] = [
    "", "1m", "10m", "30m", "45m", "1h", "2h", "4h", "8h", "30s", "9h", "soon",
];
const VALID_DURATIONS: u8 = 9;
/// Tickets: none, one prod-db-admin accepts, one it refuses.
const TICKETS: [&str; 3] = ["", "INC-42", "oops-1"];
/// Extensions asked for.
const EXTENSIONS: [&str; 6] = ["10m", "30m", "1h", "2h", "4h", "11h"];
/// Clock jumps, in milliseconds: within the first revoke retry's window, past it, and across
/// notices, lease ends and request time-outs.
const JUMPS: [u64; 11] = [
    700,
    SECOND,
    30 * SECOND,
    5 * MINUTE,
    10 * MINUTE,
    30 * MINUTE,
    HOUR - SECOND,
    HOUR,
    2 * HOUR,
    4 * HOUR,
    13 * HOUR,
];

/// Milliseconds of a humantime duration, `None` when it does not parse.
fn millis(text: &str) -> Option<u64> {
    LeaseDuration::parse(text)
        .ok()
        .map(|d| u64::try_from(d.get().as_millis()).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Operations.

/// Who makes a decision, resolved against the model when the operation runs.
#[derive(Clone, Debug)]
enum Who {
    /// The requester themself.
    Requester,
    /// Someone the request waits for (its current stage, or its pending extension), if any.
    Approver,
    /// Whoever decided on its latest extension, else on the request last.
    Prior,
    /// Anyone of [`ANYONE`].
    Anyone(u8),
}

#[derive(Clone, Debug)]
enum Jump {
    /// By this many milliseconds.
    By(u64),
    /// To the next deadline the model knows of (a lease's end, a time-out, a revoke retry),
    /// moved by -1, 0 or +1 ms.
    ToNextDeadline(i8),
}

#[derive(Clone, Debug)]
enum Op {
    Submit {
        requester: &'static str,
        /// Index into [`RESOURCES`]; beyond it, [`UNKNOWN_RESOURCE`].
        resource: u8,
        /// Index into [`DURATIONS`].
        duration: u8,
        reason: bool,
        /// Index into [`TICKETS`].
        ticket: u8,
    },
    Approve {
        request: Pick,
        by: Who,
    },
    Deny {
        request: Pick,
        by: Who,
    },
    Cancel {
        request: Pick,
        by: Who,
    },
    Release {
        request: Pick,
        by: Who,
    },
    Extend {
        request: Pick,
        by: Who,
        /// Index into [`EXTENSIONS`].
        amount: u8,
    },
    /// An administrator (or, when `admin` is false, the requester) revokes the lease.
    Revoke {
        request: Pick,
        admin: bool,
    },
    /// The target refuses the next revoke once (skipped while a revoke is failing already).
    FailNextRevoke,
    Advance(Jump),
    /// Stops the daemon cleanly, or abruptly as a kill would (see [`Running::crash`]), and
    /// starts it again on the same state after `down` passed. An abrupt stop moves the clock
    /// first, so that it cuts short the timer work that follows.
    Restart {
        crash: bool,
        down: Jump,
    },
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        4 => Just(Who::Approver),
        1 => Just(Who::Requester),
        1 => Just(Who::Prior),
        1 => (0..ANYONE.len() as u8).prop_map(Who::Anyone),
    ]
}

/// Mostly the requester, sometimes someone else.
fn holder() -> impl Strategy<Value = Who> {
    prop_oneof![
        5 => Just(Who::Requester),
        1 => (0..ANYONE.len() as u8).prop_map(Who::Anyone),
    ]
}

fn jump() -> impl Strategy<Value = Jump> {
    prop_oneof![
        3 => (0..JUMPS.len()).prop_map(|i| Jump::By(JUMPS[i])),
        1 => (-1i8..=1).prop_map(Jump::ToNextDeadline),
    ]
}

/// Which request an operation is about, resolved against the model when it runs; modulo
/// the number of candidates, so that any operation can be dropped when shrinking.
#[derive(Clone, Debug)]
enum Pick {
    /// Counted back from the newest (0).
    Recent(u8),
    /// Among those waiting for a decision: leases with an extension pending if there are
    /// any, else pending requests; the newest request when none waits.
    Waiting(u8),
    /// Among the active leases; the newest request when none is active.
    Holding(u8),
    /// Among the active leases whose resource allows extensions and that have none pending;
    /// else as `Holding`.
    Extendable(u8),
    /// Among the requests someone decided on (a stage, or an extension); else the newest.
    Decided(u8),
}

fn recent() -> impl Strategy<Value = Pick> {
    prop_oneof![2 => Just(0u8), 1 => Just(1u8), 2 => any::<u8>()].prop_map(Pick::Recent)
}

/// Mostly a request waiting for a decision; sometimes one decided already.
fn waiting() -> impl Strategy<Value = Pick> {
    prop_oneof![
        4 => any::<u8>().prop_map(Pick::Waiting),
        1 => any::<u8>().prop_map(Pick::Decided),
        1 => recent(),
    ]
}

/// Mostly an active lease.
fn holding() -> impl Strategy<Value = Pick> {
    prop_oneof![3 => any::<u8>().prop_map(Pick::Holding), 1 => recent()]
}

/// Mostly an active lease that can be extended.
fn extendable() -> impl Strategy<Value = Pick> {
    prop_oneof![2 => any::<u8>().prop_map(Pick::Extendable), 1 => holding()]
}

fn op() -> impl Strategy<Value = Op> {
    let submit = (
        prop_oneof![4 => Just(ENGINEER), 4 => Just(ONCALL), 1 => Just(SECURITY)],
        prop_oneof![
            3 => Just(0u8),
            4 => Just(1u8),
            3 => Just(2u8),
            1 => Just(RESOURCES.len() as u8),
        ],
        prop_oneof![
            8 => 0..VALID_DURATIONS,
            1 => VALID_DURATIONS..DURATIONS.len() as u8,
        ],
        prop::bool::weighted(0.9),
        prop_oneof![8 => Just(1u8), 1 => Just(0u8), 1 => Just(2u8)],
    )
        .prop_map(
            |(requester, resource, duration, reason, ticket)| Op::Submit {
                requester,
                resource,
                duration,
                reason,
                ticket,
            },
        );
    prop_oneof![
        5 => submit,
        7 => (waiting(), who()).prop_map(|(request, by)| Op::Approve { request, by }),
        2 => (waiting(), who()).prop_map(|(request, by)| Op::Deny { request, by }),
        1 => (waiting(), holder()).prop_map(|(request, by)| Op::Cancel { request, by }),
        2 => (holding(), holder()).prop_map(|(request, by)| Op::Release { request, by }),
        3 => (extendable(), holder(), 0..EXTENSIONS.len() as u8)
            .prop_map(|(request, by, amount)| Op::Extend { request, by, amount }),
        1 => (holding(), prop::bool::weighted(0.8))
            .prop_map(|(request, admin)| Op::Revoke { request, admin }),
        1 => Just(Op::FailNextRevoke),
        4 => jump().prop_map(Op::Advance),
        1 => (any::<bool>(), prop_oneof![2 => Just(Jump::By(0)), 1 => jump()])
            .prop_map(|(crash, down)| Op::Restart { crash, down }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The reference model.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Expired,
    Released,
    Revoked,
}

impl Ending {
    fn word(self) -> &'static str {
        match self {
            Ending::Expired => "expired",
            Ending::Released => "released",
            Ending::Revoked => "revoked",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Ending::Expired => "lease.expired",
            Ending::Released => "lease.released",
            Ending::Revoked => "lease.revoked",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Pending {
        stage: usize,
    },
    Active,
    Denied,
    Cancelled,
    TimedOut,
    /// Ending, but the target has not confirmed the revoke yet: still holds access.
    Revoking {
        ending: Ending,
        failed_at: u64,
    },
    Ended(Ending),
}

impl State {
    fn word(&self) -> &'static str {
        match self {
            State::Pending { .. } => "pending",
            State::Active => "active",
            State::Denied => "denied",
            State::Cancelled => "cancelled",
            State::TimedOut => "timed_out",
            State::Revoking { .. } => "revoke_failing",
            State::Ended(ending) => ending.word(),
        }
    }

    /// Whether the request blocks another of the same requester and resource.
    fn is_open(&self) -> bool {
        matches!(
            self,
            State::Pending { .. } | State::Active | State::Revoking { .. }
        )
    }

    /// Whether the lease holds access on its target.
    fn holds(&self) -> bool {
        matches!(self, State::Active | State::Revoking { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ExtensionState {
    Pending,
    Applied,
    Denied(&'static str),
    Lapsed,
}

impl ExtensionState {
    fn word(&self) -> &'static str {
        match self {
            ExtensionState::Pending => "pending",
            ExtensionState::Applied => "applied",
            ExtensionState::Denied(_) => "denied",
            ExtensionState::Lapsed => "lapsed",
        }
    }
}

#[derive(Clone, Debug)]
struct Extension {
    by: u64,
    from: u64,
    state: ExtensionState,
    approved_by: Vec<&'static str>,
}

#[derive(Clone, Debug)]
struct Decision {
    approver: &'static str,
    approve: bool,
    stage: usize,
    at: u64,
}

/// One audit event the model expects: action, actor, time.
type Action = (&'static str, &'static str, u64);

#[derive(Clone, Debug)]
struct Request {
    id: String,
    requester: &'static str,
    res: Res,
    duration: u64,
    created: u64,
    state: State,
    decisions: Vec<Decision>,
    approved_at: Option<u64>,
    granted_at: Option<u64>,
    expires_at: Option<u64>,
    ended_at: Option<u64>,
    extensions: Vec<Extension>,
    actions: Vec<Action>,
}

impl Request {
    fn route(&self) -> Vec<Vec<&'static str>> {
        self.res.route(self.requester)
    }

    fn decide_by(&self) -> u64 {
        self.created + REQUEST_TTL
    }

    fn extension_pending(&self) -> bool {
        self.state == State::Active
            && self
                .extensions
                .last()
                .is_some_and(|e| e.state == ExtensionState::Pending)
    }

    /// Whether `who` has an approval that counts.
    fn approved_by(&self, who: &str) -> Option<usize> {
        self.decisions
            .iter()
            .find(|d| d.approve && d.approver == who)
            .map(|d| d.stage)
    }

    /// The lease stops being active: an undecided extension lapses with it.
    fn leave_active(&mut self, state: State) {
        self.state = state;
        if let Some(extension) = self.extensions.last_mut() {
            if extension.state == ExtensionState::Pending {
                extension.state = ExtensionState::Lapsed;
            }
        }
    }
}

/// Outcomes the model cannot tell in advance; they are read from the daemon once it settled
/// and must be among those the model allows.
#[derive(Clone, Debug)]
enum Unknown {
    /// A refused revoke hit exactly one of these leases, all ending as expired at `at`.
    OneRevokeFailed { leases: Vec<usize>, at: u64 },
    /// The retry of this failed revoke was due somewhere in the jitter window: it may have
    /// happened at `at` (the clock jumped there) or not yet.
    MaybeRetried { lease: usize, at: u64 },
}

#[derive(Clone, Debug)]
struct Model {
    now: u64,
    requests: Vec<Request>,
    /// The target refuses the next revoke.
    refuse_revoke: bool,
    unknown: Vec<Unknown>,
    /// Grants the target saw.
    grants: u32,
}

type Outcome = Result<(), Code>;

impl Model {
    fn new(now: u64) -> Self {
        Self {
            now,
            requests: Vec::new(),
            refuse_revoke: false,
            unknown: Vec::new(),
            grants: 0,
        }
    }

    /// The request `pick` refers to, if there is any request yet.
    fn index(&self, pick: &Pick) -> Option<usize> {
        let count = self.requests.len();
        if count == 0 {
            return None;
        }
        let among = |n: u8, wanted: &dyn Fn(&Request) -> bool| {
            let candidates: Vec<usize> =
                (0..count).filter(|&i| wanted(&self.requests[i])).collect();
            match candidates.len() {
                0 => count - 1,
                len => candidates[usize::from(n) % len],
            }
        };
        Some(match *pick {
            Pick::Recent(n) => count - 1 - usize::from(n) % count,
            // Extensions waiting are the rarer: they come first.
            Pick::Waiting(n) if self.requests.iter().any(Request::extension_pending) => {
                among(n, &Request::extension_pending)
            }
            Pick::Waiting(n) => among(n, &|r| matches!(r.state, State::Pending { .. })),
            Pick::Holding(n) => among(n, &|r| r.state == State::Active),
            Pick::Decided(n) => among(n, &|r| {
                !r.decisions.is_empty()
                    || r.extensions.iter().any(|e| {
                        !e.approved_by.is_empty() || matches!(e.state, ExtensionState::Denied(_))
                    })
            }),
            Pick::Extendable(n) => {
                let extendable = |r: &Request| {
                    r.state == State::Active
                        && r.res.extensions().is_some()
                        && !r.extension_pending()
                };
                if self.requests.iter().any(extendable) {
                    among(n, &extendable)
                } else {
                    return self.index(&Pick::Holding(n));
                }
            }
        })
    }

    /// The principal `who` stands for on request `index`.
    fn resolve(&self, index: usize, who: &Who) -> &'static str {
        let request = &self.requests[index];
        let route = request.route();
        match who {
            Who::Requester => request.requester,
            Who::Approver => {
                if request.extension_pending() {
                    return route[0][0];
                }
                let waiting = match request.state {
                    State::Pending { stage } => route[stage]
                        .iter()
                        .copied()
                        .find(|p| request.approved_by(p).is_none()),
                    _ => None,
                };
                waiting
                    .or_else(|| route.first().map(|stage| stage[0]))
                    .unwrap_or(MANAGER)
            }
            Who::Prior => request
                .extensions
                .iter()
                .rev()
                .find_map(|e| match e.state {
                    ExtensionState::Denied(by) => Some(by),
                    _ => e.approved_by.last().copied(),
                })
                .or_else(|| request.decisions.last().map(|d| d.approver))
                .unwrap_or(SECURITY),
            Who::Anyone(n) => ANYONE[usize::from(*n) % ANYONE.len()],
        }
    }

    fn record(&mut self, index: usize, action: &'static str, actor: &'static str) {
        let now = self.now;
        self.requests[index].actions.push((action, actor, now));
    }

    /// Submits; `Ok` holds the index of the new request.
    fn submit(
        &mut self,
        requester: &'static str,
        resource: Option<Res>,
        duration: &str,
        reason: bool,
        ticket: &str,
    ) -> Result<usize, Code> {
        // Parsed by the gRPC layer before the policy sees it.
        let asked = if duration.is_empty() {
            None
        } else {
            Some(millis(duration).ok_or(Code::InvalidArgument)?)
        };
        let res = resource.ok_or(Code::NotFound)?;
        if !eligible(requester) {
            return Err(Code::PermissionDenied);
        }
        let duration = asked.unwrap_or(res.default_duration());
        if duration > res.max() || duration < res.min() {
            return Err(Code::InvalidArgument);
        }
        if res.needs_reason() && !reason {
            return Err(Code::InvalidArgument);
        }
        if (ticket.is_empty() && res == Res::Admin) || !res.ticket_ok(ticket) {
            return Err(Code::InvalidArgument);
        }
        // One open request per requester and resource (the policy allows no overlap).
        if self
            .requests
            .iter()
            .any(|r| r.requester == requester && r.res == res && r.state.is_open())
        {
            return Err(Code::AlreadyExists);
        }
        let now = self.now;
        let auto = res.route(requester).is_empty();
        let mut request = Request {
            id: format!("req-{}", self.requests.len() + 1),
            requester,
            res,
            duration,
            created: now,
            state: State::Pending { stage: 0 },
            decisions: Vec::new(),
            approved_at: None,
            granted_at: None,
            expires_at: None,
            ended_at: None,
            extensions: Vec::new(),
            actions: vec![("request.submitted", requester, now)],
        };
        if auto {
            request.actions.push(("request.approved", SYSTEM, now));
            request.actions.push(("lease.granted", SYSTEM, now));
            request.state = State::Active;
            request.approved_at = Some(now);
            request.granted_at = Some(now);
            request.expires_at = Some(now + duration);
            self.grants += 1;
        }
        self.requests.push(request);
        Ok(self.requests.len() - 1)
    }

    /// Whether `by` may see request `index`: its requester, its approvers, auditors and
    /// admins. To everyone else it does not exist.
    fn sees(&self, index: usize, by: &str) -> bool {
        let request = &self.requests[index];
        by == request.requester
            || by == AUDITOR
            || by == ADMIN
            || request.route().iter().any(|stage| stage.contains(&by))
    }

    fn approve(&mut self, index: usize, by: &'static str) -> Outcome {
        if !self.sees(index, by) {
            return Err(Code::NotFound);
        }
        let now = self.now;
        let request = &mut self.requests[index];
        let route = request.route();
        // Nobody approves their own request, nor its extension.
        if by == request.requester {
            return Err(Code::PermissionDenied);
        }
        if request.extension_pending() {
            // Extensions of prod-db-read wait for the first stage's quorum (one approval).
            if !route[0].contains(&by) {
                return Err(Code::PermissionDenied);
            }
            let extension = request.extensions.last_mut().unwrap();
            extension.approved_by.push(by);
            extension.state = ExtensionState::Applied;
            let until = extension.from + extension.by;
            request.expires_at = Some(until);
            self.record(index, "lease.extension_approval", by);
            self.record(index, "lease.extended", SYSTEM);
            return Ok(());
        }
        // One person counts once: approving again at the same point returns the request as
        // it is; at a later stage it is refused.
        if let Some(earlier) = request.approved_by(by) {
            return match request.state {
                State::Pending { stage } if stage != earlier => Err(Code::PermissionDenied),
                _ => Ok(()),
            };
        }
        // A repeated approval of an extension returns the lease as it is.
        if request
            .extensions
            .last()
            .is_some_and(|e| e.approved_by.contains(&by))
        {
            return Ok(());
        }
        let State::Pending { stage } = request.state else {
            return Err(Code::FailedPrecondition);
        };
        assert!(
            now < request.decide_by(),
            "a settled request past its time-out"
        );
        if !route[stage].contains(&by) {
            return Err(Code::PermissionDenied);
        }
        request.decisions.push(Decision {
            approver: by,
            approve: true,
            stage,
            at: now,
        });
        self.record(index, "request.approval", by);
        let request = &mut self.requests[index];
        if stage + 1 < route.len() {
            request.state = State::Pending { stage: stage + 1 };
            return Ok(());
        }
        // The last stage's quorum: approved, and granted before the call returns.
        request.state = State::Active;
        request.approved_at = Some(now);
        request.granted_at = Some(now);
        request.expires_at = Some(now + request.duration);
        self.grants += 1;
        self.record(index, "request.approved", by);
        self.record(index, "lease.granted", SYSTEM);
        Ok(())
    }

    fn deny(&mut self, index: usize, by: &'static str) -> Outcome {
        if !self.sees(index, by) {
            return Err(Code::NotFound);
        }
        let now = self.now;
        let request = &mut self.requests[index];
        let route = request.route();
        if by == request.requester {
            return Err(Code::PermissionDenied);
        }
        if request.extension_pending() {
            if !route[0].contains(&by) {
                return Err(Code::PermissionDenied);
            }
            request.extensions.last_mut().unwrap().state = ExtensionState::Denied(by);
            self.record(index, "lease.extension_denied", by);
            return Ok(());
        }
        // A repeated decision returns the first result.
        let repeated_extension = request
            .extensions
            .last()
            .is_some_and(|e| e.state == ExtensionState::Denied(by));
        let repeated = request.state == State::Denied
            && request
                .decisions
                .iter()
                .any(|d| !d.approve && d.approver == by);
        if repeated_extension || repeated {
            return Ok(());
        }
        let State::Pending { stage } = request.state else {
            return Err(Code::FailedPrecondition);
        };
        if !route[stage].contains(&by) {
            return Err(Code::PermissionDenied);
        }
        request.decisions.push(Decision {
            approver: by,
            approve: false,
            stage,
            at: now,
        });
        request.state = State::Denied;
        request.ended_at = Some(now);
        self.record(index, "request.denied", by);
        Ok(())
    }

    fn cancel(&mut self, index: usize, by: &'static str) -> Outcome {
        if !self.sees(index, by) {
            return Err(Code::NotFound);
        }
        let now = self.now;
        let request = &mut self.requests[index];
        if by != request.requester {
            return Err(Code::PermissionDenied);
        }
        match request.state {
            State::Cancelled => Ok(()),
            State::Pending { .. } => {
                request.state = State::Cancelled;
                request.ended_at = Some(now);
                self.record(index, "request.cancelled", by);
                Ok(())
            }
            _ => Err(Code::FailedPrecondition),
        }
    }

    /// Ends active lease `index` as `ending`, by `actor`: revoked on the target at once, or
    /// left revoking when the target refuses.
    fn end(&mut self, index: usize, ending: Ending, actor: &'static str) {
        let now = self.now;
        if std::mem::take(&mut self.refuse_revoke) {
            self.requests[index].leave_active(State::Revoking {
                ending,
                failed_at: now,
            });
            self.record(index, "lease.revoke_failed", actor);
        } else {
            self.requests[index].leave_active(State::Ended(ending));
            self.requests[index].ended_at = Some(now);
            self.record(index, ending.action(), actor);
        }
    }

    fn release(&mut self, index: usize, by: &'static str) -> Outcome {
        if !self.sees(index, by) {
            return Err(Code::NotFound);
        }
        let request = &self.requests[index];
        if by != request.requester {
            return Err(Code::PermissionDenied);
        }
        match request.state {
            State::Active => {
                self.end(index, Ending::Released, by);
                Ok(())
            }
            // Releasing what is ending or ended returns it as it is.
            State::Revoking { .. } | State::Ended(_) => Ok(()),
            _ => Err(Code::FailedPrecondition),
        }
    }

    fn revoke(&mut self, index: usize, by: &'static str) -> Outcome {
        if by != ADMIN {
            return Err(Code::PermissionDenied);
        }
        match self.requests[index].state {
            State::Active => {
                self.end(index, Ending::Revoked, by);
                Ok(())
            }
            // A repeated revoke returns the first result.
            State::Revoking {
                ending: Ending::Revoked,
                ..
            }
            | State::Ended(Ending::Revoked) => Ok(()),
            _ => Err(Code::FailedPrecondition),
        }
    }

    fn extend(&mut self, index: usize, by: &'static str, amount: &str) -> Outcome {
        if !self.sees(index, by) {
            return Err(Code::NotFound);
        }
        let now = self.now;
        let request = &mut self.requests[index];
        // Only the holder extends.
        if by != request.requester {
            return Err(Code::PermissionDenied);
        }
        if request.state != State::Active {
            return Err(Code::FailedPrecondition);
        }
        let rule = request.res.extensions().ok_or(Code::InvalidArgument)?;
        if request
            .extensions
            .last()
            .is_some_and(|e| e.state == ExtensionState::Pending)
        {
            return Err(Code::InvalidArgument);
        }
        let applied = request
            .extensions
            .iter()
            .filter(|e| e.state == ExtensionState::Applied)
            .count();
        if applied >= rule.max_count {
            return Err(Code::InvalidArgument);
        }
        let amount = millis(amount).unwrap();
        let from = request.expires_at.unwrap();
        assert!(from > now, "a settled active lease past its end");
        if from + amount - request.granted_at.unwrap() > rule.max_total {
            return Err(Code::InvalidArgument);
        }
        let state = if rule.first_stage {
            ExtensionState::Pending
        } else {
            request.expires_at = Some(from + amount);
            ExtensionState::Applied
        };
        request.extensions.push(Extension {
            by: amount,
            from,
            state,
            approved_by: Vec::new(),
        });
        self.record(index, "lease.extension_requested", by);
        if !rule.first_stage {
            self.record(index, "lease.extended", SYSTEM);
        }
        Ok(())
    }

    /// The next instant something is due: a time-out, a lease's end, a revoke retry.
    fn next_deadline(&self) -> Option<u64> {
        self.requests
            .iter()
            .filter_map(|r| match r.state {
                State::Pending { .. } => Some(r.decide_by()),
                State::Active => r.expires_at,
                State::Revoking { failed_at, .. } => Some(failed_at + FIRST_RETRY.1),
                _ => None,
            })
            .min()
    }

    /// How far `jump` moves the clock.
    fn span(&self, jump: &Jump) -> u64 {
        match jump {
            Jump::By(ms) => *ms,
            Jump::ToNextDeadline(offset) => match self.next_deadline() {
                Some(at) => at
                    .saturating_add_signed(i64::from(*offset))
                    .saturating_sub(self.now)
                    .max(1),
                None => SECOND,
            },
        }
    }

    /// The clock moves `by`; everything due at the new time happens at it.
    fn advance(&mut self, by: u64) {
        self.now += by;
        let now = self.now;
        let mut expiring = Vec::new();
        for index in 0..self.requests.len() {
            let request = &mut self.requests[index];
            match request.state {
                State::Pending { .. } if now >= request.decide_by() => {
                    request.state = State::TimedOut;
                    request.ended_at = Some(now);
                    self.record(index, "request.timed_out", SYSTEM);
                }
                State::Active if request.expires_at.is_some_and(|end| end <= now) => {
                    expiring.push(index);
                }
                State::Revoking { ending, failed_at } => {
                    if now >= failed_at + FIRST_RETRY.1 {
                        request.state = State::Ended(ending);
                        request.ended_at = Some(now);
                        self.record(index, ending.action(), SYSTEM);
                    } else if now >= failed_at + FIRST_RETRY.0 {
                        self.unknown.push(Unknown::MaybeRetried {
                            lease: index,
                            at: now,
                        });
                    }
                }
                _ => {}
            }
        }
        if self.refuse_revoke && expiring.len() > 1 {
            // Several revokes run at once and one of them meets the refusal; which one is
            // read from the daemon.
            self.refuse_revoke = false;
            for &index in &expiring {
                self.requests[index].leave_active(State::Ended(Ending::Expired));
                self.requests[index].ended_at = Some(now);
                self.record(index, "lease.expired", SYSTEM);
            }
            self.unknown.push(Unknown::OneRevokeFailed {
                leases: expiring,
                at: now,
            });
        } else {
            for index in expiring {
                self.end(index, Ending::Expired, SYSTEM);
            }
        }
    }

    /// Settles what the model left open with what the daemon did, if the model allows it.
    fn learn(&mut self, listed: &BTreeMap<String, pb::AccessRequest>) -> Result<(), String> {
        for unknown in std::mem::take(&mut self.unknown) {
            match unknown {
                Unknown::OneRevokeFailed { leases, at } => {
                    let failing: Vec<usize> = leases
                        .iter()
                        .copied()
                        .filter(|&i| state(&listed[&self.requests[i].id]) == "revoke_failing")
                        .collect();
                    let [index] = failing[..] else {
                        return Err(format!(
                            "one refused revoke among {:?}: the daemon shows {} of them revoke_failing",
                            leases
                                .iter()
                                .map(|&i| &self.requests[i].id)
                                .collect::<Vec<_>>(),
                            failing.len()
                        ));
                    };
                    let request = &mut self.requests[index];
                    request.state = State::Revoking {
                        ending: Ending::Expired,
                        failed_at: at,
                    };
                    request.ended_at = None;
                    let last = request.actions.last_mut().unwrap();
                    *last = ("lease.revoke_failed", SYSTEM, at);
                }
                Unknown::MaybeRetried { lease, at } => {
                    let request = &mut self.requests[lease];
                    let State::Revoking { ending, .. } = request.state else {
                        continue;
                    };
                    let shown = state(&listed[&request.id]);
                    if shown == ending.word() {
                        request.state = State::Ended(ending);
                        request.ended_at = Some(at);
                        request.actions.push((ending.action(), SYSTEM, at));
                    } else if shown != "revoke_failing" {
                        return Err(format!(
                            "{} was revoke_failing ({}), the daemon shows {shown}",
                            request.id,
                            ending.word()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Who holds what, as (resource, principal).
    fn holders(&self) -> BTreeSet<(&'static str, &'static str)> {
        self.requests
            .iter()
            .filter(|r| r.state.holds())
            .map(|r| (r.res.name(), r.requester))
            .collect()
    }

    /// Whether a failing revoke is outstanding (and so a refusal must not be armed again: the
    /// retry would meet it instead of the revoke it was meant for).
    fn revoking(&self) -> bool {
        self.requests
            .iter()
            .any(|r| matches!(r.state, State::Revoking { .. }))
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon: one incarnation per start, each on its own runtime, so that an abrupt stop can
// drop every task of the daemon at whatever await it stands, as a crash would.

struct Running {
    runtime: tokio::runtime::Runtime,
    daemon: Daemon,
    clients: BTreeMap<&'static str, Clients>,
}

impl Running {
    fn start(env: &Env) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (daemon, clients) = runtime.block_on(async {
            // After an abrupt stop the old store closes once its writer thread noticed.
            let deadline = Instant::now() + Duration::from_secs(10);
            let daemon = loop {
                match env.try_start().await {
                    Ok(daemon) => break daemon,
                    Err(BuildError::Broker(BrokerError::Store(StoreError::InUse(_))))
                        if Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(error) => return Err(format!("the daemon did not start: {error}")),
                }
            };
            let mut clients = BTreeMap::new();
            for name in PEOPLE {
                clients.insert(name, daemon.client(name).await);
            }
            Ok((daemon, clients))
        })?;
        Ok(Self {
            runtime,
            daemon,
            clients,
        })
    }

    fn client(&self, name: &str) -> Clients {
        self.clients[name].clone()
    }

    /// A clean stop: in-flight work finishes, the store closes.
    fn stop(self) {
        let Self {
            runtime,
            daemon,
            clients,
        } = self;
        drop(clients);
        runtime.block_on(daemon.stop());
    }

    /// An abrupt stop, as a kill would be: the store is cut off where it stands (what it
    /// committed stays; nothing written after that lands, while the work in flight may still
    /// have reached a target), then every task is dropped wherever it is. Cutting the store
    /// first matters: tasks dropped with their runtime can still be polled once and would
    /// record things no killed process could.
    fn crash(self) {
        let Self {
            runtime,
            daemon,
            clients,
        } = self;
        runtime.block_on(daemon.store.close(Duration::from_secs(5)));
        drop(runtime);
        drop(clients);
        drop(daemon);
    }
}

/// Compares an answer with the model's expectation.
fn expect(
    what: &str,
    expected: Outcome,
    actual: &Result<pb::AccessRequest, tonic::Status>,
) -> Result<(), String> {
    match (expected, actual) {
        (Ok(()), Ok(_)) => Ok(()),
        (Err(code), Err(status)) if status.code() == code => Ok(()),
        (Ok(()), Err(status)) => Err(format!(
            "{what}: the model expected success; the daemon said {:?}: {}",
            status.code(),
            status.message()
        )),
        (Err(code), Ok(request)) => Err(format!(
            "{what}: the model expected {code:?}; the daemon answered with {} {}",
            request.id,
            state(request)
        )),
        (Err(code), Err(status)) => Err(format!(
            "{what}: the model expected {code:?}; the daemon said {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}

/// Runs `op` against the daemon and the model; `Err` when they disagree.
fn run_op(
    env: &Env,
    running: &mut Option<Running>,
    model: &mut Model,
    op: &Op,
) -> Result<(), String> {
    if let Op::Restart { crash, down } = op {
        let by = model.span(down);
        let current = running.take().unwrap();
        if *crash && !model.refuse_revoke {
            // The clock moves under the running daemon and the crash cuts its timer work
            // short wherever it is. (Not with a refusal armed: whether the refused attempt
            // was recorded before the crash would be left to chance.)
            env.advance(Duration::from_millis(by));
            current.crash();
        } else {
            if *crash {
                current.crash();
            } else {
                current.stop();
            }
            env.advance(Duration::from_millis(by));
        }
        model.advance(by);
        *running = Some(Running::start(env)?);
        return Ok(());
    }
    let running = running.as_ref().unwrap();
    match op {
        Op::Submit {
            requester,
            resource,
            duration,
            reason,
            ticket,
        } => {
            let res = RESOURCES.get(usize::from(*resource)).copied();
            let name = res.map_or(UNKNOWN_RESOURCE, Res::name);
            let duration = DURATIONS[usize::from(*duration)];
            let ticket = TICKETS[usize::from(*ticket)];
            let expected = model.submit(requester, res, duration, *reason, ticket);
            let mut clients = running.client(requester);
            let answer = running.runtime.block_on(request(
                &mut clients,
                name,
                duration,
                if *reason { "investigating" } else { "" },
                ticket,
            ));
            let what = format!("{requester} requests {name} for {duration:?}");
            expect(&what, expected.map(|_| ()), &answer)?;
            if let (Ok(index), Ok(answer)) = (expected, &answer) {
                compare(&model.requests[index], answer, model.now)
                    .map_err(|e| format!("{what}: answered {e}"))?;
            }
            Ok(())
        }
        Op::Approve { request, by }
        | Op::Deny { request, by }
        | Op::Cancel { request, by }
        | Op::Release { request, by }
        | Op::Extend { request, by, .. } => {
            let Some(index) = model.index(request) else {
                return Ok(());
            };
            let who = model.resolve(index, by);
            let id = model.requests[index].id.clone();
            let mut clients = running.client(who);
            let (what, expected, answer) = running.runtime.block_on(async {
                match op {
                    Op::Approve { .. } => (
                        "approves",
                        model.approve(index, who),
                        approve(&mut clients, &id).await,
                    ),
                    Op::Deny { .. } => (
                        "denies",
                        model.deny(index, who),
                        deny(&mut clients, &id, "not now").await,
                    ),
                    Op::Cancel { .. } => (
                        "cancels",
                        model.cancel(index, who),
                        clients
                            .access
                            .cancel_request(pb::CancelRequestRequest { id: id.clone() })
                            .await
                            .map(|r| r.into_inner().request.unwrap()),
                    ),
                    Op::Release { .. } => (
                        "releases",
                        model.release(index, who),
                        release(&mut clients, &id).await,
                    ),
                    Op::Extend { amount, .. } => {
                        let amount = EXTENSIONS[usize::from(*amount)];
                        (
                            "extends",
                            model.extend(index, who, amount),
                            extend(&mut clients, &id, amount, "still on it").await,
                        )
                    }
                    _ => unreachable!(),
                }
            });
            let what = format!("{who} {what} {id}");
            expect(&what, expected, &answer)?;
            if let Ok(answer) = &answer {
                compare(&model.requests[index], answer, model.now)
                    .map_err(|e| format!("{what}: answered {e}"))?;
            }
            Ok(())
        }
        Op::Revoke { request, admin } => {
            let Some(index) = model.index(request) else {
                return Ok(());
            };
            let who = if *admin {
                ADMIN
            } else {
                model.requests[index].requester
            };
            let id = model.requests[index].id.clone();
            let expected = model.revoke(index, who);
            let mut clients = running.client(who);
            let answer = running
                .runtime
                .block_on(admin_revoke(&mut clients, &id, "rotation"));
            let what = format!("{who} revokes {id}");
            expect(&what, expected, &answer)?;
            if let Ok(answer) = &answer {
                compare(&model.requests[index], answer, model.now)
                    .map_err(|e| format!("{what}: answered {e}"))?;
            }
            Ok(())
        }
        Op::FailNextRevoke => {
            if !model.refuse_revoke && !model.revoking() {
                model.refuse_revoke = true;
                env.targets
                    .fail_revokes
                    .store(1, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(())
        }
        Op::Advance(jump) => {
            let by = model.span(jump);
            env.advance(Duration::from_millis(by));
            model.advance(by);
            Ok(())
        }
        Op::Restart { .. } => unreachable!(),
    }
}

// ---------------------------------------------------------------------------------------------
// Checks.

macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

fn ms(at: Option<u64>) -> Option<i64> {
    at.map(|at| i64::try_from(at).unwrap())
}

/// An extension as compared: by (ms), from and until (unix ms), state, approved by.
type ExtensionSeen = (Option<u64>, i64, i64, String, Vec<String>);

/// Compares the daemon's record of a request with the model's.
fn compare(expected: &Request, actual: &pb::AccessRequest, now: u64) -> Result<(), String> {
    let id = &expected.id;
    ensure!(actual.id == *id, "{} where {id} was expected", actual.id);
    ensure!(
        state(actual) == expected.state.word(),
        "{id} {} where the model has {:?}",
        state(actual),
        expected.state
    );
    ensure!(
        actual.requester == expected.requester && actual.resource == expected.res.name(),
        "{id} is {}'s {}, not {}'s {}",
        actual.requester,
        actual.resource,
        expected.requester,
        expected.res.name()
    );
    ensure!(
        millis(&actual.duration) == Some(expected.duration),
        "{id} lasts {} where the model has {} ms",
        actual.duration,
        expected.duration
    );
    let times = [
        (
            "created_at",
            Some(actual.created_at_ms),
            ms(Some(expected.created)),
        ),
        (
            "decide_by",
            Some(actual.decide_by_ms),
            ms(Some(expected.decide_by())),
        ),
        (
            "approved_at",
            actual.approved_at_ms,
            ms(expected.approved_at),
        ),
        ("granted_at", actual.granted_at_ms, ms(expected.granted_at)),
        ("expires_at", actual.expires_at_ms, ms(expected.expires_at)),
        ("ended_at", actual.ended_at_ms, ms(expected.ended_at)),
    ];
    for (field, actual_at, expected_at) in times {
        ensure!(
            actual_at == expected_at,
            "{id} ({}) {field} {actual_at:?} where the model has {expected_at:?} (now {now})",
            state(actual)
        );
    }
    let route: Vec<Vec<String>> = actual.route.iter().map(|s| s.approvers.clone()).collect();
    let wanted: Vec<Vec<String>> = expected
        .route()
        .iter()
        .map(|s| s.iter().map(|p| p.to_string()).collect())
        .collect();
    ensure!(
        route == wanted,
        "{id} has route {route:?} where the policy gives {wanted:?}"
    );
    if let State::Pending { stage } = expected.state {
        ensure!(
            actual.current_stage as usize == stage,
            "{id} is at stage {} where the model has {stage}",
            actual.current_stage
        );
    }
    let decisions: Vec<(String, String, u32, String, i64)> = actual
        .decisions
        .iter()
        .map(|d| {
            (
                d.approver.clone(),
                d.decision.clone(),
                d.stage,
                d.void.clone(),
                d.at_ms,
            )
        })
        .collect();
    let wanted: Vec<(String, String, u32, String, i64)> = expected
        .decisions
        .iter()
        .map(|d| {
            (
                d.approver.to_owned(),
                if d.approve { "approve" } else { "deny" }.to_owned(),
                u32::try_from(d.stage).unwrap(),
                String::new(),
                i64::try_from(d.at).unwrap(),
            )
        })
        .collect();
    ensure!(
        decisions == wanted,
        "{id} has decisions {decisions:?} where the model has {wanted:?}"
    );
    let extensions: Vec<ExtensionSeen> = actual
        .extensions
        .iter()
        .map(|e| {
            (
                millis(&e.by),
                e.from_ms,
                e.until_ms,
                e.state.clone(),
                e.approved_by.clone(),
            )
        })
        .collect();
    let wanted: Vec<ExtensionSeen> = expected
        .extensions
        .iter()
        .map(|e| {
            (
                Some(e.by),
                i64::try_from(e.from).unwrap(),
                i64::try_from(e.from + e.by).unwrap(),
                e.state.word().to_owned(),
                e.approved_by.iter().map(|p| p.to_string()).collect(),
            )
        })
        .collect();
    ensure!(
        extensions == wanted,
        "{id} has extensions {extensions:?} where the model has {wanted:?}"
    );
    Ok(())
}

/// Waits until the daemon has done everything due at the current time: no deadline in its
/// store is at or before now. Real time passes only while its tasks work; the manual clock
/// stands still, so this never waits out a lease.
async fn settle(daemon: &Daemon, now: Timestamp) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let due: Vec<(Timestamp, RequestId)> = daemon
            .store
            .read(|r| r.deadlines())
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(at, _)| *at <= now)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the daemon did not settle: still due at {now}: {due:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every request, as an auditor lists them.
async fn listed(running: &Running) -> Result<BTreeMap<String, pb::AccessRequest>, String> {
    let mut auditor = running.client(AUDITOR);
    let requests = auditor
        .access
        .list_requests(pb::ListRequestsRequest {
            all: true,
            limit: 1000,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("listing every request: {e}"))?
        .into_inner()
        .requests;
    Ok(requests.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// The invariants after an operation, once the daemon settled (`settle`), or right after a
/// start (recovery must have done what was overdue before the daemon serves).
async fn check(
    env: &Env,
    running: &Running,
    model: &mut Model,
    settle_first: bool,
) -> Result<(), String> {
    let now = env.clock.now();
    ensure!(
        now.unix_millis() == model.now,
        "the clock reads {now}, the model {}",
        model.now
    );
    if settle_first {
        settle(&running.daemon, now).await?;
    }
    let listed = listed(running).await?;
    model.learn(&listed)?;

    // History is never deleted: every request ever made is listed, and as the model has it.
    let ids: BTreeSet<&String> = listed.keys().collect();
    let wanted: BTreeSet<&String> = model.requests.iter().map(|r| &r.id).collect();
    ensure!(
        ids == wanted,
        "the daemon lists {ids:?}; the model made {wanted:?}"
    );
    for request in &model.requests {
        compare(request, &listed[&request.id], model.now)?;
    }

    // The targets grant exactly the leases that hold access.
    let mut granted = BTreeSet::new();
    for res in RESOURCES {
        for holder in env.holders(res.name()) {
            let holder = PEOPLE
                .iter()
                .copied()
                .find(|p| *p == holder)
                .ok_or_else(|| format!("{holder} holds {} and is nobody", res.name()))?;
            granted.insert((res.name(), holder));
        }
    }
    ensure!(
        granted == model.holders(),
        "the targets grant {granted:?}; the leases holding access are {:?}",
        model.holders()
    );

    // No access without the route's approvals: one distinct, eligible approver other than
    // the requester at every stage, as the daemon recorded them.
    for request in listed.values() {
        if !matches!(state(request), "active" | "revoke_failing") {
            continue;
        }
        let mut counted = BTreeSet::new();
        for (index, stage) in request.route.iter().enumerate() {
            let approvals: Vec<&pb::Decision> = request
                .decisions
                .iter()
                .filter(|d| {
                    d.stage as usize == index && d.decision == "approve" && d.void.is_empty()
                })
                .collect();
            ensure!(
                approvals.len() >= stage.quorum as usize,
                "{} holds access with {} approval(s) at stage '{}'",
                request.id,
                approvals.len(),
                stage.name
            );
            for approval in approvals {
                ensure!(
                    approval.approver != request.requester,
                    "{} holds access approved by its requester",
                    request.id
                );
                ensure!(
                    stage.approvers.contains(&approval.approver),
                    "{} was approved at '{}' by {}, who is not eligible there",
                    request.id,
                    stage.name,
                    approval.approver
                );
                ensure!(
                    counted.insert(approval.approver.clone()),
                    "{} counts {} twice",
                    request.id,
                    approval.approver
                );
            }
        }
        // No lease outlives its end once the daemon settled.
        if state(request) == "active" {
            let end = request.expires_at_ms.unwrap_or(0);
            ensure!(
                end > i64::try_from(model.now).unwrap(),
                "{} is active past its end {end} (now {})",
                request.id,
                model.now
            );
        }
    }

    // Nothing is overdue, and the timer wheel holds one timer for each deadline, no more.
    // The writer tells the wheel about a commit just after readers can see it; an empty
    // write job runs only once the batches before it told the wheel.
    running
        .daemon
        .store
        .write(|_| -> Result<_, StoreError> { Ok((Changes::default(), ())) })
        .await
        .map_err(|e| e.to_string())?;
    let deadlines = running
        .daemon
        .store
        .read(|r| r.deadlines())
        .await
        .map_err(|e| e.to_string())?;
    let expiry = &running.daemon.expiry;
    for (at, id) in &deadlines {
        ensure!(*at > now, "{id} is overdue since {at} (now {now})");
        let (_, scheduled) = expiry.inspect(*id).await;
        ensure!(
            scheduled == Some(*at),
            "{id} is due at {at} but its timer is set for {scheduled:?}"
        );
    }
    let (timers, _) = expiry.inspect(RequestId::FIRST).await;
    ensure!(
        timers == deadlines.len(),
        "the wheel holds {timers} timers for {} deadlines",
        deadlines.len()
    );

    // There is never a second grant for one lease.
    ensure!(
        env.grants() == model.grants,
        "the target saw {} grants; the model made {}",
        env.grants(),
        model.grants
    );
    Ok(())
}

/// The audit events after `seen` that concern a request, by request, in order; the last
/// sequence number read.
async fn new_events(
    running: &Running,
    seen: u64,
) -> Result<(BTreeMap<String, Vec<(String, String, u64)>>, u64), String> {
    let events = running
        .daemon
        .store
        .read(move |r| r.events(seen + 1, usize::MAX))
        .await
        .map_err(|e| e.to_string())?;
    let mut last = seen;
    let mut by_request: BTreeMap<String, Vec<(String, String, u64)>> = BTreeMap::new();
    for event in events {
        last = event.seq;
        match event.request {
            Some(id) => by_request.entry(id.to_string()).or_default().push((
                event.action,
                event.actor.to_string(),
                event.at.unix_millis(),
            )),
            None => ensure!(
                matches!(event.action.as_str(), "daemon.started" | "daemon.stopped"),
                "unexpected audit event {} {:?}",
                event.action,
                event.details
            ),
        }
    }
    Ok((by_request, last))
}

/// The events the model added since `before` (each request's action count then).
fn expected_events(
    model: &Model,
    before: &[usize],
) -> BTreeMap<String, Vec<(String, String, u64)>> {
    model
        .requests
        .iter()
        .enumerate()
        .filter_map(|(index, request)| {
            let from = before.get(index).copied().unwrap_or(0);
            let added: Vec<_> = request.actions[from..]
                .iter()
                .map(|(action, actor, at)| ((*action).to_owned(), (*actor).to_owned(), *at))
                .collect();
            (!added.is_empty()).then(|| (request.id.clone(), added))
        })
        .collect()
}

/// One test case: runs `ops` and checks after each; at the end the audit trail of every
/// request is read back whole and the chain verified offline.
fn run_case(ops: &[Op]) -> Result<(), String> {
    let env = Env::new().directory(DIRECTORY);
    let mut model = Model::new(env.clock.now().unix_millis());
    let mut running = Some(Running::start(&env)?);
    let mut seen = 0;
    {
        let current = running.as_ref().unwrap();
        let (_, last) = current.runtime.block_on(new_events(current, seen))?;
        seen = last;
    }
    for (step, op) in ops.iter().enumerate() {
        let before: Vec<usize> = model.requests.iter().map(|r| r.actions.len()).collect();
        let context = |e: String| format!("operation {step} {op:?}: {e}");
        run_op(&env, &mut running, &mut model, op).map_err(context)?;
        let current = running.as_ref().unwrap();
        let restarted = matches!(op, Op::Restart { .. });
        if restarted {
            // Recovery did whatever was overdue before the daemon started serving.
            current
                .runtime
                .block_on(check(&env, current, &mut model, false))
                .map_err(|e| context(format!("right after the start: {e}")))?;
        }
        current
            .runtime
            .block_on(check(&env, current, &mut model, true))
            .map_err(context)?;
        // Every transition the model made is audited, by whom and when; nothing else is.
        let (events, last) = current.runtime.block_on(new_events(current, seen))?;
        seen = last;
        let wanted = expected_events(&model, &before);
        ensure!(
            events == wanted,
            "operation {step} {op:?}: audited {events:?}; the model expected {wanted:?}"
        );
    }
    let current = running.take().unwrap();
    // The whole story of every request, from its submission on.
    for request in &model.requests {
        let actions: Vec<(String, String, u64)> = current
            .runtime
            .block_on(current.daemon.events(&request.id))
            .into_iter()
            .map(|e| (e.action, e.actor.to_string(), e.at.unix_millis()))
            .collect();
        let wanted: Vec<(String, String, u64)> = request
            .actions
            .iter()
            .map(|(action, actor, at)| ((*action).to_owned(), (*actor).to_owned(), *at))
            .collect();
        ensure!(
            actions == wanted,
            "the audit trail of {} is {actions:?}; the model expected {wanted:?}",
            request.id
        );
    }
    current.stop();
    let verified = elevate::store::offline::verify_store(&env.layout.store, None)
        .map_err(|e| format!("the audit chain does not verify: {e}"))?;
    ensure!(
        verified.recorded_key && verified.summary.events > 0,
        "verified {}",
        verified.summary
    );
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        // A failing case is printed shrunk; a regression test is written from it by hand.
        failure_persistence: None,
        max_shrink_iters: 1024,
        ..ProptestConfig::default()
    }
}

/// A few operations about one new request: submitted (valid, mostly routed), then decided
/// on, extended, decided on again, released, with time passing, by whoever `who` picks. They
/// make the long chains (a two-stage approval, an extension and its decision, a repeated
/// decision) common enough to be tried in every run.
fn story() -> impl Strategy<Value = Vec<Op>> {
    let submit = (
        prop_oneof![Just(ENGINEER), Just(ONCALL)],
        prop_oneof![1 => Just(0u8), 3 => Just(1u8), 2 => Just(2u8)],
        0..VALID_DURATIONS,
    )
        .prop_map(|(requester, resource, duration)| Op::Submit {
            requester,
            resource,
            duration,
            reason: true,
            ticket: 1,
        });
    let next = prop_oneof![
        5 => who().prop_map(|by| Op::Approve { request: Pick::Recent(0), by }),
        2 => who().prop_map(|by| Op::Deny { request: Pick::Recent(0), by }),
        3 => (holder(), 0..EXTENSIONS.len() as u8).prop_map(|(by, amount)| Op::Extend {
            request: Pick::Recent(0),
            by,
            amount,
        }),
        1 => holder().prop_map(|by| Op::Release { request: Pick::Recent(0), by }),
        1 => jump().prop_map(Op::Advance),
    ];
    (submit, prop::collection::vec(next, 1..=6))
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
}

/// Up to [`MAX_OPS`] operations: single ones and stories.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![4 => op().prop_map(|op| vec![op]), 1 => story()],
        1..=MAX_OPS,
    )
    .prop_map(|chunks| chunks.into_iter().flatten().take(MAX_OPS).collect())
}

proptest! {
    #![proptest_config(config())]

    /// Random interleavings across principals agree with the model, and every invariant holds
    /// after every operation.
    #[test]
    fn the_daemon_follows_the_model(ops in ops()) {
        run_case(&ops).map_err(TestCaseError::fail)?;
    }
}
