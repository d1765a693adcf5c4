//! The PostgreSQL layout: what redb keeps in tables and indexes, as tables with relational
//! columns for everything queried, so that every query is index-backed. Records are stored as
//! the same JSON bytes as in the redb file (so a redb store migrates by copying them, and the
//! audit chain verifies unchanged).
//!
//! | table | holds | indexed by |
//! |---|---|---|
//! | `elevate_requests` | every request, never deleted | state, requester, deadline, open (requester, resource), review state, extension pending, break-glass (requester, created) |
//! | `elevate_audit` | the hash-chained audit log, append-only, each entry with the epoch and node that wrote it (0 and empty without a cluster) | request, time, resource, action (each with time and sequence number) |
//! | `elevate_audit_principals` | who each entry is about or by | (principal, time, sequence number) |
//! | `elevate_checkpoints` | signed heads of the chain | sequence number |
//! | `elevate_outbox` | notifications not yet delivered | next attempt |
//! | `elevate_offboarded` | principals an administrator offboarded | principal |
//! | `elevate_directory` | the directory of record pushed over SCIM (JSON resources) | kind, id |
//! | `elevate_meta` | schema version, counters, chain head, audit key | name |
//! | `elevate_leader` | the one leadership row: epoch, node, expiry (database clock) | — |
//! | `elevate_nodes` | every node seen, its address and last contact | node |
//! | `elevate_epochs` | every epoch: the node that took it and when | epoch |
//! | `elevate_idempotency` | each claimed idempotency key: caller, method, digest of the arguments, request changed | key |

use tokio_postgres::Client;

use super::super::{StoreError, Upgraded};
use super::failed;
use crate::audit::key::PublicKey;
use crate::store::records::{Upgrade, upgrade_entry, upgrade_request};

/// The layout version this build reads and writes: 2 since requests and audit entries are
/// stored in the binary encoding ([`crate::store::records`]).
pub(super) const SCHEMA: u64 = 2;

/// The oldest layout this build upgrades in place: 1, whose records are the JSON the binary
/// encoding replaced (every table is the same).
const UPGRADES_FROM: u64 = 1;

pub(super) const META_SCHEMA: &str = "schema";
pub(super) const META_NEXT_ID: &str = "next_request_id";
pub(super) const META_NEXT_SEQ: &str = "audit_next_seq";
pub(super) const META_AUDIT_HEAD: &str = "audit_head";
pub(super) const META_NEXT_OUTBOX: &str = "outbox_next_seq";
pub(super) const META_AUDIT_KEY: &str = "audit_key";

/// Every table and index; each statement is idempotent.
const TABLES: &str = r"
CREATE TABLE IF NOT EXISTS elevate_meta (
    name text PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS elevate_requests (
    id bigint PRIMARY KEY,
    state smallint NOT NULL,
    requester text NOT NULL,
    resource text NOT NULL,
    deadline bigint,
    open boolean NOT NULL,
    review smallint,
    extension_pending boolean NOT NULL,
    break_glass_at bigint,
    record bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS elevate_requests_state ON elevate_requests (state, id);
CREATE INDEX IF NOT EXISTS elevate_requests_requester ON elevate_requests (requester, id);
CREATE INDEX IF NOT EXISTS elevate_requests_deadline ON elevate_requests (deadline, id)
    WHERE deadline IS NOT NULL;
CREATE INDEX IF NOT EXISTS elevate_requests_open ON elevate_requests (requester, resource, id)
    WHERE open;
CREATE INDEX IF NOT EXISTS elevate_requests_review ON elevate_requests (review, id)
    WHERE review IS NOT NULL;
CREATE INDEX IF NOT EXISTS elevate_requests_extending ON elevate_requests (id)
    WHERE extension_pending;
CREATE INDEX IF NOT EXISTS elevate_requests_break_glass
    ON elevate_requests (requester, break_glass_at, id) WHERE break_glass_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS elevate_audit (
    seq bigint PRIMARY KEY,
    at bigint NOT NULL,
    request bigint,
    resource text,
    action text NOT NULL,
    record bytea NOT NULL,
    epoch bigint NOT NULL DEFAULT 0,
    node text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS elevate_audit_request ON elevate_audit (request, seq)
    WHERE request IS NOT NULL;
CREATE INDEX IF NOT EXISTS elevate_audit_time ON elevate_audit (at, seq);
CREATE INDEX IF NOT EXISTS elevate_audit_resource ON elevate_audit (resource, at, seq)
    WHERE resource IS NOT NULL;
CREATE INDEX IF NOT EXISTS elevate_audit_action ON elevate_audit (action, at, seq);
CREATE TABLE IF NOT EXISTS elevate_audit_principals (
    principal text NOT NULL,
    at bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (principal, at, seq)
);
CREATE TABLE IF NOT EXISTS elevate_checkpoints (
    seq bigint PRIMARY KEY,
    record bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS elevate_outbox (
    seq bigint PRIMARY KEY,
    due bigint NOT NULL,
    notifier text NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS elevate_outbox_due ON elevate_outbox (due, seq);
CREATE TABLE IF NOT EXISTS elevate_offboarded (
    principal text PRIMARY KEY,
    record bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS elevate_directory (
    kind text NOT NULL,
    id text NOT NULL,
    resource bytea NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS elevate_leader (
    id smallint PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL,
    node text NOT NULL,
    advertise text NOT NULL,
    expires_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL
);
INSERT INTO elevate_leader VALUES (1, 0, '', '', '-infinity', '-infinity')
    ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS elevate_nodes (
    node text PRIMARY KEY,
    advertise text NOT NULL,
    seen_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS elevate_epochs (
    epoch bigint PRIMARY KEY,
    node text NOT NULL,
    advertise text NOT NULL,
    began_at timestamptz NOT NULL
);
-- Stores created before entries recorded their epoch: added once (an ALTER every start would
-- queue behind a paused leader's transaction and hold up everybody's reads of the log).
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'elevate_audit' AND column_name = 'epoch') THEN
        ALTER TABLE elevate_audit ADD COLUMN epoch bigint NOT NULL DEFAULT 0,
            ADD COLUMN node text NOT NULL DEFAULT '';
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS elevate_idempotency (
    key text PRIMARY KEY,
    principal text NOT NULL,
    at bigint NOT NULL,
    outcome bytea NOT NULL
);
";

/// Creates every table (under an advisory lock, so that nodes starting together do it once),
/// checks the schema version, and records the audit key on first use (refusing a different
/// one later: checkpoints signed by two keys would not verify). `shown` names the database.
pub(super) async fn initialize(
    client: &mut Client,
    shown: &str,
    key: Option<PublicKey>,
) -> Result<Option<Upgraded>, StoreError> {
    let txn = client
        .transaction()
        .await
        .map_err(|e| failed("creating the schema", &e))?;
    txn.execute("SELECT pg_advisory_xact_lock(7265746)", &[])
        .await
        .map_err(|e| failed("creating the schema", &e))?;
    txn.batch_execute(TABLES)
        .await
        .map_err(|e| failed("creating the schema", &e))?;
    let meta = |name: &'static str| {
        let txn = &txn;
        async move {
            txn.query_opt("SELECT value FROM elevate_meta WHERE name = $1", &[&name])
                .await
                .map(|row| row.map(|row| row.get::<_, Vec<u8>>(0)))
                .map_err(|e| failed("reading the schema version", &e))
        }
    };
    let put = |name: &'static str, value: Vec<u8>| {
        let txn = &txn;
        async move {
            txn.execute(
                "INSERT INTO elevate_meta (name, value) VALUES ($1, $2)",
                &[&name, &value],
            )
            .await
            .map(drop)
            .map_err(|e| failed("recording the schema version", &e))
        }
    };
    let mut upgraded = None;
    match meta(META_SCHEMA).await?.as_deref().map(u64_of) {
        None => put(META_SCHEMA, SCHEMA.to_le_bytes().to_vec()).await?,
        Some(Some(SCHEMA)) => {}
        Some(Some(UPGRADES_FROM)) => {
            // Nobody may be using the store: a daemon of the previous release would not read
            // what the upgrade writes. Every daemon holds the in-use lock (shared or not) while
            // it has the store open; this one takes it only after the upgrade.
            let alone: bool = txn
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&super::IN_USE])
                .await
                .map_err(|e| failed("upgrading the store", &e))?
                .get(0);
            if !alone {
                return Err(StoreError::Failed(format!(
                    "{shown} has layout {UPGRADES_FROM} and is in use by a running elevated: \
                     stop every daemon on it, then upgrade it (elevated store upgrade, or start \
                     this release)"
                )));
            }
            let started = std::time::Instant::now();
            let requests = rewrite(&txn, "elevate_requests", "id", upgrade_request).await?;
            let entries = rewrite(&txn, "elevate_audit", "seq", upgrade_entry).await?;
            txn.execute(
                "UPDATE elevate_meta SET value = $2 WHERE name = $1",
                &[&META_SCHEMA, &SCHEMA.to_le_bytes().to_vec()],
            )
            .await
            .map_err(|e| failed("recording the schema version", &e))?;
            upgraded = Some(Upgraded::since(
                started,
                (UPGRADES_FROM, SCHEMA),
                requests,
                entries,
            ));
        }
        Some(found) => {
            return Err(StoreError::Schema {
                file: shown.into(),
                found: found.unwrap_or(0),
                expected: SCHEMA,
            });
        }
    }
    if let Some(key) = key {
        let recorded = meta(META_AUDIT_KEY)
            .await?
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(PublicKey::from_bytes);
        match recorded {
            None => put(META_AUDIT_KEY, key.bytes().to_vec()).await?,
            Some(recorded) if recorded == key => {}
            Some(recorded) => {
                return Err(StoreError::AuditKey {
                    file: shown.into(),
                    recorded,
                    given: key,
                });
            }
        }
    }
    txn.commit()
        .await
        .map_err(|e| failed("creating the schema", &e))?;
    Ok(upgraded)
}

/// Rewrites every record of `table` (keyed by `key`) that `upgrade` changes, a page at a time,
/// in the transaction `txn`; returns how many.
async fn rewrite(
    txn: &tokio_postgres::Transaction<'_>,
    table: &'static str,
    key: &str,
    upgrade: Upgrade,
) -> Result<u64, StoreError> {
    const PAGE: i64 = 10_000;
    let select = format!(
        "SELECT {key}, record FROM {table} WHERE {key} > $1 AND get_byte(record, 0) = 123 \
         ORDER BY {key} LIMIT $2"
    );
    let update = format!(
        "UPDATE {table} SET record = data.record \
         FROM unnest($1::bigint[], $2::bytea[]) AS data(key, record) WHERE {table}.{key} = data.key"
    );
    let mut after = 0i64;
    let mut rewritten = 0;
    loop {
        let rows = txn
            .query(&select, &[&after, &PAGE])
            .await
            .map_err(|e| failed("upgrading the store", &e))?;
        let Some(last) = rows.last() else {
            return Ok(rewritten);
        };
        after = last.get(0);
        let mut keys = Vec::with_capacity(rows.len());
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: i64 = row.get(0);
            if let Some(bytes) = upgrade(table, key as u64, row.get::<_, &[u8]>(1)) {
                keys.push(key);
                records.push(bytes);
            }
        }
        txn.execute(&update, &[&keys, &records])
            .await
            .map_err(|e| failed("upgrading the store", &e))?;
        rewritten += keys.len() as u64;
    }
}

/// A little-endian `u64` as stored in `elevate_meta`.
pub(super) fn u64_of(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_le_bytes)
}
