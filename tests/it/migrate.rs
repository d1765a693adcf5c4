//! `elevated store migrate`: a redb store with history copied into an empty PostgreSQL store,
//! which then verifies with the same chain head and serves on from where the file stopped.

use std::path::Path;

use super::audit::{elevated, some_history};
use super::harness::*;
use super::pg::Cluster;

/// A configuration naming the dev layout of `env` and the PostgreSQL store `server`/`database`.
fn config(env: &Env, server: &PostgresUnderTest, database: &str, at: &Path) -> std::path::PathBuf {
    configuration(env, &server.section(database), at)
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redb_store_moves_to_postgres_with_the_same_chain_and_serves_on() {
    let env = Env::new();
    let daemon = env.start().await;
    some_history(&env, &daemon).await;
    let mut engineer = daemon.client("engineer").await;
    let keep = || elevate::proto::v1::SubmitRequestRequest {
        resource: "staging-db".into(),
        duration: "8h".into(),
        ..Default::default()
    };
    let kept = request_keyed(&mut engineer, keep(), "kept").await.unwrap();
    daemon.stop().await;
    let file = env.layout.store.clone();
    let (head, count) = elevate::store::offline::read_file(&file, |reads| {
        Ok((reads.audit_head()?, reads.audit_count()?))
    })
    .unwrap()
    .0;

    let pg = Cluster::start();
    pg.sql("CREATE DATABASE migrated").await;
    let server = PostgresUnderTest {
        socket_dir: pg.socket_dir(),
        port: pg.port(),
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env, &server, "migrated", dir.path());
    let config_arg = config.to_str().unwrap();
    let file_arg = file.to_str().unwrap();

    let migrated = elevated(&[
        "store", "migrate", "--config", config_arg, "--from", file_arg,
    ])
    .await;
    assert!(migrated.status.success(), "{}", text(&migrated));
    assert!(
        text(&migrated).contains(&format!("{count} audit entries"))
            && !text(&migrated).contains(" 0 idempotency keys"),
        "{}",
        text(&migrated)
    );
    let verified = elevated(&["audit", "verify", "--config", config_arg]).await;
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("intact"), "{}", text(&verified));
    // The same chain: the last entry's hash is the file's head.
    let elevate::store::Location::Postgres(target) = server.location("migrated") else {
        unreachable!()
    };
    let copy = elevate::store::postgres::verify(&target, None, [count].into())
        .await
        .unwrap();
    assert_eq!(copy.summary.events, count);
    assert_eq!(copy.hashes[&count], hex(&head));

    // Once only: the store is no longer empty.
    let again = elevated(&[
        "store", "migrate", "--config", config_arg, "--from", file_arg,
    ])
    .await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("is not empty"), "{}", text(&again));

    // A daemon on the PostgreSQL store carries on: the lease is there and new work chains on.
    env.tweak(move |options| options.store = server.location("migrated"));
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    assert_eq!(state(&status(&mut engineer, &kept.id).await), "active");
    // Idempotency keys moved too: the submit sent again is answered with its first outcome.
    let again = request_keyed(&mut engineer, keep(), "kept").await.unwrap();
    assert_eq!(again.id, kept.id);
    let next = request(&mut engineer, "prod-db-read", "30m", "after", "")
        .await
        .unwrap();
    let number = |id: &str| id.trim_start_matches("req-").parse::<u64>().unwrap();
    assert_eq!(number(&next.id), number(&kept.id) + 1);
    daemon.stop().await;
    let verified = elevated(&["audit", "verify", "--config", config_arg]).await;
    assert!(verified.status.success(), "{}", text(&verified));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_store_that_is_not_postgres() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let root = &env.layout.root;
    let config = dir.path().join("elevated.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [tls]\nca = \"{root}/certs/ca.crt\"\ncert = \"{root}/certs/server.crt\"\nkey = \"{root}/certs/server.key\"\n\
             [store]\npath = \"{root}/other.redb\"\n\
             [policy]\npolicy = \"{root}/policy.toml\"\ndirectory = \"{root}/directory.toml\"\n\
             [provisioners.files]\nkind = \"file\"\ndir = \"{root}/targets\"\n",
            root = root.display(),
        ),
    )
    .unwrap();
    let output = elevated(&[
        "store",
        "migrate",
        "--config",
        config.to_str().unwrap(),
        "--from",
        env.layout.store.to_str().unwrap(),
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output).contains("not a PostgreSQL store"),
        "{}",
        text(&output)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
