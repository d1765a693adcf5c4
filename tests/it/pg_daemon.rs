//! The daemon granting real PostgreSQL access: role memberships revoked at expiry (and kept
//! for an overlapping lease), a revoke retried while the server is down, drift corrected by
//! reconciliation, and ephemeral logins whose one-time credentials work until the lease ends.

use std::sync::Arc;
use std::time::Duration;

use elevate::proto::v1 as pb;
use elevate::provision::PostgresProvisioner;
use tonic::Code;

use super::cli::{elevate, json};
use super::harness::*;
use super::pg::{Cluster, ident};

const MINUTE: Duration = Duration::from_secs(60);

const RESOURCES: &str = r#"
[resources.app-db]
description = "App database: the engineer's own login joins app_rw"
provisioner = "pg"
eligible_groups = ["engineering"]
default_duration = "1h"
max_duration = "8h"
auto_approve = true
allow_overlap = true

[resources.app-db-login]
description = "App database: a fresh login for the lease"
provisioner = "pgtemp"
eligible_groups = ["engineering"]
default_duration = "1h"
max_duration = "4h"
auto_approve = true

[resources.app-db-login.extensions]
max_count = 2
max_total = "4h"
approval = "auto"
"#;

/// The demo environment with the PostgreSQL resources, the engineer mapped to login
/// `eng_login` on `pg`, and both provisioners pointing at `cluster`.
async fn env_with(cluster: &Cluster) -> Env {
    cluster.target_role("app_rw").await;
    cluster
        .sql("CREATE ROLE eng_login LOGIN PASSWORD 'eng-pw'; CREATE ROLE intruder LOGIN")
        .await;
    cluster
        .sql("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1); GRANT SELECT ON orders TO app_rw")
        .await;
    let env = Env::new();
    let policy = std::fs::read_to_string(&env.layout.policy).unwrap() + RESOURCES;
    let directory = std::fs::read_to_string(&env.layout.directory)
        .unwrap()
        .replace(
            "[principals.engineer]\n",
            "[principals.engineer]\naccounts = { pg = \"eng_login\" }\n",
        );
    let env = env.policy(&policy).directory(&directory);
    for (name, mode) in [("pg", "membership"), ("pgtemp", "ephemeral")] {
        let provisioner =
            PostgresProvisioner::new(&cluster.provisioner_config(mode, "app_rw")).unwrap();
        env.provisioners
            .lock()
            .unwrap()
            .push((name.to_owned(), Arc::new(provisioner)));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memberships_follow_leases_overlaps_outages_and_drift() {
    let cluster = Cluster::start();
    let env = env_with(&cluster).await;
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut admin = daemon.client("admin").await;

    let short = request(&mut engineer, "app-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&short), "active");
    assert_eq!(short.account, "eng_login");
    assert!(cluster.is_member("app_rw", "eng_login").await);

    // Drift both ways, corrected by reconciliation and audited.
    cluster
        .sql("GRANT app_rw TO intruder; REVOKE app_rw FROM eng_login")
        .await;
    let mut corrections = admin
        .admin
        .reconcile(pb::ReconcileRequest {
            resource: "app-db".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .corrections;
    corrections.sort();
    assert_eq!(
        corrections,
        [
            format!("pg: restored eng_login for {}", short.id),
            "pg: revoked intruder (no live lease holds it)".to_owned(),
        ]
    );
    assert!(cluster.is_member("app_rw", "eng_login").await);
    assert!(!cluster.is_member("app_rw", "intruder").await);
    let actions: Vec<String> = daemon
        .all_events()
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.iter().any(|a| a == "drift.revoked"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "drift.restored"), "{actions:?}");

    // Overlap: the 1h lease's expiry leaves the membership to the 2h lease.
    let long = request(&mut engineer, "app-db", "2h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&long), "active");
    env.advance(60 * MINUTE + Duration::from_secs(1));
    until_state(&engineer, &short.id, "expired").await;
    assert!(cluster.is_member("app_rw", "eng_login").await);

    // The server is down when the 2h lease ends: revoke_failing, retried, done once it is back.
    cluster.stop();
    env.advance(60 * MINUTE);
    let failing = until_state(&engineer, &long.id, "revoke_failing").await;
    assert!(!failing.last_error.is_empty());
    cluster.start_again();
    env.advance(RETRY_MAX);
    until_state(&engineer, &long.id, "expired").await;
    assert!(!cluster.is_member("app_rw", "eng_login").await);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_login_works_once_delivered_and_is_gone_after_release() {
    let cluster = Cluster::start();
    let env = env_with(&cluster).await;
    let daemon = env.start().await;

    let granted = json(
        &elevate(
            &daemon,
            &[
                "--as",
                "engineer",
                "-o",
                "json",
                "request",
                "app-db-login",
                "--for",
                "1h",
                "--wait",
            ],
        )
        .await,
    );
    assert_eq!(granted["state"], "active");
    let id = granted["id"].as_str().unwrap().to_owned();
    let user = granted["credentials"]["user"].as_str().unwrap().to_owned();
    let password = granted["credentials"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(user, format!("elevate_{}", id.replace('-', "_")));
    let session = cluster.connect_as(&user, &password).await.unwrap();
    let rows = session.query("SELECT id FROM orders", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);

    // Given out once: neither status nor the credentials call shows them again.
    let mut engineer = daemon.client("engineer").await;
    let again = engineer
        .access
        .get_request(pb::GetRequestRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(again.credentials.is_empty());
    assert!(!again.request.unwrap().credentials_waiting);
    let output = elevate(&daemon, &["--as", "engineer", "credentials", &id]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("given out once"),
        "{output:?}"
    );
    // The password is in no audit entry.
    let events = daemon.all_events().await;
    assert!(
        events
            .iter()
            .all(|e| !e.details.values().any(|v| v.contains(&password))),
        "a password was audited"
    );

    // An extension moves the database's own end too.
    let extended = engineer
        .access
        .extend_lease(pb::ExtendLeaseRequest {
            id: id.clone(),
            by: "30m".into(),
            reason: "long report".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    let until: i64 = cluster
        .query(
            "SELECT (extract(epoch FROM rolvaliduntil) * 1000)::int8 FROM pg_roles WHERE rolname = $1",
            &[&user],
        )
        .await[0]
        .get(0);
    assert_eq!(until, extended.expires_at_ms.unwrap());

    let released = release(&mut engineer, &id).await.unwrap();
    assert_eq!(state(&released), "released");
    assert!(!cluster.role_exists(&user).await);
    assert!(
        session.query("SELECT 1", &[]).await.is_err(),
        "session ended"
    );
    let refused = cluster.connect_as(&user, &password).await.unwrap_err();
    assert!(refused.to_string().contains("password") || refused.as_db_error().is_some());

    // Someone else's lease never shows them the credentials: it does not exist for them.
    let error = daemon
        .client("manager")
        .await
        .access
        .get_credentials(pb::GetCredentialsRequest { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(
        cluster
            .try_sql(&format!("SELECT 1 FROM {}", ident("orders")))
            .await
            .is_ok()
    );
    daemon.stop().await;
}
