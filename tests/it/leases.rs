//! What happens to a lease on its target beyond grant and expiry: overlapping leases,
//! extensions, administrative revocation and drift reconciliation.

use std::time::Duration;

use elevate::proto::v1 as pb;
use tonic::Code;

use super::cli::{elevate, json};
use super::harness::*;

const MINUTE: Duration = Duration::from_secs(60);

/// The demo policy with overlapping leases allowed on staging-db.
fn overlapping_policy(env: &Env) -> String {
    std::fs::read_to_string(&env.layout.policy)
        .unwrap()
        .replace(
            "auto_approve = true\n",
            "auto_approve = true\nallow_overlap = true\n",
        )
}

/// An environment whose policy allows overlapping leases on staging-db.
fn overlapping_env() -> Env {
    let env = Env::new();
    let policy = overlapping_policy(&env);
    env.policy(&policy)
}

/// Two leases on one grant ending in the same instant reach the expiry batch together: one
/// ends keeping the grant for the other, the other removes it, and nothing is left behind.
#[tokio::test]
async fn overlapping_leases_ending_in_the_same_instant_remove_their_grant_once() {
    let env = overlapping_env();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let one = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    let two = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(
        one.expires_at_ms, two.expires_at_ms,
        "the clock stood still"
    );
    let revokes = env
        .targets
        .revokes
        .load(std::sync::atomic::Ordering::SeqCst);
    env.advance(60 * MINUTE);
    until_state(&engineer, &one.id, "expired").await;
    until_state(&engineer, &two.id, "expired").await;
    assert!(env.holders("staging-db").is_empty());
    assert_eq!(
        env.targets
            .revokes
            .load(std::sync::atomic::Ordering::SeqCst)
            - revokes,
        1,
        "one revoke for the shared grant"
    );
    // Exactly one of the two ends says it kept the grant for the other.
    let mut kept = Vec::new();
    for (id, other) in [(&one.id, &two.id), (&two.id, &one.id)] {
        let ended = daemon.events(id).await.pop().unwrap();
        assert_eq!(ended.action, "lease.expired");
        if let Some(for_whom) = ended.details.get("grant_kept_for") {
            assert_eq!(for_whom, other);
            kept.push(id.clone());
        }
    }
    assert_eq!(kept.len(), 1, "{kept:?}");
    daemon.stop().await;
}

#[tokio::test]
async fn overlapping_leases_never_cut_each_other_short() {
    let env = overlapping_env();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let short = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    let long = request(&mut engineer, "staging-db", "2h", "", "")
        .await
        .unwrap();
    assert_eq!((state(&short), state(&long)), ("active", "active"));
    assert_eq!(env.holders("staging-db"), ["engineer"]);
    // A third undecided or duplicate request is still refused only while one is undecided;
    // overlapping active leases are what the policy allows.

    env.advance(60 * MINUTE + Duration::from_secs(1));
    let expired = until_state(&engineer, &short.id, "expired").await;
    assert_eq!(
        env.holders("staging-db"),
        ["engineer"],
        "the 2h lease still needs the grant"
    );
    let ended = daemon.events(&short.id).await.pop().unwrap();
    assert_eq!(ended.action, "lease.expired");
    assert_eq!(ended.details["grant_kept_for"], long.id);
    assert!(expired.ended_at_ms.is_some());
    assert_eq!(state(&status(&mut engineer, &long.id).await), "active");

    env.advance(60 * MINUTE);
    until_state(&engineer, &long.id, "expired").await;
    assert!(env.holders("staging-db").is_empty());
    let ended = daemon.events(&long.id).await.pop().unwrap();
    assert!(!ended.details.contains_key("grant_kept_for"));
    daemon.stop().await;
}

#[tokio::test]
async fn without_overlap_a_held_resource_is_refused_and_a_release_keeps_nothing() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let first = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    let error = request(&mut engineer, "staging-db", "2h", "", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    assert!(
        error.message().contains("or extend it"),
        "{}",
        error.message()
    );
    release(&mut engineer, &first.id).await.unwrap();
    assert!(env.holders("staging-db").is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn an_auto_approved_extension_moves_the_expiry_within_the_limits() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let lease = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    let end = lease.expires_at_ms.unwrap();
    let extended = extend(&mut engineer, &lease.id, "30m", "migration runs long")
        .await
        .unwrap();
    assert_eq!(state(&extended), "active");
    assert_eq!(extended.expires_at_ms.unwrap(), end + 30 * 60 * 1000);
    assert_eq!(extended.extensions.len(), 1);
    assert_eq!(extended.extensions[0].state, "applied");

    // Past the old end the lease holds; past the new one it ends.
    env.advance(60 * MINUTE + Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state(&status(&mut engineer, &lease.id).await), "active");
    assert_eq!(env.holders("staging-db"), ["engineer"]);

    // Beyond the 12h lifetime: refused, nothing changes.
    let error = extend(&mut engineer, &lease.id, "11h", "all day")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("at most 12h"),
        "{}",
        error.message()
    );
    // Three extensions at most.
    extend(&mut engineer, &lease.id, "10m", "more")
        .await
        .unwrap();
    extend(&mut engineer, &lease.id, "10m", "more")
        .await
        .unwrap();
    let error = extend(&mut engineer, &lease.id, "10m", "more")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("3 time(s)"), "{}", error.message());
    // Only the holder extends; to others without a part in the lease it does not exist.
    let mut oncall = daemon.client("oncall").await;
    let error = extend(&mut oncall, &lease.id, "10m", "mine now")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    let current = status(&mut engineer, &lease.id).await;
    assert_eq!(current.expires_at_ms.unwrap(), end + 50 * 60 * 1000);
    let actions = daemon.actions(&lease.id).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.as_str() == "lease.extended")
            .count(),
        3
    );
    env.advance(51 * MINUTE);
    until_state(&engineer, &lease.id, "expired").await;
    assert!(env.holders("staging-db").is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn a_routed_extension_waits_for_the_first_stage() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let asked = request(&mut engineer, "prod-db-read", "1h", "slow query", "")
        .await
        .unwrap();
    approve(&mut manager, &asked.id).await.unwrap();
    let lease = until_state(&engineer, &asked.id, "active").await;
    let end = lease.expires_at_ms.unwrap();

    let waiting = extend(&mut engineer, &lease.id, "1h", "still digging")
        .await
        .unwrap();
    assert_eq!(waiting.expires_at_ms.unwrap(), end, "not before approval");
    assert_eq!(waiting.extensions[0].state, "pending");
    assert_eq!(waiting.extensions[0].approvers, ["manager"]);
    let pending = manager
        .approval
        .list_pending(pb::ListPendingRequest {})
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, lease.id);
    let error = extend(&mut engineer, &lease.id, "1h", "again")
        .await
        .unwrap_err();
    assert!(
        error.message().contains("already has an extension waiting"),
        "{}",
        error.message()
    );

    let approved = approve(&mut manager, &lease.id).await.unwrap();
    assert_eq!(approved.expires_at_ms.unwrap(), end + 3600 * 1000);
    assert_eq!(approved.extensions[0].state, "applied");
    assert_eq!(approved.extensions[0].approved_by, ["manager"]);

    // A second one denied: the end stays.
    extend(&mut engineer, &lease.id, "30m", "one more thing")
        .await
        .unwrap();
    let denied = deny(&mut manager, &lease.id, "enough for today")
        .await
        .unwrap();
    assert_eq!(denied.expires_at_ms.unwrap(), end + 3600 * 1000);
    assert_eq!(denied.extensions[1].state, "denied");
    assert!(
        denied.extensions[1].detail.contains("enough for today"),
        "{:?}",
        denied.extensions[1]
    );
    let actions = daemon.actions(&lease.id).await;
    for expected in [
        "lease.extension_requested",
        "lease.extension_approval",
        "lease.extended",
        "lease.extension_denied",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
    daemon.stop().await;
}

#[tokio::test]
async fn an_admin_revokes_a_lease_at_once_with_a_reason() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut admin = daemon.client("admin").await;
    let lease = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();

    let error = admin_revoke(&mut engineer, &lease.id, "self-service")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = admin_revoke(&mut admin, &lease.id, "").await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(env.holders("staging-db"), ["engineer"]);

    let revoked = admin_revoke(&mut admin, &lease.id, "laptop stolen")
        .await
        .unwrap();
    assert_eq!(state(&revoked), "revoked");
    assert!(env.holders("staging-db").is_empty());
    assert!(
        revoked
            .end_reason
            .contains("revoked by admin: laptop stolen"),
        "{}",
        revoked.end_reason
    );
    let ended = daemon.events(&lease.id).await.pop().unwrap();
    assert_eq!(ended.action, "lease.revoked");
    assert_eq!(ended.details["reason"], "revoked by admin: laptop stolen");
    assert_eq!(ended.actor.to_string(), "admin");

    // Revoking it again returns it as it is: a repeated call gets the first result.
    let again = admin_revoke(&mut admin, &lease.id, "again").await.unwrap();
    assert_eq!(state(&again), "revoked");
    assert_eq!(again.end_reason, revoked.end_reason);
    assert_eq!(again.ended_at_ms, revoked.ended_at_ms);
    assert_eq!(
        daemon
            .actions(&lease.id)
            .await
            .iter()
            .filter(|a| a.as_str() == "lease.revoked")
            .count(),
        1
    );
    // Revoking a lease that ended otherwise is still refused.
    let other = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    release(&mut engineer, &other.id).await.unwrap();
    let error = admin_revoke(&mut admin, &other.id, "too late")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    daemon.stop().await;
}

#[tokio::test]
async fn reconciliation_removes_hand_made_grants_and_restores_lost_ones() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut admin = daemon.client("admin").await;
    let lease = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert!(reconcile(&mut admin, "").await.unwrap().is_empty());

    // By hand: someone adds mallory and removes the engineer.
    std::fs::write(env.layout.targets.join("staging-db"), "mallory\n").unwrap();
    let error = reconcile(&mut engineer, "").await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = reconcile(&mut admin, "no-such-db").await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(env.holders("staging-db"), ["mallory"]);

    let mut corrections = reconcile(&mut admin, "staging-db").await.unwrap();
    corrections.sort();
    assert_eq!(
        corrections,
        [
            format!("files: restored staging-db/engineer for {}", lease.id),
            "files: revoked staging-db/mallory (no live lease holds it)".to_owned(),
        ]
    );
    assert_eq!(env.holders("staging-db"), ["engineer"]);
    assert!(reconcile(&mut admin, "").await.unwrap().is_empty());

    let events = daemon.all_events().await;
    let revoked = events
        .iter()
        .find(|e| e.action == "drift.revoked")
        .expect("drift.revoked audited");
    assert_eq!(revoked.details["account"], "mallory");
    assert_eq!(revoked.resource.as_ref().unwrap().as_str(), "staging-db");
    assert_eq!(revoked.actor.to_string(), "admin");
    let restored = events
        .iter()
        .find(|e| e.action == "drift.restored")
        .expect("drift.restored audited");
    assert_eq!(restored.request.unwrap().to_string(), lease.id);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_revoke_and_reconcile_through_the_cli() {
    let env = Env::new();
    let daemon = env.start().await;
    let lease = json(
        &elevate(
            &daemon,
            &[
                "--as",
                "engineer",
                "-o",
                "json",
                "request",
                "staging-db",
                "--for",
                "1h",
            ],
        )
        .await,
    );
    let id = lease["id"].as_str().unwrap().to_owned();
    let extended = json(
        &elevate(
            &daemon,
            &[
                "--as", "engineer", "-o", "json", "extend", &id, "--by", "30m", "--reason",
                "long job",
            ],
        )
        .await,
    );
    assert_eq!(extended["extensions"][0]["state"], "applied");
    assert_eq!(extended["extensions"][0]["by"], "30m");

    std::fs::write(env.layout.targets.join("staging-db"), "engineer\nmallory\n").unwrap();
    let output = elevate(&daemon, &["--as", "admin", "admin", "reconcile"]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "files: revoked staging-db/mallory (no live lease holds it)"
    );
    let output = elevate(&daemon, &["--as", "admin", "admin", "reconcile"]).await;
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("no drift on files"),
        "{output:?}"
    );

    let output = elevate(
        &daemon,
        &["--as", "engineer", "admin", "revoke", &id, "--reason", "x"],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("admin group"),
        "{output:?}"
    );
    let revoked = json(
        &elevate(
            &daemon,
            &[
                "--as",
                "admin",
                "-o",
                "json",
                "admin",
                "revoke",
                &id,
                "--reason",
                "offboarding",
            ],
        )
        .await,
    );
    assert_eq!(revoked["state"], "revoked");
    assert!(env.holders("staging-db").is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn only_the_holder_extends_even_when_the_caller_sees_every_lease() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut auditor = daemon.client("auditor").await;
    let admin = daemon.client("admin").await;
    let pending = request(&mut engineer, "prod-db-read", "1h", "slow query", "")
        .await
        .unwrap();
    let staging = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();

    // Refused for who is asking, whatever the lease's state or the policy would say: an
    // auditor or administrator sees the lease but does not hold it.
    for (clients, id) in [
        (&auditor, &pending.id),
        (&admin, &pending.id),
        (&auditor, &staging.id),
        (&admin, &staging.id),
    ] {
        let error = extend(&mut clients.clone(), id, "10m", "mine now")
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied, "{}", error.message());
        assert!(
            error.message().contains("only the requester"),
            "{}",
            error.message()
        );
    }
    approve(&mut manager, &pending.id).await.unwrap();
    // Not the extension route worked out for the auditor as if they held it.
    let error = extend(&mut auditor, &pending.id, "10m", "mine now")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "{}", error.message());
    let lease = status(&mut engineer, &pending.id).await;
    assert!(lease.extensions.is_empty());
    assert_eq!(
        status(&mut engineer, &staging.id).await.expires_at_ms,
        staging.expires_at_ms
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_repeated_decision_on_an_extension_returns_the_lease_as_it_is() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let asked = request(&mut engineer, "prod-db-read", "1h", "slow query", "")
        .await
        .unwrap();
    let lease = approve(&mut manager, &asked.id).await.unwrap();
    let end = lease.expires_at_ms.unwrap();

    extend(&mut engineer, &lease.id, "10m", "one more query")
        .await
        .unwrap();
    let denied = deny(&mut manager, &lease.id, "enough").await.unwrap();
    assert_eq!(denied.extensions[0].state, "denied");
    // The same denial again: the first result, not an error about the lease being active.
    let again = deny(&mut manager, &lease.id, "still enough").await.unwrap();
    assert_eq!(state(&again), "active");
    assert_eq!(again.extensions.len(), 1);
    assert_eq!(again.extensions[0].state, "denied");
    assert!(again.extensions[0].detail.contains("enough"));
    assert_eq!(again.expires_at_ms, Some(end));

    extend(&mut engineer, &lease.id, "10m", "really one more")
        .await
        .unwrap();
    let approved = approve(&mut manager, &lease.id).await.unwrap();
    assert_eq!(approved.extensions[1].state, "applied");
    let again = approve(&mut manager, &lease.id).await.unwrap();
    assert_eq!(again.expires_at_ms, Some(end + 10 * 60 * 1000));
    assert_eq!(again.extensions.len(), 2);
    // A denial after the approval is not a repeat: it is refused.
    let error = deny(&mut manager, &lease.id, "changed my mind")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);

    let actions = daemon.actions(&lease.id).await;
    for (action, count) in [
        ("lease.extension_denied", 1),
        ("lease.extension_approval", 1),
        ("lease.extended", 1),
    ] {
        assert_eq!(
            actions.iter().filter(|a| a.as_str() == action).count(),
            count,
            "{action} in {actions:?}"
        );
    }
    daemon.stop().await;
}
