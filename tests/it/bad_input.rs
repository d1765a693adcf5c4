//! Every bad input gets the right status code, a message that says what is wrong, and changes
//! nothing.

use elevate::proto::v1 as pb;
use tonic::Code;

use super::harness::*;

/// What the store holds, to compare before and after refused calls.
async fn fingerprint(daemon: &Daemon) -> (usize, Vec<(String, String)>) {
    let events = daemon.all_events().await.len();
    let mut auditor = daemon.client("auditor").await;
    let requests = auditor
        .access
        .list_requests(pb::ListRequestsRequest {
            all: true,
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .requests
        .into_iter()
        .map(|r| (r.id.clone(), format!("{}:{}", state(&r), r.decisions.len())))
        .collect();
    (events, requests)
}

#[tokio::test]
async fn bad_submissions_are_refused_with_the_right_code() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut auditor = daemon.client("auditor").await;
    // Some state to protect.
    request(&mut engineer, "prod-db-read", "1h", "debug", "")
        .await
        .unwrap();
    let before = fingerprint(&daemon).await;

    let long = "x".repeat(1025);
    let cases: Vec<(&str, &str, &str, &str, Code, &str)> = vec![
        (
            "nope",
            "1h",
            "r",
            "",
            Code::NotFound,
            "unknown resource 'nope'",
        ),
        (
            "bad name!",
            "1h",
            "r",
            "",
            Code::InvalidArgument,
            "invalid resource name",
        ),
        (
            "staging-db",
            "soon",
            "",
            "",
            Code::InvalidArgument,
            "invalid duration 'soon'",
        ),
        (
            "staging-db",
            "-5m",
            "",
            "",
            Code::InvalidArgument,
            "invalid duration",
        ),
        (
            "staging-db",
            "0s",
            "",
            "",
            Code::InvalidArgument,
            "must be longer than zero",
        ),
        (
            "staging-db",
            "9h",
            "",
            "",
            Code::InvalidArgument,
            "exceeds the maximum of 8h",
        ),
        (
            "staging-db",
            "10s",
            "",
            "",
            Code::InvalidArgument,
            "shorter than the minimum of 1m",
        ),
        (
            "prod-db-admin",
            "30m",
            "",
            "INC-1",
            Code::InvalidArgument,
            "requires a reason",
        ),
        (
            "prod-db-admin",
            "30m",
            "fix",
            "",
            Code::InvalidArgument,
            "requires a ticket",
        ),
        (
            "prod-db-admin",
            "30m",
            "fix",
            "inc-1",
            Code::InvalidArgument,
            "does not match ^[A-Z]+-[0-9]+$",
        ),
        (
            "prod-db-admin",
            "30m",
            &long,
            "INC-1",
            Code::InvalidArgument,
            "reason is too long",
        ),
        (
            "prod-db-admin",
            "30m",
            "fix\u{7}",
            "INC-1",
            Code::InvalidArgument,
            "control characters",
        ),
    ];
    for (resource, duration, reason, ticket, code, message) in cases {
        let error = request(&mut engineer, resource, duration, reason, ticket)
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            code,
            "{resource} {duration}: {}",
            error.message()
        );
        assert!(
            error.message().contains(message),
            "{resource} {duration}: {}",
            error.message()
        );
    }
    // Not eligible.
    let error = request(&mut auditor, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains("members of engineering, sre"),
        "{}",
        error.message()
    );

    // An oversize field is named; a message beyond 1 MiB is refused before it is parsed.
    let error = request(&mut engineer, "staging-db", "1h", &"y".repeat(100_000), "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{}", error.message());
    assert!(
        error
            .message()
            .contains("reason is too long: 100000 characters, at most 1024"),
        "{}",
        error.message()
    );
    let error = request(&mut engineer, "staging-db", "1h", "", &"t".repeat(2 << 20))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::OutOfRange, "{}", error.message());

    assert_eq!(fingerprint(&daemon).await, before);
    daemon.stop().await;
}

#[tokio::test]
async fn bad_decisions_are_refused_with_the_right_code() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut security = daemon.client("security").await;
    let mut oncall = daemon.client("oncall").await;
    let mut auditor = daemon.client("auditor").await;
    let pending = request(&mut engineer, "prod-db-admin", "30m", "fix", "INC-1")
        .await
        .unwrap();
    let active = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    // A lease the manager approved, so may see.
    let approved = request(&mut engineer, "prod-db-read", "30m", "read", "")
        .await
        .unwrap();
    let approved = approve(&mut manager, &approved.id).await.unwrap();
    assert_eq!(state(&approved), "active");
    let before = fingerprint(&daemon).await;

    let cases: Vec<(Result<pb::AccessRequest, tonic::Status>, Code, &str)> = vec![
        (
            approve(&mut manager, "").await,
            Code::InvalidArgument,
            "a request id is required",
        ),
        (
            approve(&mut manager, "req-x").await,
            Code::InvalidArgument,
            "invalid request id",
        ),
        (
            approve(&mut manager, "req-999").await,
            Code::NotFound,
            "no request req-999",
        ),
        (
            approve(&mut engineer, &pending.id).await,
            Code::PermissionDenied,
            "your own request",
        ),
        (
            approve(&mut auditor, &pending.id).await,
            Code::PermissionDenied,
            "not an eligible approver",
        ),
        (
            approve(&mut oncall, &pending.id).await,
            Code::NotFound,
            "no request",
        ),
        (
            approve(&mut security, &pending.id).await,
            Code::PermissionDenied,
            "is at stage 'manager'",
        ),
        (
            deny(&mut security, &pending.id, "no").await,
            Code::PermissionDenied,
            "is at stage 'manager'",
        ),
        (
            approve(&mut auditor, &approved.id).await,
            Code::FailedPrecondition,
            "it is active",
        ),
        (
            release(&mut manager, &approved.id).await,
            Code::PermissionDenied,
            "only the requester",
        ),
        // The manager has no part in the auto-approved lease: it does not exist for them.
        (
            approve(&mut manager, &active.id).await,
            Code::NotFound,
            "no request",
        ),
        (
            release(&mut manager, &active.id).await,
            Code::NotFound,
            "no request",
        ),
        (
            release(&mut engineer, &pending.id).await,
            Code::FailedPrecondition,
            "cancel it instead",
        ),
    ];
    for (index, (result, code, message)) in cases.into_iter().enumerate() {
        let error = result.unwrap_err();
        assert_eq!(error.code(), code, "case {index}: {}", error.message());
        assert!(
            error.message().contains(message),
            "case {index}: {}",
            error.message()
        );
    }
    let error = engineer
        .access
        .cancel_request(pb::CancelRequestRequest {
            id: active.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("release it instead"),
        "{}",
        error.message()
    );
    let error = engineer
        .access
        .list_requests(pb::ListRequestsRequest {
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = engineer
        .access
        .list_requests(pb::ListRequestsRequest {
            state: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    for (by, reason, code, message) in [
        (
            "1h",
            "",
            Code::InvalidArgument,
            "reason: a reason is required",
        ),
        ("", "more", Code::InvalidArgument, "by: say how much longer"),
        ("soon", "more", Code::InvalidArgument, "by:"),
        ("30d", "more", Code::InvalidArgument, "allows at most"),
    ] {
        let error = engineer
            .access
            .extend_lease(pb::ExtendLeaseRequest {
                id: active.id.clone(),
                by: by.into(),
                reason: reason.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), code, "{by} {reason}: {}", error.message());
        assert!(
            error.message().contains(message),
            "{by} {reason}: {}",
            error.message()
        );
    }
    let error = engineer
        .access
        .extend_lease(pb::ExtendLeaseRequest {
            id: pending.id.clone(),
            by: "10m".into(),
            reason: "more".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Code::FailedPrecondition,
        "{}",
        error.message()
    );

    assert_eq!(fingerprint(&daemon).await, before);
    daemon.stop().await;
}
