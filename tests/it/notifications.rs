//! Notifications reach people: approvers, requesters, holders; through a real webhook with
//! retries, from the outbox after a restart, and never at the cost of a grant.

use std::time::{Duration, Instant};

use elevate::clock::Clock;

use super::harness::*;
use super::http::{Answer, Hook};

#[tokio::test]
async fn approvers_are_told_and_reminded_and_requesters_hear_the_decision() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let pending = request(&mut engineer, "prod-db-read", "1h", "slow queries", "")
        .await
        .unwrap();
    let waiting = env.delivered("request.waiting", &pending.id).await;
    assert_eq!(waiting["recipients"], serde_json::json!(["manager"]));
    assert!(
        waiting["text"]
            .as_str()
            .unwrap()
            .contains("engineer asks for prod-db-read")
    );

    // Dev mode reminds after 30 minutes.
    env.advance(Duration::from_secs(30 * 60));
    let reminder = env.delivered("request.reminder", &pending.id).await;
    assert_eq!(reminder["recipients"], serde_json::json!(["manager"]));

    let active = approve(&mut manager, &pending.id).await.unwrap();
    let decided = env.delivered("request.decided", &pending.id).await;
    assert_eq!(decided["recipients"], serde_json::json!(["engineer"]));
    assert!(decided["text"].as_str().unwrap().contains("was approved"));
    env.delivered("access.granted", &pending.id).await;
    // No more reminders once decided.
    env.advance(Duration::from_secs(30 * 60));
    assert_eq!(env.count("request.reminder", &pending.id), 1);

    // Five minutes before the end (dev mode), then at the end.
    let expires = at(active.expires_at_ms.unwrap());
    let now = env.clock.now();
    env.advance(
        expires
            .saturating_sub(Duration::from_secs(5 * 60))
            .saturating_duration_since(now),
    );
    env.delivered("access.expiring", &pending.id).await;
    assert_eq!(state(&status(&mut engineer, &pending.id).await), "active");
    env.advance(Duration::from_secs(5 * 60));
    let expired = env.delivered("access.expired", &pending.id).await;
    assert_eq!(expired["request"]["state"], "expired");
    daemon.stop().await;
}

#[tokio::test]
async fn a_webhook_that_answers_500_gets_the_event_again() {
    let hook = Hook::start(vec![Answer::Status(500)]).await;
    let env = Env::new();
    env.webhook(&hook.url);
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let granted = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    until("the first attempt", || async {
        (hook.scripted() == 0).then_some(())
    })
    .await;
    assert!(hook.accepted().is_empty());
    // The failure is committed with its retry time (from the clock as it was) before the
    // clock moves on, or the retry would be due only after a later move.
    until("the failed attempt to be recorded", || async {
        let far = elevate::model::Timestamp::from_unix_millis(u64::MAX / 2);
        let queued = daemon
            .store
            .read(move |r| r.outbox_due(far, 100, &Default::default(), 1000))
            .await
            .unwrap();
        queued
            .due
            .iter()
            .any(|(_, outgoing)| outgoing.attempts >= 1)
            .then_some(())
    })
    .await;

    env.advance(RETRY_MAX);
    let body = until("the retry", || async { hook.accepted().into_iter().next() }).await;
    assert_eq!(body["kind"], "access.granted");
    assert_eq!(body["recipients"], serde_json::json!(["engineer"]));
    assert_eq!(body["request"]["id"], granted.id);
    assert_eq!(body["request"]["resource"], "staging-db");
    assert!(
        body["id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:access.granted:", granted.id))
    );
    // Delivered entries leave the outbox (committed right after the answer).
    until("the outbox to empty", || async {
        let left = daemon.store.read(|r| r.outbox_len()).await.unwrap();
        (left == 0).then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn notifications_queued_before_a_restart_are_delivered_after_it() {
    let hook = Hook::start(vec![Answer::Status(503)]).await;
    let env = Env::new();
    env.webhook(&hook.url);
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let granted = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    until("the first attempt", || async {
        (hook.scripted() == 0).then_some(())
    })
    .await;
    daemon.stop().await;
    assert!(hook.accepted().is_empty());

    let daemon = env.start().await;
    assert_eq!(daemon.store.read(|r| r.outbox_len()).await.unwrap(), 1);
    env.advance(RETRY_MAX);
    let body = until("delivery after the restart", || async {
        hook.accepted().into_iter().next()
    })
    .await;
    assert_eq!(body["request"]["id"], granted.id);
    daemon.stop().await;
}

#[tokio::test]
async fn a_dead_webhook_never_blocks_a_grant() {
    let hook = Hook::start(vec![Answer::Hang; 50]).await;
    let env = Env::new();
    env.webhook(&hook.url);
    let daemon = env.start().await;
    let started = Instant::now();
    let mut granted = Vec::new();
    for name in ["engineer", "oncall"] {
        let mut client = daemon.client(name).await;
        let request = request(&mut client, "staging-db", "30m", "", "")
            .await
            .unwrap();
        assert_eq!(state(&request), "active");
        granted.push(request.id);
    }
    // The webhook hangs for its 2 s timeout per attempt: the grants did not wait for it, and
    // the other notifier (the dev-mode file) was not held up behind it either.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.holders("staging-db").len(), 2);
    for id in &granted {
        env.delivered("access.granted", id).await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_webhook_over_https_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    elevate::tls::issue::init(certs.path(), &[], false).unwrap();
    let hook = Hook::start_tls(Vec::new(), certs.path()).await;
    let env = Env::new();
    env.webhook_trusting(&hook.url, certs.path().join("ca.crt"));
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let granted = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    let body = until("delivery over https", || async {
        hook.accepted().into_iter().next()
    })
    .await;
    assert_eq!(body["request"]["id"], granted.id);
    daemon.stop().await;
}

#[tokio::test]
async fn an_undeliverable_notification_is_dropped_and_the_drop_audited() {
    let hook = Hook::start(vec![Answer::Status(500); 100]).await;
    let env = Env::new();
    env.webhook(&hook.url);
    *env.give_up_after.lock().unwrap() = Some(Duration::from_secs(60));
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let granted = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    let dropped = until("the drop", || {
        // Each retry needs the clock to move on; after a minute the notification is dropped.
        env.advance(RETRY_MAX);
        let daemon = &daemon;
        let id = granted.id.clone();
        async move {
            daemon
                .events(&id)
                .await
                .into_iter()
                .find(|e| e.action == "notification.dropped")
        }
    })
    .await;
    assert_eq!(dropped.details["notifier"], "hook");
    assert_eq!(dropped.details["event"], "access.granted");
    assert!(
        dropped.details["error"].contains("answered 500"),
        "{:?}",
        dropped.details
    );
    assert!(
        !dropped.details["error"].contains("hooks/elevate"),
        "the URL path is never recorded"
    );
    assert!(hook.accepted().is_empty());
    daemon.stop().await;
}
