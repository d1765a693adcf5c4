//! State survives a restart; a lease that expired while the daemon was stopped is revoked at
//! startup, before the daemon serves.

use std::time::Duration;

use elevate::model::RequestId;

use super::harness::*;

#[tokio::test]
async fn state_survives_and_overdue_leases_are_revoked_first() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let short = request(&mut engineer, "staging-db", "10m", "", "")
        .await
        .unwrap();
    let long = request(&mut engineer, "prod-db-read", "2h", "investigate", "")
        .await
        .unwrap();
    approve(&mut manager, &long.id).await.unwrap();
    let mut oncall = daemon.client("oncall").await;
    let waiting = request(&mut oncall, "prod-db-read", "1h", "check", "")
        .await
        .unwrap();
    daemon.stop().await;

    // Twenty minutes pass while the daemon is down.
    env.advance(Duration::from_secs(20 * 60));
    let daemon = env.start().await;
    // Recovery ran inside build: the short lease is already gone from the target.
    assert!(env.holders("staging-db").is_empty());
    assert_eq!(env.holders("prod-db-read"), ["engineer"]);

    let mut engineer = daemon.client("engineer").await;
    let expired = status(&mut engineer, &short.id).await;
    assert_eq!(state(&expired), "expired");
    let events = daemon.events(&short.id).await;
    let lag: u64 = events.last().unwrap().details["lag_ms"].parse().unwrap();
    assert_eq!(
        lag,
        10 * 60 * 1000,
        "the lag while stopped is recorded, not hidden"
    );

    let still = status(&mut engineer, &long.id).await;
    assert_eq!(state(&still), "active");
    assert_eq!(still.decisions.len(), 1);
    let mut oncall = daemon.client("oncall").await;
    assert_eq!(state(&status(&mut oncall, &waiting.id).await), "pending");

    // The wheel was rebuilt: the long lease and the pending time-out are scheduled once each.
    let id: RequestId = long.id.parse().unwrap();
    let (scheduled, deadline) = daemon.expiry.inspect(id).await;
    assert_eq!(scheduled, 2);
    let warning = at(still.expires_at_ms.unwrap()).saturating_sub(Duration::from_secs(5 * 60));
    assert_eq!(deadline, Some(warning), "the early warning comes first");

    env.advance(Duration::from_secs(100 * 60));
    until_state(&engineer, &long.id, "expired").await;
    assert!(env.holders("prod-db-read").is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn an_approved_request_interrupted_before_its_grant_is_granted_at_startup() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    env.targets
        .fail_grants
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let approved = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    assert_eq!(state(&approved), "approved");
    daemon.stop().await;

    env.advance(RETRY_MAX);
    let daemon = env.start().await;
    assert_eq!(env.holders("staging-db"), ["engineer"]);
    let mut engineer = daemon.client("engineer").await;
    assert_eq!(state(&status(&mut engineer, &approved.id).await), "active");
    daemon.stop().await;
}
