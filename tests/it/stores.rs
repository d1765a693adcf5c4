//! One harness, both stores: the workflow, break-glass, audit, lease and SCIM modules of this suite
//! run again with every daemon's store in PostgreSQL (a database per environment on one
//! throwaway cluster), by running this test binary again with [`STORE_UNDER_TEST`] set.

use std::process::Command;

use super::harness::{PostgresUnderTest, STORE_UNDER_TEST, store_under_test};
use super::pg::Cluster;

/// The modules that must pass on both stores.
const MODULES: &[&str] = &[
    "it::lifecycle::",
    "it::approvals::",
    "it::break_glass::",
    "it::audit::",
    "it::leases::",
    "it::expiry::",
    "it::scim::",
];

#[test]
fn the_workflow_break_glass_audit_and_lease_modules_pass_on_postgres() {
    if store_under_test().is_some() {
        // Already the run on PostgreSQL.
        return;
    }
    let cluster = Cluster::start();
    let server = PostgresUnderTest {
        socket_dir: cluster.socket_dir(),
        port: cluster.port(),
    };
    let output = Command::new(std::env::current_exe().unwrap())
        .env(STORE_UNDER_TEST, server.variable())
        .args(MODULES)
        .args(["--test-threads", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the suite failed on PostgreSQL:\n{stdout}\n{stderr}\n{}",
        cluster.log()
    );
    // Every module really ran.
    for module in MODULES {
        assert!(
            stdout.contains(module),
            "no test of {module} ran on PostgreSQL:\n{stdout}"
        );
    }
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    // And the daemons really kept their stores there: a database per environment, each with
    // its audit trail.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (databases, with_history) = runtime.block_on(async {
        let client = cluster.superuser().await;
        let names: Vec<String> = client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'elevate\\_%'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut with_history = 0;
        for name in &names {
            let (db, connection) = server
                .config(name)
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap();
            let task = tokio::spawn(connection);
            let entries: i64 = db
                .query_one("SELECT count(*) FROM elevate_audit", &[])
                .await
                .unwrap()
                .get(0);
            if entries > 0 {
                with_history += 1;
            }
            drop(db);
            let _ = task.await;
        }
        (names.len(), with_history)
    });
    assert!(
        databases >= 30,
        "only {databases} stores were made in PostgreSQL"
    );
    assert_eq!(with_history, databases);
}
