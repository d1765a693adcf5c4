//! Reloading the policy and directory, leavers and movers: a broken file keeps the old one, a
//! good one is audited; offboarding and suspension take everything away at once; a mover loses
//! exactly the leases they are no longer eligible for.

use elevate::cli::client::Clients;
use elevate::proto::v1 as pb;
use tonic::Code;

use super::cli::{elevate, json};
use super::harness::*;

/// A resource that needs two of three named approvers, added to the demo policy.
pub(super) const QUORUM_DB: &str = r#"
[resources.quorum-db]
description = "Two of three must approve"
provisioner = "files"
eligible_groups = ["engineering", "sre"]
default_duration = "1h"
max_duration = "4h"

[[resources.quorum-db.stages]]
name = "pair"
approvers = ["user:manager", "user:security", "user:oncall"]
quorum = 2
"#;

fn demo_policy(env: &Env) -> String {
    std::fs::read_to_string(&env.layout.policy).unwrap()
}

fn demo_directory(env: &Env) -> String {
    std::fs::read_to_string(&env.layout.directory).unwrap()
}

async fn reload(clients: &mut Clients) -> Result<pb::ReloadResponse, tonic::Status> {
    clients
        .admin
        .reload(pb::ReloadRequest {})
        .await
        .map(tonic::Response::into_inner)
}

async fn granted(clients: &mut Clients, manager: &mut Clients, resource: &str) -> String {
    let asked = request(clients, resource, "1h", "work", "").await.unwrap();
    if state(&asked) == "pending" {
        let approved = approve(manager, &asked.id).await.unwrap();
        assert_eq!(state(&approved), "active", "{approved:?}");
    } else {
        assert_eq!(state(&asked), "active", "{asked:?}");
    }
    asked.id
}

fn details(event: &elevate::audit::Event, key: &str) -> String {
    event.details.get(key).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_keeps_the_old_files_and_a_good_one_is_audited() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut admin = daemon.client("admin").await;
    let mut engineer = daemon.client("engineer").await;
    let before = daemon.broker.rules().current();
    let (old_policy, old_directory) = (
        before.policy.version().to_owned(),
        before.directory.version().to_owned(),
    );

    // Only administrators reload.
    let refused = reload(&mut engineer).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Unchanged files: applied, and said to be unchanged.
    let same = reload(&mut admin).await.unwrap();
    assert!(!same.changed);
    assert_eq!(same.policy_version, old_policy);

    // A policy naming an unknown provisioner is refused with the reason; nothing changes.
    std::fs::write(
        &env.layout.policy,
        demo_policy(&env).replace("provisioner = \"files\"", "provisioner = \"nowhere\""),
    )
    .unwrap();
    let broken = reload(&mut admin).await.unwrap_err();
    assert_eq!(broken.code(), Code::FailedPrecondition, "{broken:?}");
    assert!(broken.message().contains("nowhere"), "{}", broken.message());
    assert!(
        broken.message().contains("unchanged"),
        "{}",
        broken.message()
    );
    assert_eq!(daemon.broker.rules().current().policy.version(), old_policy);
    // A file that is not even TOML is refused the same way.
    std::fs::write(&env.layout.directory, "[principals.engineer\n").unwrap();
    let broken = reload(&mut admin).await.unwrap_err();
    assert_eq!(broken.code(), Code::FailedPrecondition, "{broken:?}");
    let staging = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&staging), "active", "the old files stay in force");

    // A good policy with a new resource applies at once and is audited with both versions.
    std::fs::write(&env.layout.directory, demo_directory_text()).unwrap();
    std::fs::write(
        &env.layout.policy,
        format!(
            "{}{QUORUM_DB}",
            demo_policy(&env).replace("nowhere", "files")
        ),
    )
    .unwrap();
    let applied = reload(&mut admin).await.unwrap();
    assert!(applied.changed);
    assert_ne!(applied.policy_version, old_policy);
    assert_eq!(applied.directory_version, old_directory);
    let asked = request(&mut engineer, "quorum-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&asked), "pending");

    let events = daemon.all_events().await;
    let rejected: Vec<_> = events
        .iter()
        .filter(|e| e.action == "policy.reload_rejected")
        .collect();
    assert_eq!(rejected.len(), 2);
    assert!(details(rejected[0], "error").contains("nowhere"));
    assert_eq!(details(rejected[0], "policy_version"), old_policy);
    let reloaded: Vec<_> = events
        .iter()
        .filter(|e| e.action == "policy.reloaded")
        .collect();
    assert_eq!(reloaded.len(), 2);
    let last = reloaded[1];
    assert_eq!(last.actor.to_string(), "admin");
    assert_eq!(details(last, "old_policy_version"), old_policy);
    assert_eq!(details(last, "new_policy_version"), applied.policy_version);
    assert_eq!(details(last, "old_directory_version"), old_directory);
    assert_eq!(details(last, "new_directory_version"), old_directory);
    assert_eq!(details(last, "changed"), "true");

    // The CLI says the same.
    let output = json(&elevate(&daemon, &["--as", "admin", "-o", "json", "admin", "reload"]).await);
    assert_eq!(output["policy_version"], applied.policy_version.as_str());
    assert_eq!(output["changed"], false);
    daemon.stop().await;
}

/// The demo directory as `dev::prepare` writes it.
fn demo_directory_text() -> String {
    let dir = tempfile::tempdir().unwrap();
    let layout = elevate::dev::prepare(dir.path()).unwrap();
    std::fs::read_to_string(layout.directory).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_revokes_cancels_voids_approvals_and_refuses_new_requests() {
    let env = Env::new();
    let policy = format!("{}{QUORUM_DB}", demo_policy(&env));
    let env = env.policy(&policy);
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut manager = daemon.client("manager").await;
    let mut engineer = daemon.client("engineer").await;
    let mut security = daemon.client("security").await;
    let mut admin = daemon.client("admin").await;

    // The leaver holds two leases and has a request waiting.
    let staging = granted(&mut oncall, &mut manager, "staging-db").await;
    let read = granted(&mut oncall, &mut manager, "prod-db-read").await;
    let waiting = request(&mut oncall, "prod-db-admin", "30m", "fix", "OPS-1")
        .await
        .unwrap();
    assert_eq!(state(&waiting), "pending");
    // ... and gave one of the two approvals someone else's request needs.
    let quorum = request(&mut engineer, "quorum-db", "1h", "", "")
        .await
        .unwrap();
    let half = approve(&mut oncall, &quorum.id).await.unwrap();
    assert_eq!(half.route[0].approved_by, vec!["oncall".to_owned()]);
    assert_eq!(env.holders("staging-db"), vec!["oncall".to_owned()]);
    assert_eq!(env.holders("prod-db-read"), vec!["oncall".to_owned()]);

    // Bad input changes nothing.
    let output = elevate(
        &daemon,
        &[
            "--as", "admin", "admin", "offboard", "nobody", "--reason", "x",
        ],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown principal 'nobody'"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = elevate(
        &daemon,
        &[
            "--as", "admin", "admin", "offboard", "oncall", "--reason", "",
        ],
    )
    .await;
    assert!(!output.status.success());
    let output = elevate(
        &daemon,
        &[
            "--as", "manager", "admin", "offboard", "oncall", "--reason", "left",
        ],
    )
    .await;
    assert!(!output.status.success(), "only administrators offboard");
    assert_eq!(env.holders("staging-db"), vec!["oncall".to_owned()]);

    let done = json(
        &elevate(
            &daemon,
            &[
                "--as",
                "admin",
                "-o",
                "json",
                "admin",
                "offboard",
                "oncall",
                "--reason",
                "left the company",
            ],
        )
        .await,
    );
    let mut revoked: Vec<String> = serde_json::from_value(done["revoked"].clone()).unwrap();
    revoked.sort();
    let mut expected = vec![staging.clone(), read.clone()];
    expected.sort();
    assert_eq!(revoked, expected);
    assert_eq!(done["cancelled"], serde_json::json!([waiting.id]));
    assert_eq!(done["voided"], serde_json::json!([quorum.id]));

    // Access is gone on the target, and the records say why.
    assert!(env.holders("staging-db").is_empty());
    assert!(env.holders("prod-db-read").is_empty());
    for id in [&staging, &read] {
        let lease = status(&mut admin, id).await;
        assert_eq!(state(&lease), "revoked");
        assert!(
            lease
                .end_reason
                .contains("offboarded by admin: left the company"),
            "{}",
            lease.end_reason
        );
        let events = daemon.events(id).await;
        let revoke = events.iter().find(|e| e.action == "lease.revoked").unwrap();
        assert_eq!(revoke.actor.to_string(), "admin");
    }
    let cancelled = status(&mut admin, &waiting.id).await;
    assert_eq!(state(&cancelled), "cancelled");
    assert!(
        daemon
            .actions(&waiting.id)
            .await
            .contains(&"request.cancelled".to_owned())
    );

    // The leaver's approval no longer counts: two more are needed.
    let voided = status(&mut engineer, &quorum.id).await;
    assert_eq!(state(&voided), "pending");
    assert!(voided.route[0].approved_by.is_empty());
    assert!(voided.decisions[0].void.contains("oncall left"));
    assert!(
        daemon
            .actions(&quorum.id)
            .await
            .contains(&"request.approval_voided".to_owned())
    );
    let one = approve(&mut manager, &quorum.id).await.unwrap();
    assert_eq!(
        state(&one),
        "pending",
        "one counted approval is not a quorum"
    );
    let two = approve(&mut security, &quorum.id).await.unwrap();
    assert_eq!(state(&two), "active");

    // The leaver can make no call at all.
    let refused = request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("offboarded by admin"),
        "{}",
        refused.message()
    );

    // The offboarding is listed, and survives a restart.
    let listed = json(
        &elevate(
            &daemon,
            &["--as", "admin", "-o", "json", "admin", "offboarded"],
        )
        .await,
    );
    assert_eq!(listed[0]["principal"], "oncall");
    assert_eq!(listed[0]["by"], "admin");
    daemon.stop().await;
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let refused = request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Reinstated, the directory decides again; nothing revoked comes back.
    let output = elevate(
        &daemon,
        &[
            "--as",
            "admin",
            "admin",
            "reinstate",
            "oncall",
            "--reason",
            "rehired",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(env.holders("prod-db-read").is_empty());
    let back = request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&back), "active");
    let actions: Vec<String> = daemon
        .all_events()
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"principal.offboarded".to_owned()));
    assert!(actions.contains(&"principal.reinstated".to_owned()));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_in_the_directory_and_reloading_takes_everything_away() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut manager = daemon.client("manager").await;
    let mut admin = daemon.client("admin").await;
    let staging = granted(&mut oncall, &mut manager, "staging-db").await;
    let waiting = request(&mut oncall, "prod-db-read", "1h", "look", "")
        .await
        .unwrap();

    std::fs::write(
        &env.layout.directory,
        demo_directory(&env).replace(
            "[principals.oncall]\n",
            "[principals.oncall]\nstatus = \"suspended\"\n",
        ),
    )
    .unwrap();
    let reloaded = reload(&mut admin).await.unwrap();
    let enforced = reloaded.enforced.unwrap();
    assert_eq!(enforced.revoked, vec![staging.clone()]);
    assert_eq!(enforced.cancelled, vec![waiting.id.clone()]);
    assert!(env.holders("staging-db").is_empty());
    let lease = status(&mut admin, &staging).await;
    assert_eq!(state(&lease), "revoked");
    assert!(
        lease.end_reason.contains("suspended in the directory"),
        "{}",
        lease.end_reason
    );
    let refused = request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mover_loses_exactly_the_leases_they_are_no_longer_eligible_for() {
    // prod-db-read is only for engineering now; staging-db stays open to sre. On prod-db-admin
    // the policy keeps ineligible holders' leases, flagged.
    let env = Env::new();
    let policy = demo_policy(&env)
        .replacen(
            "eligible_groups = [\"engineering\", \"sre\"]\ndefault_duration = \"1h\"\nmax_duration = \"4h\"",
            "eligible_groups = [\"engineering\", \"movers\"]\ndefault_duration = \"1h\"\nmax_duration = \"4h\"",
            1,
        )
        .replace(
            "ticket_pattern = \"^[A-Z]+-[0-9]+$\"\n",
            "ticket_pattern = \"^[A-Z]+-[0-9]+$\"\non_ineligible = \"flag\"\neligible_groups = [\"admin-movers\", \"engineering\"]\n",
        )
        .replacen(
            "eligible_groups = [\"engineering\", \"sre\"]\ndefault_duration = \"30m\"\n",
            "default_duration = \"30m\"\n",
            1,
        );
    let directory = demo_directory(&env).replace(
        "[principals.oncall]\ngroups = [\"sre\"]",
        "[principals.oncall]\ngroups = [\"sre\", \"movers\", \"admin-movers\"]",
    );
    let env = env.policy(&policy).directory(&directory);
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut manager = daemon.client("manager").await;
    let mut security = daemon.client("security").await;
    let mut admin = daemon.client("admin").await;
    let staging = granted(&mut oncall, &mut manager, "staging-db").await;
    let read = granted(&mut oncall, &mut manager, "prod-db-read").await;
    let admin_lease = request(&mut oncall, "prod-db-admin", "30m", "fix", "OPS-2")
        .await
        .unwrap();
    approve(&mut manager, &admin_lease.id).await.unwrap();
    let active = approve(&mut security, &admin_lease.id).await.unwrap();
    assert_eq!(state(&active), "active");

    // oncall moves out of the groups that made them eligible for prod-db-read and
    // prod-db-admin.
    std::fs::write(
        &env.layout.directory,
        demo_directory(&env).replace(
            "[principals.oncall]\ngroups = [\"sre\", \"movers\", \"admin-movers\"]",
            "[principals.oncall]\ngroups = [\"sre\"]",
        ),
    )
    .unwrap();
    let reloaded = reload(&mut admin).await.unwrap();
    let enforced = reloaded.enforced.unwrap();
    assert_eq!(enforced.revoked, vec![read.clone()]);
    assert_eq!(enforced.flagged, vec![admin_lease.id.clone()]);
    assert!(enforced.cancelled.is_empty());

    assert_eq!(state(&status(&mut admin, &staging).await), "active");
    assert_eq!(env.holders("staging-db"), vec!["oncall".to_owned()]);
    let lost = status(&mut admin, &read).await;
    assert_eq!(state(&lost), "revoked");
    assert!(
        lost.end_reason
            .contains("oncall is no longer in a group eligible for prod-db-read"),
        "{}",
        lost.end_reason
    );
    assert!(env.holders("prod-db-read").is_empty());
    let flagged = status(&mut admin, &admin_lease.id).await;
    assert_eq!(state(&flagged), "active");
    assert!(
        flagged.flagged.contains("prod-db-admin"),
        "{}",
        flagged.flagged
    );
    assert_eq!(env.holders("prod-db-admin"), vec!["oncall".to_owned()]);
    assert!(
        daemon
            .actions(&admin_lease.id)
            .await
            .contains(&"lease.flagged".to_owned())
    );

    // A flagged lease runs only to its end.
    let refused = oncall
        .access
        .extend_lease(pb::ExtendLeaseRequest {
            id: admin_lease.id.clone(),
            by: "30m".into(),
            reason: "more".into(),
        })
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("flagged"),
        "{}",
        refused.message()
    );

    // A second reload changes nothing more: the flag is not raised twice.
    let again = reload(&mut admin).await.unwrap().enforced.unwrap();
    assert_eq!(again, pb::Enforcement::default());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_racing_a_reload_is_judged_by_the_files_in_force() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let pending = request(&mut engineer, "prod-db-read", "1h", "look", "")
        .await
        .unwrap();

    // The new files are in force, but the sweep has not reached the request yet (the window
    // an approval can race into): the approval is refused rather than granting a leaver.
    std::fs::write(
        &env.layout.directory,
        demo_directory(&env).replace(
            "[principals.engineer]\n",
            "[principals.engineer]\nstatus = \"suspended\"\n",
        ),
    )
    .unwrap();
    let snapshot =
        elevate::policy::Snapshot::load(&env.layout.policy, &env.layout.directory).unwrap();
    daemon.broker.rules().replace(snapshot);
    let refused = approve(&mut manager, &pending.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("engineer left: suspended in the directory"),
        "{}",
        refused.message()
    );
    assert!(env.holders("prod-db-read").is_empty());
    daemon.stop().await;
}
