//! Upgrading in place: a store written by the previous release (layout 3, JSON records; made
//! by that release's `elevated serve --dev` and `elevate`, see `tests/fixtures/store-layout-3`)
//! is rewritten in the binary encoding by `elevated store upgrade` or at the daemon's first
//! start, verifies with the same chain head before and after, and serves on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use elevate::clock::ManualClock;
use elevate::model::Timestamp;

use super::audit::elevated;
use super::harness::*;
use super::pg::Cluster;

/// The store the previous release left, killed with SIGKILL (as a crash leaves it): five
/// requests (an active lease with an applied extension, a released one, a denied one, an active
/// break-glass with its review pending, a pending one) and their audit trail.
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/store-layout-3/elevate.redb"
);

/// Shortly after the fixture was made (2026-12-05T19:54:00Z): its leases are still running.
const MADE: u64 = 1_796_500_440_000;

/// The fixture's requests and their states.
const STATES: [(&str, &str); 5] = [
    ("req-1", "active"),
    ("req-2", "released"),
    ("req-3", "denied"),
    ("req-4", "active"),
    ("req-5", "pending"),
];

/// An environment whose store file is a copy of the fixture.
fn environment() -> Env {
    let env = Env::starting_at(ManualClock::new(Timestamp::from_unix_millis(MADE)));
    std::fs::copy(FIXTURE, &env.layout.store).unwrap();
    env
}

/// A store's chain as stored: its head, its entry count and its raw entries by number.
type Chain = ([u8; 32], u64, Vec<(u64, Vec<u8>)>);

/// The chain of the store file at `path`.
fn chain(path: &Path) -> Chain {
    elevate::store::offline::read_file(path, |reads| {
        Ok((
            reads.audit_head()?,
            reads.audit_count()?,
            reads.event_records(1, 100_000)?,
        ))
    })
    .unwrap()
    .0
}

/// A configuration naming the store file of `env`.
fn config(env: &Env, at: &Path) -> PathBuf {
    let store = format!("[store]\npath = \"{}\"\n", env.layout.store.display());
    configuration(env, &store, at)
}

/// Runs `elevated store upgrade` on the store `config` names, which must say it moved the
/// layout `from` → `to` rewriting the fixture's 5 requests and `count` audit entries.
async fn upgrade(config: &Path, from: u64, to: u64, count: u64) {
    let upgraded = elevated(&["store", "upgrade", "--config", config.to_str().unwrap()]).await;
    assert!(upgraded.status.success(), "{}", text(&upgraded));
    assert!(
        text(&upgraded).contains(&format!(
            "from layout {from} to {to}: 5 requests and {count} audit entries rewritten"
        )),
        "{}",
        text(&upgraded)
    );
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The fixture's checkpoints were signed by the key of the daemon that made it, which is not
/// kept anywhere: a daemon with another key refuses such a store (rightly). The chain's hashes
/// depend on no key, so removing the signatures and the recorded key lets the test daemon's
/// key sign from here on; verification then checks the whole chain, old entries included.
fn forget_the_signatures(path: &Path) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let checkpoints: redb::TableDefinition<u64, &[u8]> =
            redb::TableDefinition::new("checkpoints");
        let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        txn.open_table(checkpoints)
            .unwrap()
            .retain(|_, _| false)
            .unwrap();
        txn.open_table(meta).unwrap().remove("audit_key").unwrap();
    }
    txn.commit().unwrap();
}

/// Every entry is in the binary encoding (JSON records start with `{`).
fn assert_binary(entries: &[(u64, Vec<u8>)]) {
    for (seq, bytes) in entries {
        assert_ne!(bytes.first(), Some(&b'{'), "entry {seq} is still JSON");
    }
}

/// Starts the new daemon on the upgraded store and checks it serves the old records, ends the
/// old lease on time and takes new work.
async fn exercise(env: &Env) {
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut auditor = daemon.client("auditor").await;
    for (id, wanted) in STATES {
        assert_eq!(state(&status(&mut auditor, id).await), wanted, "{id}");
    }
    let old = status(&mut engineer, "req-1").await;
    assert_eq!(old.reason, "check replication");
    // The pending request of the old release is approved through its recorded route.
    let mut manager = daemon.client("manager").await;
    let mut security = daemon.client("security").await;
    approve(&mut manager, "req-5").await.unwrap();
    let granted = approve(&mut security, "req-5").await.unwrap();
    assert_eq!(state(&granted), "active");
    // The old lease ends at its (extended) end, on the daemon's clock.
    env.clock.advance(Duration::from_secs(45 * 60));
    until_state(&engineer, "req-1", "expired").await;
    let next = request(&mut engineer, "staging-db", "30m", "after the upgrade", "")
        .await
        .unwrap();
    assert_eq!(next.id, "req-6");
    daemon.stop().await;
}

/// [`exercise`], then the store file verifies, wholly binary, through the old head.
async fn serves_on(env: &Env, head: [u8; 32], count: u64) {
    exercise(env).await;
    let verified = elevate::store::offline::verify_store(&env.layout.store, None).unwrap();
    assert!(verified.summary.events > count);
    let (_, _, entries) = chain(&env.layout.store);
    assert_binary(&entries);
    // The old head is still the hash of the old last entry: history was not rewritten.
    let kept =
        elevate::store::offline::verify_store_keeping(&env.layout.store, None, &[count].into())
            .unwrap();
    assert_eq!(kept.hashes[&count], hex(&head));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_upgrade_rewrites_a_store_of_the_previous_release_with_the_same_chain() {
    let env = environment();
    // The old store verifies as it is (JSON entries, the old daemon's recorded key).
    let before = elevate::store::offline::verify_store(&env.layout.store, None).unwrap();
    let (head, count, entries) = chain(&env.layout.store);
    assert!(count > 10, "the fixture holds a history");
    assert_eq!(before.summary.events, count);
    assert!(
        entries
            .iter()
            .all(|(_, bytes)| bytes.first() == Some(&b'{'))
    );

    let dir = tempfile::tempdir().unwrap();
    let config = config(&env, dir.path());
    let config_arg = config.to_str().unwrap();
    upgrade(&config, 3, 4, count).await;
    // Same chain, same head, still signed by the old key, every entry binary.
    let after = elevate::store::offline::verify_store(&env.layout.store, None).unwrap();
    assert_eq!(after.summary.events, count);
    assert_eq!(after.summary.signed_through, before.summary.signed_through);
    let (head_after, count_after, entries) = chain(&env.layout.store);
    assert_eq!((head_after, count_after), (head, count));
    assert_binary(&entries);
    let verified = elevated(&["audit", "verify", "--config", config_arg]).await;
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("intact"), "{}", text(&verified));

    // Once is enough.
    let again = elevated(&["store", "upgrade", "--config", config_arg]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("nothing to upgrade"),
        "{}",
        text(&again)
    );

    forget_the_signatures(&env.layout.store);
    serves_on(&env, head, count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_upgrades_a_store_of_the_previous_release_at_start() {
    let env = environment();
    let (head, count, _) = chain(&env.layout.store);
    forget_the_signatures(&env.layout.store);
    serves_on(&env, head, count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_upgrade_refuses_a_missing_file_and_a_store_it_does_not_know() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env, dir.path());
    let config_arg = config.to_str().unwrap();
    let missing = elevated(&["store", "upgrade", "--config", config_arg]).await;
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        text(&missing).contains("no such store file"),
        "{}",
        text(&missing)
    );
    assert!(!env.layout.store.exists(), "a missing store was created");

    // A layout from a later release is refused, and left as it is.
    std::fs::copy(FIXTURE, &env.layout.store).unwrap();
    {
        let db = redb::Database::open(&env.layout.store).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        txn.open_table(meta)
            .unwrap()
            .insert("schema", 99u64.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let (head, count, entries) = chain(&env.layout.store);
    let later = elevated(&["store", "upgrade", "--config", config_arg]).await;
    assert_eq!(later.status.code(), Some(1), "{}", text(&later));
    assert!(
        text(&later).contains("schema version 99; this elevated understands 4"),
        "{}",
        text(&later)
    );
    assert_eq!(chain(&env.layout.store), (head, count, entries));
}

/// The same on PostgreSQL: the previous release's `elevated store migrate` copied the fixture
/// into a database, dumped as `postgres.sql` (store layout 1 there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_of_the_previous_release_is_upgraded_in_place() {
    let pg = Cluster::start();
    pg.sql("CREATE DATABASE legacy").await;
    let server = PostgresUnderTest {
        socket_dir: pg.socket_dir(),
        port: pg.port(),
    };
    let client = session(&server).await;
    client
        .batch_execute(include_str!("../fixtures/store-layout-3/postgres.sql"))
        .await
        .unwrap();
    // The dump empties the session's search path.
    client.batch_execute("RESET search_path").await.unwrap();
    // Request records and audit entries still in JSON.
    let json = || {
        let client = &client;
        async move {
            let mut counts = [0; 2];
            for (count, table) in counts.iter_mut().zip(["elevate_requests", "elevate_audit"]) {
                let sql = format!("SELECT count(*) FROM {table} WHERE get_byte(record, 0) = 123");
                *count = client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0);
            }
            (counts[0], counts[1])
        }
    };
    let elevate::store::Location::Postgres(target) = server.location("legacy") else {
        unreachable!()
    };
    let count = 18;
    let before = elevate::store::postgres::verify(&target, None, [count].into())
        .await
        .unwrap();
    assert_eq!(before.summary.events, count);
    assert_eq!(json().await, (5, count as i64));

    let env = environment();
    let dir = tempfile::tempdir().unwrap();
    let config = configuration(&env, &server.section("legacy"), dir.path());
    // Refused while a daemon (of any release) holds the store: it would not read what the
    // upgrade writes. Nothing is changed.
    let holder = session(&server).await;
    holder
        .batch_execute("SELECT pg_advisory_lock_shared(7265747)")
        .await
        .unwrap();
    let refused = elevated(&["store", "upgrade", "--config", config.to_str().unwrap()]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("in use by a running elevated"),
        "{}",
        text(&refused)
    );
    assert_eq!(json().await, (5, count as i64));
    drop(holder);
    upgrade(&config, 1, 2, count).await;
    assert_eq!(json().await, (0, 0));
    let after = elevate::store::postgres::verify(&target, None, [count].into())
        .await
        .unwrap();
    assert_eq!(after.summary.events, count);
    assert_eq!(after.hashes[&count], before.hashes[&count]);

    // As for the file: the old daemon's key is not kept.
    client
        .batch_execute(
            "DELETE FROM elevate_checkpoints; DELETE FROM elevate_meta WHERE name = 'audit_key'",
        )
        .await
        .unwrap();
    let location = server.clone();
    env.tweak(move |options| options.store = location.location("legacy"));
    exercise(&env).await;
    let served = elevate::store::postgres::verify(&target, None, [count].into())
        .await
        .unwrap();
    assert!(served.summary.events > count);
    assert_eq!(served.hashes[&count], before.hashes[&count]);
    assert_eq!(json().await, (0, 0));
}

/// A session of its own on the `legacy` database of `server`.
async fn session(server: &PostgresUnderTest) -> tokio_postgres::Client {
    let (client, connection) = server
        .config("legacy")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
