//! Graceful shutdown: in-flight grants finish and are recorded; request watchers and health
//! watchers are let go, the latter told NOT_SERVING first.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use elevate::proto::v1 as pb;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_in_flight_at_shutdown_is_finished_and_recorded() {
    let env = Env::new();
    let daemon = env.start().await;
    let engineer = daemon.client("engineer").await;
    env.targets.grant_delay_ms.store(300, Ordering::SeqCst);
    let submitting = {
        let mut engineer = engineer.clone();
        tokio::spawn(async move { request(&mut engineer, "staging-db", "30m", "", "").await })
    };
    until("the grant to be in flight", || async {
        (env.grants() == 1).then_some(())
    })
    .await;
    daemon.stop().await;
    // The caller may or may not have had its answer; the grant was recorded either way.
    let _ = submitting.await;
    assert_eq!(env.holders("staging-db"), ["engineer"]);

    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let listed = listed(&mut engineer).await;
    assert_eq!(state(&listed[0]), "active");
    assert_eq!(env.grants(), 1, "recorded, so not granted again at startup");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_watch_streams_do_not_hold_up_shutdown() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let pending = request(&mut engineer, "prod-db-read", "1h", "debug", "")
        .await
        .unwrap();
    let mut updates = engineer
        .access
        .watch_request(pb::WatchRequestRequest {
            id: pending.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(&updates.message().await.unwrap().unwrap().request.unwrap()),
        "pending"
    );
    // A client-side health checker watching the server, as load balancers do.
    let files = daemon.files("engineer");
    let channel = channel(
        &daemon.endpoint(),
        &files.ca,
        Some((&files.cert, &files.key)),
    )
    .await
    .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    assert_eq!(health.message().await.unwrap().unwrap().status, serving);

    let endpoint = daemon.endpoint();
    let started = Instant::now();
    daemon.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown waited {:?} for a watch stream (grace is 5 s)",
        started.elapsed()
    );
    assert!(updates.message().await.is_err() || updates.message().await.unwrap().is_none());
    assert_eq!(
        health.message().await.unwrap().unwrap().status,
        not_serving,
        "told before it ends"
    );
    assert!(matches!(health.message().await, Ok(None) | Err(_)));
    // Nothing listens any more.
    assert!(
        elevate::cli::client::connect(&endpoint, &files)
            .await
            .is_err()
    );
}
