//! Requests for unit tests: a two-stage request and a granted break-glass.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

/// A principal.
pub fn p(name: &str) -> Principal {
    Principal::parse(name).unwrap()
}

/// `secs` seconds after a fixed instant.
pub fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + secs * 1000)
}

/// `n` hours.
pub fn hours(n: u64) -> LeaseDuration {
    LeaseDuration::new(Duration::from_secs(n * 3600)).unwrap()
}

/// `engineer` asks for prod-db-admin for 30 minutes: stage `manager` (manager), then stage
/// `security` (security or manager); pending at the first stage.
pub fn two_stage() -> AccessRequest {
    AccessRequest {
        ssh_key: None,
        id: RequestId::from_raw(7),
        requester: p("engineer"),
        resource: ResourceName::parse("prod-db-admin").unwrap(),
        reason: Some(Reason::parse("INC").unwrap()),
        ticket: None,
        duration: LeaseDuration::new(Duration::from_secs(1800)).unwrap(),
        created_at: t(0),
        decide_by: t(3600),
        route: Route {
            stages: vec![
                RouteStage {
                    name: "manager".into(),
                    quorum: 1,
                    approvers: BTreeSet::from([p("manager")]),
                },
                RouteStage {
                    name: "security".into(),
                    quorum: 1,
                    approvers: BTreeSet::from([p("security"), p("manager")]),
                },
            ],
        },
        policy_version: "sha256:x".into(),
        provisioner: "files".into(),
        decisions: vec![],
        state: State::Pending { stage: 0 },
        approved_at: None,
        granted_at: None,
        expires_at: None,
        ended_at: None,
        end_reason: None,
        break_glass: None,
        notices: Default::default(),
        flagged: None,
        account: None,
        extensions: Vec::new(),
    }
}

/// `oncall` broke glass on prod-db-admin for an hour at `t(1)`: active, review pending, due a
/// day later, reviewed by security, escalated to manager.
pub fn granted_break_glass() -> AccessRequest {
    let request = AccessRequest {
        id: RequestId::from_raw(3),
        requester: p("oncall"),
        route: Route::default(),
        duration: hours(1),
        state: State::Approved {
            attempts: Attempts::due(t(0)),
        },
        approved_at: Some(t(0)),
        break_glass: Some(BreakGlass {
            incident: Ticket::parse("INC-1").unwrap(),
            review_group: GroupName::parse("security").unwrap(),
            review_within: hours(24),
            remind_every: hours(4),
            escalate_to: BTreeSet::from([p("manager")]),
            revoke_on_unjustified: false,
            needed_approval: false,
            review: None,
        }),
        ..two_stage()
    };
    match request.grant_succeeded(t(1), false).unwrap() {
        Transition::Changed(request, _) => request,
        Transition::Unchanged(_) => panic!("not granted"),
    }
}
