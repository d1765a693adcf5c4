//! A request's life from submission to its end: grant, release, cancel, time-out, grant
//! failures.

use std::sync::atomic::Ordering;
use std::time::Duration;

use elevate::proto::v1 as pb;
use tonic::Code;

use super::harness::*;

#[tokio::test]
async fn auto_approved_request_is_granted_and_release_takes_it_away() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;

    let granted = request(&mut engineer, "staging-db", "30m", "check replication", "")
        .await
        .unwrap();
    assert_eq!(state(&granted), "active");
    assert_eq!(env.holders("staging-db"), ["engineer"]);
    let granted_at = at(granted.granted_at_ms.unwrap());
    assert_eq!(
        at(granted.expires_at_ms.unwrap()).saturating_duration_since(granted_at),
        Duration::from_secs(30 * 60)
    );

    let released = release(&mut engineer, &granted.id).await.unwrap();
    assert_eq!(state(&released), "released");
    assert!(env.holders("staging-db").is_empty());
    // Repeating the release returns the first result and touches nothing.
    let again = release(&mut engineer, &granted.id).await.unwrap();
    assert_eq!(state(&again), "released");
    assert_eq!(again.ended_at_ms, released.ended_at_ms);
    assert_eq!(env.targets.revokes.load(Ordering::SeqCst), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn a_new_request_for_a_resource_already_held_is_refused() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let first = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    let error = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    assert!(error.message().contains(&first.id), "{}", error.message());
    release(&mut engineer, &first.id).await.unwrap();
    let second = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&second), "active");
    daemon.stop().await;
}

#[tokio::test]
async fn the_requester_can_cancel_a_pending_request_and_only_then() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let pending = request(&mut engineer, "prod-db-read", "1h", "debug", "")
        .await
        .unwrap();

    let error = manager
        .access
        .cancel_request(pb::CancelRequestRequest {
            id: pending.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    let cancelled = engineer
        .access
        .cancel_request(pb::CancelRequestRequest {
            id: pending.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(state(&cancelled), "cancelled");
    let error = approve(&mut manager, &pending.id).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert_eq!(env.grants(), 0);
    daemon.stop().await;
}

#[tokio::test]
async fn a_pending_request_times_out_after_its_ttl() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let pending = request(&mut engineer, "prod-db-read", "1h", "debug", "")
        .await
        .unwrap();
    env.advance(Duration::from_secs(59 * 60));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(state(&status(&mut engineer, &pending.id).await), "pending");
    env.advance(Duration::from_secs(60));
    let timed_out = until_state(&engineer, &pending.id, "timed_out").await;
    assert!(
        timed_out
            .end_reason
            .contains("no decision at stage 'manager'"),
        "{}",
        timed_out.end_reason
    );
    let mut manager = daemon.client("manager").await;
    assert_eq!(
        approve(&mut manager, &pending.id).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    daemon.stop().await;
}

#[tokio::test]
async fn no_decision_is_accepted_after_the_deadline() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let pending = request(&mut engineer, "prod-db-read", "1h", "debug", "")
        .await
        .unwrap();
    env.advance(Duration::from_secs(3600));
    // Whether or not the timer recorded the time-out yet, the approval is refused (the check
    // made before the timer gets there is covered by model::state's unit tests).
    let error = approve(&mut manager, &pending.id).await.unwrap_err();
    assert_eq!(
        error.code(),
        Code::FailedPrecondition,
        "{}",
        error.message()
    );
    until_state(&engineer, &pending.id, "timed_out").await;
    assert_eq!(env.grants(), 0);
    assert!(env.holders("prod-db-read").is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn a_failing_grant_is_retried_and_never_shown_active_without_access() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    env.targets.fail_grants.store(1, Ordering::SeqCst);

    let approved = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    assert_eq!(state(&approved), "approved");
    assert_eq!(approved.attempts, 1);
    assert!(
        approved.last_error.contains("target unreachable"),
        "{}",
        approved.last_error
    );
    assert!(env.holders("staging-db").is_empty());

    env.advance(RETRY_MAX);
    let active = until_state(&engineer, &approved.id, "active").await;
    assert_eq!(env.holders("staging-db"), ["engineer"]);
    assert_eq!(env.grants(), 2);
    assert_eq!(
        daemon.actions(&active.id).await,
        [
            "request.submitted",
            "request.approved",
            "lease.grant_failed",
            "lease.granted"
        ]
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_grant_that_keeps_failing_ends_failed_after_cleaning_up() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    env.targets.fail_grants.store(100, Ordering::SeqCst);

    let approved = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    for _ in 0..2 {
        env.advance(RETRY_MAX);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = until_state(&engineer, &approved.id, "failed").await;
    assert_eq!(env.grants(), 3, "grant_attempts is 3 in tests");
    assert_eq!(
        env.targets.revokes.load(Ordering::SeqCst),
        1,
        "leftovers are revoked"
    );
    assert!(
        failed.end_reason.contains("target unreachable"),
        "{}",
        failed.end_reason
    );
    assert!(env.holders("staging-db").is_empty());
    assert_eq!(
        daemon.actions(&failed.id).await.last().unwrap(),
        "request.failed"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_call_sent_again_with_its_idempotency_key_gets_the_first_outcome() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let submit = pb::SubmitRequestRequest {
        ssh_key: String::new(),
        resource: "staging-db".into(),
        duration: "30m".into(),
        reason: "check replication".into(),
        ticket: String::new(),
    };
    let answer = |response: tonic::Response<pb::SubmitRequestResponse>| {
        response.into_inner().request.unwrap()
    };
    let first = answer(
        engineer
            .access
            .submit_request(keyed(submit.clone(), "k-1"))
            .await
            .unwrap(),
    );
    assert_eq!(state(&first), "active");
    let again = answer(
        engineer
            .access
            .submit_request(keyed(submit.clone(), "k-1"))
            .await
            .unwrap(),
    );
    assert_eq!(again.id, first.id);
    assert_eq!(env.grants(), 1);
    // Without the key it is a second request, refused as one.
    let refused = engineer
        .access
        .submit_request(submit.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists);

    // The same key for another call (other arguments, another method, another caller).
    let mut oncall = daemon.client("oncall").await;
    for (what, status) in [
        (
            "other arguments",
            engineer
                .access
                .submit_request(keyed(
                    pb::SubmitRequestRequest {
                        duration: "1h".into(),
                        ..submit.clone()
                    },
                    "k-1",
                ))
                .await
                .unwrap_err(),
        ),
        (
            "another method",
            engineer
                .access
                .release_lease(keyed(
                    pb::ReleaseLeaseRequest {
                        id: first.id.clone(),
                    },
                    "k-1",
                ))
                .await
                .unwrap_err(),
        ),
        (
            "another caller",
            oncall
                .access
                .submit_request(keyed(submit.clone(), "k-1"))
                .await
                .unwrap_err(),
        ),
    ] {
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains("'k-1' was used for another call"),
            "{what}: {status:?}"
        );
    }
    assert_eq!(state(&status(&mut engineer, &first.id).await), "active");
    assert!(env.holders("staging-db").contains(&"engineer".to_owned()));

    // Keys the daemon cannot take are refused, naming the header.
    for bad in ["", "has space", &"k".repeat(129), "ключ"] {
        let mut request = tonic::Request::new(pb::ReleaseLeaseRequest {
            id: first.id.clone(),
        });
        let Ok(value) = bad.parse() else { continue };
        request.metadata_mut().insert("idempotency-key", value);
        let status = engineer.access.release_lease(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
        assert!(status.message().contains("idempotency-key"), "{status:?}");
    }
    assert_eq!(state(&status(&mut engineer, &first.id).await), "active");

    // A release sent again after it took effect answers as the first did.
    let release = pb::ReleaseLeaseRequest {
        id: first.id.clone(),
    };
    let released = engineer
        .access
        .release_lease(keyed(release.clone(), "k-2"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    let released_again = engineer
        .access
        .release_lease(keyed(release, "k-2"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(state(&released_again), "released");
    assert_eq!(released_again.ended_at_ms, released.ended_at_ms);
    assert_eq!(env.targets.revokes.load(Ordering::SeqCst), 1);
    daemon.stop().await;
}
