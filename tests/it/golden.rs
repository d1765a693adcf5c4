//! The audit entries of a scripted day, byte for byte: every action the workflow records, with
//! its actor, subjects and details, compared with `tests/golden/audit_day.jsonl`. The stored
//! format is what auditors' tools and old stores rely on, so a change here is a format change,
//! never a side effect of restructuring code. `ELEVATE_BLESS=1` rewrites the file after a
//! deliberate change.

use std::sync::atomic::Ordering;
use std::time::Duration;

use elevate::clock::ManualClock;
use elevate::model::Timestamp;
use elevate::proto::v1 as pb;
use elevate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};

use super::harness::*;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/audit_day.jsonl");
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// One entry as stored, minus what differs between runs by design: the chain hashes (they
/// cover the audit key, which every environment generates anew), the audit key, the version
/// of the daemon, the jitter of retry times and the temporary state directory.
fn normalized(event: &elevate::audit::Event, root: &str) -> String {
    let mut value = serde_json::to_value(event).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("prev_hash");
    object.remove("hash");
    if let Some(details) = object.get_mut("details").and_then(|d| d.as_object_mut()) {
        for (key, placeholder) in [("audit_key", "<audit key>"), ("version", "<version>")] {
            if details.contains_key(key) {
                details.insert(key.into(), placeholder.into());
            }
        }
        // Retries are jittered: the time is checked for its form and that it lies ahead.
        // An empty one (no retry after the last attempt) is kept as it is.
        if let Some(retry_at) = details.get("retry_at").filter(|r| r != &"") {
            let retry_at = humantime::parse_rfc3339(retry_at.as_str().unwrap()).unwrap();
            assert!(retry_at > event.at.to_system_time(), "{event:?}");
            details.insert("retry_at".into(), "<jittered>".into());
        }
    }
    serde_json::to_string(&value)
        .unwrap()
        .replace(root, "<state>")
}

#[tokio::test]
async fn a_scripted_day_writes_exactly_the_golden_audit_entries() {
    // 2026-03-02T09:00:00Z: every time below follows from it.
    let env = Env::starting_at(ManualClock::new(Timestamp::from_unix_millis(
        1_772_442_000_000,
    )));
    let policy = std::fs::read_to_string(&env.layout.policy).unwrap();
    let env = env.policy(&format!("{policy}{}", super::leavers::QUORUM_DB));
    issue::issue(
        &env.layout.certs.0,
        "outsider",
        DEFAULT_TRUST_DOMAIN,
        1,
        false,
    )
    .unwrap();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut security = daemon.client("security").await;
    let mut oncall = daemon.client("oncall").await;
    let mut admin = daemon.client("admin").await;

    // Auto-approved, extended automatically, released.
    let auto = request(&mut engineer, "staging-db", "30m", "warm the cache", "")
        .await
        .unwrap();
    until_state(&engineer, &auto.id, "active").await;
    env.advance(MINUTE);
    extend(&mut engineer, &auto.id, "30m", "still warming")
        .await
        .unwrap();
    // The target refuses the next new end: the lease keeps its end.
    env.targets.fail_extends.store(1, Ordering::SeqCst);
    extend(&mut engineer, &auto.id, "30m", "a little more")
        .await
        .unwrap();
    env.advance(MINUTE);
    release(&mut engineer, &auto.id).await.unwrap();

    // Approved by the manager; one extension approved, another denied; revoked by an
    // administrator.
    env.advance(MINUTE);
    let read = request(&mut engineer, "prod-db-read", "1h", "slow query", "")
        .await
        .unwrap();
    env.advance(MINUTE);
    approve(&mut manager, &read.id).await.unwrap();
    until_state(&engineer, &read.id, "active").await;
    env.advance(MINUTE);
    extend(&mut engineer, &read.id, "30m", "still digging")
        .await
        .unwrap();
    approve(&mut manager, &read.id).await.unwrap();
    extend(&mut engineer, &read.id, "1h", "and more")
        .await
        .unwrap();
    deny(&mut manager, &read.id, "enough for today")
        .await
        .unwrap();
    env.advance(MINUTE);
    admin_revoke(&mut admin, &read.id, "audit finding")
        .await
        .unwrap();

    // Two stages: one approval, then a denial.
    env.advance(MINUTE);
    let admin_db = request(&mut engineer, "prod-db-admin", "30m", "migrate", "OPS-12")
        .await
        .unwrap();
    approve(&mut manager, &admin_db.id).await.unwrap();
    deny(&mut security, &admin_db.id, "not during the freeze")
        .await
        .unwrap();

    // Cancelled by the requester; another one times out.
    env.advance(MINUTE);
    let cancelled = request(&mut engineer, "prod-db-read", "1h", "maybe", "")
        .await
        .unwrap();
    engineer
        .access
        .cancel_request(pb::CancelRequestRequest {
            id: cancelled.id.clone(),
        })
        .await
        .unwrap();
    let waiting = request(&mut engineer, "prod-db-read", "1h", "later", "")
        .await
        .unwrap();
    env.advance(HOUR);
    until_state(&engineer, &waiting.id, "timed_out").await;

    // A grant that fails once, then succeeds; a revoke that fails once, then succeeds.
    env.targets.fail_grants.store(1, Ordering::SeqCst);
    let flaky = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    env.advance(RETRY_MAX);
    until_state(&engineer, &flaky.id, "active").await;
    env.targets.fail_revokes.store(1, Ordering::SeqCst);
    env.advance(30 * MINUTE);
    until_state(&engineer, &flaky.id, "revoke_failing").await;
    env.advance(RETRY_MAX);
    until_state(&engineer, &flaky.id, "expired").await;

    // A grant that fails for good.
    env.targets.fail_grants.store(3, Ordering::SeqCst);
    let failing = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    for _ in 0..3 {
        env.advance(RETRY_MAX);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until_state(&engineer, &failing.id, "failed").await;

    // Break-glass reviewed in time; another whose review goes overdue and is reminded.
    env.advance(MINUTE);
    let glass = break_glass(&mut oncall, "prod-db-admin", "30m", "db down", "INC-7")
        .await
        .unwrap();
    until_state(&oncall, &glass.id, "active").await;
    review(&mut security, &glass.id, "justified", "clear incident")
        .await
        .unwrap();
    env.advance(30 * MINUTE);
    until_state(&oncall, &glass.id, "expired").await;
    let unreviewed = break_glass(&mut oncall, "prod-db-admin", "30m", "again", "INC-8")
        .await
        .unwrap();
    until_state(&oncall, &unreviewed.id, "active").await;
    env.advance(30 * MINUTE);
    until_state(&oncall, &unreviewed.id, "expired").await;
    env.advance(24 * HOUR);
    until(&format!("{} overdue", unreviewed.id), || async {
        let actions = daemon.actions(&unreviewed.id).await;
        actions.iter().any(|a| a == "review.overdue").then_some(())
    })
    .await;
    env.advance(24 * HOUR);
    until(&format!("{} reminded", unreviewed.id), || async {
        let actions = daemon.actions(&unreviewed.id).await;
        actions.iter().any(|a| a == "review.reminded").then_some(())
    })
    .await;
    review(&mut security, &unreviewed.id, "unjustified", "no incident")
        .await
        .unwrap();

    // Drift: a stray grant is removed, a grant gone missing restored.
    let drifting = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    until_state(&engineer, &drifting.id, "active").await;
    std::fs::write(env.layout.targets.join("staging-db"), "").unwrap();
    std::fs::write(env.layout.targets.join("prod-db-read"), "oncall\n").unwrap();
    env.advance(MINUTE);
    // The first restore fails and is retried by the next reconciliation.
    env.targets.fail_grants.store(1, Ordering::SeqCst);
    let corrections = reconcile(&mut admin, "").await.unwrap();
    assert_eq!(corrections.len(), 2, "{corrections:?}");
    env.advance(MINUTE);
    let corrections = reconcile(&mut admin, "").await.unwrap();
    assert_eq!(corrections.len(), 1, "{corrections:?}");
    release(&mut engineer, &drifting.id).await.unwrap();

    // Reloads: a broken policy is refused, a changed one taken.
    let policy = std::fs::read_to_string(&env.layout.policy).unwrap();
    std::fs::write(&env.layout.policy, "[resources.broken\n").unwrap();
    env.advance(MINUTE);
    admin.admin.reload(pb::ReloadRequest {}).await.unwrap_err();
    std::fs::write(&env.layout.policy, format!("{policy}\n# reviewed\n")).unwrap();
    admin.admin.reload(pb::ReloadRequest {}).await.unwrap();

    // Leavers: the manager's approval toward a quorum is voided, the engineer's waiting
    // request cancelled; both come back.
    env.advance(MINUTE);
    let staged = request(&mut engineer, "quorum-db", "30m", "index", "")
        .await
        .unwrap();
    approve(&mut manager, &staged.id).await.unwrap();
    offboard(&mut admin, "manager", "left the company")
        .await
        .unwrap();
    env.advance(MINUTE);
    reinstate(&mut admin, "manager").await.unwrap();
    offboard(&mut admin, "engineer", "moved on").await.unwrap();
    env.advance(MINUTE);
    reinstate(&mut admin, "engineer").await.unwrap();

    // A certificate the directory does not know.
    let mut outsider = daemon.client("outsider").await;
    who_am_i(&mut outsider).await.unwrap_err();
    until("the refusal recorded", || async {
        let events = daemon.all_events().await;
        events
            .iter()
            .any(|e| e.action == "auth.refused")
            .then_some(())
    })
    .await;
    daemon.stop().await;

    // A restart with a submission rate of one an hour.
    env.tweak(|options| options.settings.rate_limits.submit = "1/1h".parse().unwrap());
    env.advance(MINUTE);
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap_err();
    until("the limit recorded", || async {
        let events = daemon.all_events().await;
        events
            .iter()
            .any(|e| e.action == "rate.limited")
            .then_some(())
    })
    .await;
    env.advance(MINUTE);
    let events = daemon.all_events().await;
    daemon.stop().await;

    let mut text: String = events
        .iter()
        .map(|event| normalized(event, &env.layout.root.display().to_string()) + "\n")
        .collect();
    if std::env::var_os("ELEVATE_BLESS").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("tests/golden/audit_day.jsonl");
    if text != golden {
        // Show the first difference, line by line.
        for (line, (got, want)) in text.lines().zip(golden.lines()).enumerate() {
            assert_eq!(got, want, "audit entry {} differs", line + 1);
        }
        text.push_str("(end)");
        assert_eq!(
            text.lines().count(),
            golden.lines().count(),
            "a different number of entries"
        );
    }
    let actions: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.action.as_str()).collect();
    // The rest have golden-free tests of their own: a dropped notification
    // (notifications.rs) and a flagged lease (leavers.rs).
    for action in elevate::audit::actions::ALL {
        if ["notification.dropped", "lease.flagged"].contains(action) {
            continue;
        }
        assert!(actions.contains(action), "the day records {action}");
    }
}
