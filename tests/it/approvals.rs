//! Routed approval: stages in order, no self-approval, one person counts once, one deny ends it.

use tonic::Code;

use super::harness::*;
use elevate::proto::v1 as pb;

#[tokio::test]
async fn two_stages_manager_then_security() {
    let env = Env::new().directory(DIRECTORY);
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut security = daemon.client("security").await;

    let pending = request(
        &mut engineer,
        "prod-db-admin",
        "45m",
        "INC-4411 fix index",
        "INC-4411",
    )
    .await
    .unwrap();
    assert_eq!(state(&pending), "pending");
    assert_eq!(pending.route.len(), 2);
    assert_eq!(pending.route[0].approvers, ["manager"]);
    assert_eq!(pending.route[1].approvers, ["manager", "security"]);

    // The requester cannot approve their own request.
    let error = approve(&mut engineer, &pending.id).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains("your own request"),
        "{}",
        error.message()
    );

    // Security is eligible only at the second stage.
    let error = approve(&mut security, &pending.id).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains("stage 'security'"),
        "{}",
        error.message()
    );

    let after_manager = approve(&mut manager, &pending.id).await.unwrap();
    assert_eq!(state(&after_manager), "pending");
    assert_eq!(after_manager.current_stage, 1);

    // The same person cannot satisfy the second stage too.
    let error = approve(&mut manager, &pending.id).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains("one person counts once"),
        "{}",
        error.message()
    );
    assert!(env.holders("prod-db-admin").is_empty());

    let active = approve(&mut security, &pending.id).await.unwrap();
    assert_eq!(state(&active), "active");
    assert_eq!(env.holders("prod-db-admin"), ["engineer"]);
    let approvers: Vec<&str> = active
        .decisions
        .iter()
        .map(|d| d.approver.as_str())
        .collect();
    assert_eq!(approvers, ["manager", "security"]);

    // A repeated approval returns the request as it is.
    let again = approve(&mut security, &pending.id).await.unwrap();
    assert_eq!(state(&again), "active");
    assert_eq!(again.decisions.len(), 2);
    assert_eq!(env.grants(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn a_deny_ends_it_and_approval_after_deny_fails() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut security = daemon.client("security").await;

    let pending = request(&mut engineer, "prod-db-admin", "30m", "migration", "CHG-12")
        .await
        .unwrap();
    let error = deny(&mut manager, &pending.id, "").await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "a deny needs a reason");

    let denied = deny(&mut manager, &pending.id, "use the read replica")
        .await
        .unwrap();
    assert_eq!(state(&denied), "denied");
    assert_eq!(denied.end_reason, "denied by manager: use the read replica");

    let error = approve(&mut manager, &pending.id).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    let error = approve(&mut security, &pending.id).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("it is denied"),
        "{}",
        error.message()
    );
    // Denying again is idempotent.
    assert_eq!(
        state(&deny(&mut manager, &pending.id, "again").await.unwrap()),
        "denied"
    );
    assert_eq!(env.grants(), 0);
    assert_eq!(
        daemon.actions(&pending.id).await,
        ["request.submitted", "request.denied"]
    );
    daemon.stop().await;
}

#[tokio::test]
async fn pending_shows_what_waits_for_each_approver() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut oncall = daemon.client("oncall").await;
    let mut manager = daemon.client("manager").await;
    let mut security = daemon.client("security").await;

    let read = request(&mut engineer, "prod-db-read", "1h", "debug", "")
        .await
        .unwrap();
    let admin = request(&mut oncall, "prod-db-admin", "30m", "fix", "INC-1")
        .await
        .unwrap();

    let pending = |requests: Vec<pb::AccessRequest>| -> Vec<String> {
        requests.into_iter().map(|r| r.id).collect()
    };
    let listed = manager
        .approval
        .list_pending(pb::ListPendingRequest {})
        .await
        .unwrap();
    assert_eq!(
        pending(listed.into_inner().requests),
        [read.id.clone(), admin.id.clone()]
    );
    let listed = security
        .approval
        .list_pending(pb::ListPendingRequest {})
        .await
        .unwrap();
    assert!(
        listed.into_inner().requests.is_empty(),
        "security is not at the current stage yet"
    );

    approve(&mut manager, &admin.id).await.unwrap();
    let listed = manager
        .approval
        .list_pending(pb::ListPendingRequest {})
        .await
        .unwrap();
    assert_eq!(
        pending(listed.into_inner().requests),
        std::slice::from_ref(&read.id)
    );
    let listed = security
        .approval
        .list_pending(pb::ListPendingRequest {})
        .await
        .unwrap();
    assert_eq!(
        pending(listed.into_inner().requests),
        std::slice::from_ref(&admin.id)
    );

    // Requests are visible to requester, approvers, auditors; to others they do not exist.
    let error = oncall
        .access
        .get_request(pb::GetRequestRequest {
            id: read.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(error.message(), format!("no request {}", read.id));
    let mut auditor = daemon.client("auditor").await;
    assert_eq!(status(&mut auditor, &read.id).await.id, read.id);
    let all = auditor
        .access
        .list_requests(pb::ListRequestsRequest {
            all: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert_eq!(all.len(), 2);
    let error = engineer
        .access
        .list_requests(pb::ListRequestsRequest {
            all: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    daemon.stop().await;
}
