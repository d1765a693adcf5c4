//! Expiry on time with a manual clock, and revokes that fail and are retried.

use std::sync::atomic::Ordering;
use std::time::Duration;

use elevate::model::RequestId;

use super::harness::*;

#[tokio::test]
async fn a_lease_is_revoked_on_the_target_at_its_expiry() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let active = request(&mut engineer, "staging-db", "45m", "", "")
        .await
        .unwrap();
    let id: RequestId = active.id.parse().unwrap();
    let (scheduled, deadline) = daemon.expiry.inspect(id).await;
    assert_eq!(scheduled, 1, "one timer for one lease");
    // Its first deadline is the holder's early warning (dev mode: 5 minutes before the end).
    let expires = at(active.expires_at_ms.unwrap());
    assert_eq!(
        deadline,
        Some(expires.saturating_sub(Duration::from_secs(5 * 60)))
    );

    env.advance(Duration::from_secs(45 * 60 - 1));
    // The early warning went out on the way; the expiry itself is still ahead.
    env.delivered("access.expiring", &active.id).await;
    daemon
        .assert_still_scheduled(&active.id, at(active.expires_at_ms.unwrap()))
        .await;
    assert_eq!(state(&status(&mut engineer, &active.id).await), "active");
    assert_eq!(env.holders("staging-db"), ["engineer"]);

    env.advance(Duration::from_secs(1));
    let expired = until_state(&engineer, &active.id, "expired").await;
    assert!(env.holders("staging-db").is_empty());
    assert_eq!(expired.ended_at_ms, Some(active.expires_at_ms.unwrap()));
    assert_eq!(daemon.expiry.inspect(id).await, (0, None));
    let events = daemon.events(&active.id).await;
    let last = events.last().unwrap();
    assert_eq!(last.action, "lease.expired");
    assert_eq!(last.details["lag_ms"], "0");
    daemon.stop().await;
}

#[tokio::test]
async fn a_revoke_that_fails_twice_is_retried_until_the_target_confirms() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let active = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    env.targets.fail_revokes.store(2, Ordering::SeqCst);

    env.advance(Duration::from_secs(30 * 60));
    let failing = until_state(&engineer, &active.id, "revoke_failing").await;
    assert_eq!(failing.attempts, 1);
    assert!(
        failing.last_error.contains("target unreachable"),
        "{}",
        failing.last_error
    );
    assert!(failing.next_attempt_at_ms.is_some());
    // Not marked ended while the target still grants.
    assert_eq!(env.holders("staging-db"), ["engineer"]);

    env.advance(RETRY_MAX);
    let failing = until("a second failed attempt", || {
        let mut engineer = engineer.clone();
        let id = active.id.clone();
        async move {
            let r = status(&mut engineer, &id).await;
            (r.attempts == 2).then_some(r)
        }
    })
    .await;
    assert_eq!(state(&failing), "revoke_failing");
    assert_eq!(env.holders("staging-db"), ["engineer"]);

    env.advance(RETRY_MAX * 2);
    let expired = until_state(&engineer, &active.id, "expired").await;
    assert!(env.holders("staging-db").is_empty());
    assert_eq!(env.targets.revokes.load(Ordering::SeqCst), 3);
    assert_eq!(expired.last_error, "");
    assert_eq!(
        daemon.actions(&active.id).await,
        [
            "request.submitted",
            "request.approved",
            "lease.granted",
            "lease.revoke_failed",
            "lease.revoke_failed",
            "lease.expired"
        ]
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_release_whose_revoke_fails_ends_released_once_confirmed() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let active = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    env.targets.fail_revokes.store(1, Ordering::SeqCst);
    let failing = release(&mut engineer, &active.id).await.unwrap();
    assert_eq!(state(&failing), "revoke_failing");
    assert_eq!(
        env.holders("staging-db"),
        ["engineer"],
        "still granted, and shown so"
    );
    env.advance(RETRY_MAX);
    let released = until_state(&engineer, &active.id, "released").await;
    assert!(env.holders("staging-db").is_empty());
    assert!(released.ended_at_ms.is_some());
    daemon.stop().await;
}

#[tokio::test]
async fn releasing_during_a_failing_revoke_changes_nothing() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let active = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    env.targets.fail_revokes.store(1, Ordering::SeqCst);
    env.advance(Duration::from_secs(30 * 60));
    until_state(&engineer, &active.id, "revoke_failing").await;
    let still = release(&mut engineer, &active.id).await.unwrap();
    assert_eq!(state(&still), "revoke_failing");
    env.advance(RETRY_MAX);
    until_state(&engineer, &active.id, "expired").await;
    daemon.stop().await;
}

/// Leases ending in the same instant are revoked on the target and committed together, in far
/// fewer write transactions than leases; a failing revoke holds back only its own lease, which
/// is retried until the target confirms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_leases_ending_together_is_revoked_and_committed_in_batches() {
    const LEASES: u64 = 600;
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let first = request(&mut engineer, "staging-db", "45m", "", "")
        .await
        .unwrap();
    let first_id: RequestId = first.id.parse().unwrap();
    let template = daemon
        .store
        .read(move |reader| reader.request(first_id))
        .await
        .unwrap()
        .unwrap();
    // Leases of other holders with the same end, granted on the target as the daemon would.
    let files = elevate::provision::FileProvisioner::new(env.layout.targets.clone());
    let seeded = daemon
        .store
        .write(move |view| -> Result<_, elevate::store::StoreError> {
            let next = view.next_request_id()?.raw();
            let requests: Vec<_> = (0..LEASES - 1)
                .map(|n| {
                    let mut lease = template.clone();
                    lease.id = RequestId::from_raw(next + n);
                    lease.requester = format!("holder-{n}").parse().unwrap();
                    lease.account = Some(lease.requester.to_string());
                    lease.notices = Default::default();
                    lease
                })
                .collect();
            Ok((
                elevate::store::Changes {
                    requests: requests.clone(),
                    ..Default::default()
                },
                requests,
            ))
        })
        .await
        .unwrap();
    for lease in &seeded {
        let target = elevate::provision::LeaseTarget {
            lease: lease.id,
            principal: lease.requester.clone(),
            resource: lease.resource.clone(),
            expires_at: lease.expires_at.unwrap(),
            account: lease.requester.to_string(),
            ssh_key: None,
        };
        elevate::provision::Provisioner::grant(&files, &target)
            .await
            .unwrap();
    }
    assert_eq!(env.holders("staging-db").len() as u64, LEASES);
    env.targets.fail_revokes.store(3, Ordering::SeqCst);
    let revokes = env.targets.revokes.load(Ordering::SeqCst);
    let stats = daemon.store.stats();
    let commits = stats.commits.load(Ordering::SeqCst);

    env.advance(Duration::from_secs(45 * 60));
    let expired = || async {
        daemon
            .store
            .read(|reader| reader.count_in_state(elevate::model::StateKind::Expired))
            .await
            .unwrap()
    };
    let failing = || async {
        daemon
            .store
            .read(|reader| reader.count_in_state(elevate::model::StateKind::RevokeFailing))
            .await
            .unwrap()
    };
    until("all but the failing ones expired", || async {
        (expired().await == LEASES - 3 && failing().await == 3).then_some(())
    })
    .await;
    let transactions = stats.commits.load(Ordering::SeqCst) - commits;
    assert!(
        transactions * 10 < LEASES,
        "{transactions} write transactions for {LEASES} leases"
    );
    assert_eq!(
        env.holders("staging-db").len(),
        3,
        "the failing ones hold on"
    );

    // The failing three are retried and confirmed.
    env.advance(RETRY_MAX);
    until("the retries expired", || async {
        (expired().await == LEASES).then_some(())
    })
    .await;
    assert!(env.holders("staging-db").is_empty());
    assert_eq!(
        env.targets.revokes.load(Ordering::SeqCst) - revokes,
        LEASES as u32 + 3,
        "one revoke per lease, and one more for each failed one"
    );
    // Each lease has exactly one end in the audit trail, and the chain is whole.
    let events = daemon.all_events().await;
    let ends = events
        .iter()
        .filter(|event| event.action == "lease.expired")
        .count();
    assert_eq!(ends as u64, LEASES);
    daemon.stop().await;
    if env.postgres().is_none() {
        let verified = elevate::store::offline::verify_store(&env.layout.store, None);
        assert!(verified.is_ok(), "{verified:?}");
    }
}

/// A target that stops answering holds back only the leases on it: leases ending later (on the
/// daemon's clock) are revoked and committed while its revokes hang, and the hanging ones end
/// once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_revoke_holds_back_no_other_expiry() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut oncall = daemon.client("oncall").await;
    let first = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    let second = request(&mut oncall, "staging-db", "40m", "", "")
        .await
        .unwrap();
    let later = request(&mut engineer, "prod-db-read", "1h", "look", "")
        .await
        .unwrap();
    let mut manager = daemon.client("manager").await;
    let later = approve(&mut manager, &later.id).await.unwrap();
    assert_eq!(state(&later), "active");
    // Each falls due alone, so each is a batch of its own, and both hang.
    env.targets.hang_revokes.store(2, Ordering::SeqCst);
    env.advance(Duration::from_secs(30 * 60));
    until("the first revoke to hang", || async {
        (env.targets.hang_revokes.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    env.advance(Duration::from_secs(10 * 60));
    until("the second revoke to hang", || async {
        (env.targets.hang_revokes.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
    env.advance(Duration::from_secs(20 * 60));
    let ended = until_state(&engineer, &later.id, "expired").await;
    assert_eq!(state(&ended), "expired");
    let mut auditor = daemon.client("auditor").await;
    for id in [&first.id, &second.id] {
        assert_eq!(state(&status(&mut auditor, id).await), "active", "{id}");
    }
    env.targets.release(2);
    until_state(&engineer, &first.id, "expired").await;
    until_state(&oncall, &second.id, "expired").await;
    daemon.stop().await;
}
