//! Every state change is recorded by an audit event written with it, and the events form an
//! unbroken hash chain.

use std::time::Duration;

use elevate::audit::{Actor, Event, GENESIS};

use super::harness::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn each_request_has_its_exact_story_and_the_chain_is_intact() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut security = daemon.client("security").await;

    let auto = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    let routed = request(&mut engineer, "prod-db-admin", "30m", "fix", "INC-9")
        .await
        .unwrap();
    approve(&mut manager, &routed.id).await.unwrap();
    approve(&mut security, &routed.id).await.unwrap();
    release(&mut engineer, &routed.id).await.unwrap();
    env.advance(Duration::from_secs(30 * 60));
    until_state(&engineer, &auto.id, "expired").await;

    assert_eq!(
        daemon.actions(&auto.id).await,
        [
            "request.submitted",
            "request.approved",
            "lease.granted",
            "lease.expired"
        ]
    );
    let routed_events = daemon.events(&routed.id).await;
    let story: Vec<(String, String)> = routed_events
        .iter()
        .map(|e| (e.action.clone(), e.actor.to_string()))
        .collect();
    let expected = [
        ("request.submitted", "engineer"),
        ("request.approval", "manager"),
        ("request.approval", "security"),
        ("request.approved", "security"),
        ("lease.granted", "elevated"),
        ("lease.released", "engineer"),
    ];
    assert_eq!(
        story,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
    );
    let submitted = &routed_events[0];
    assert_eq!(submitted.details["ticket"], "INC-9");
    assert!(submitted.details["route"].starts_with("manager:1/[manager] security:1/[security]"));
    assert!(submitted.details["policy_version"].starts_with("sha256:"));
    assert_eq!(routed_events[1].details["stage_name"], "manager");
    assert_eq!(
        routed_events[5].actor,
        Actor::Principal("engineer".parse().unwrap())
    );

    // The whole log: sequence numbers without gaps, each event linked to the previous hash.
    let all: Vec<Event> = daemon.all_events().await;
    assert_eq!(all.len(), 11);
    assert_eq!(all[0].action, "daemon.started");
    let mut previous = hex(&GENESIS);
    for (index, event) in all.iter().enumerate() {
        assert_eq!(event.seq, index as u64 + 1);
        assert_eq!(event.prev_hash, previous);
        assert_eq!(
            event.expected_hash().map(|h| hex(&h)),
            Some(event.hash.clone())
        );
        previous = event.hash.clone();
    }
    daemon.stop().await;
}
