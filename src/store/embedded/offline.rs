//! Verifying a store file without the daemon: `elevated audit verify --db FILE`. Opens the file
//! read-only (the daemon must be stopped, or give it a copy), recomputes the whole audit chain,
//! checks every checkpoint signature, and compares the end of the log with the store's own
//! counter and head, so that entries cut off the end are found even after the last checkpoint.
//!
//! A file the daemon did not close (it crashed, or was killed) cannot be opened read-only: redb
//! must first rebuild its allocator state, which means writing. That file is what an auditor
//! most wants to check, and it must not be changed by checking it, so it is copied to a private
//! temporary file, the copy is repaired and verified, and the copy is removed. Repair rebuilds
//! the allocator from the last committed state; it changes no entry.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use redb::{Database, ReadOnlyDatabase};

use super::StoreError;
use super::reader::Reader;
use crate::audit::key::PublicKey;
use crate::audit::verify::{Broken, Chain, Damage, Summary};
use crate::hash::hex;
use crate::store::seam::Reads;

/// Entries read at a time.
const PAGE: usize = 65_536;

/// Why a store could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The file could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The daemon holds the file.
    #[error("{0} is open in a running daemon: stop it, or verify a copy of the file")]
    InUse(String),
    /// No key to check signatures with.
    #[error("{0} records no audit key; pass --pubkey")]
    NoKey(String),
    /// The chain is broken.
    #[error(transparent)]
    Broken(#[from] Broken),
    /// A file left by a crash could not be copied and repaired for verification.
    #[error("{file} was not closed cleanly and could not be repaired in a copy: {message}")]
    Repair {
        /// The store file.
        file: String,
        /// What failed.
        message: String,
    },
}

/// What an intact store holds.
#[derive(Debug)]
pub struct StoreVerified {
    /// The key signatures were checked with.
    pub key: PublicKey,
    /// Whether that key is the one the store records (rather than one given).
    pub recorded_key: bool,
    /// What was checked.
    pub summary: Summary,
    /// The file was not closed cleanly (a crash); a repaired copy of it was verified.
    pub repaired: bool,
    /// The hash of each entry asked for (those the log holds), for comparing with a witness.
    pub hashes: std::collections::BTreeMap<u64, String>,
}

/// Verifies the audit trail in the store at `path`, with `key` or else the key the store
/// recorded on its first start.
pub fn verify_store(path: &Path, key: Option<PublicKey>) -> Result<StoreVerified, OfflineError> {
    verify_store_keeping(path, key, &std::collections::BTreeSet::new())
}

/// [`verify_store`], also keeping the hashes of the entries numbered in `wanted`.
pub fn verify_store_keeping(
    path: &Path,
    key: Option<PublicKey>,
    wanted: &std::collections::BTreeSet<u64>,
) -> Result<StoreVerified, OfflineError> {
    let shown = path.display().to_string();
    let (verified, repaired) = read_file(path, |reader| verify_reads(reader, &shown, key, wanted))?;
    Ok(StoreVerified {
        repaired,
        ..verified
    })
}

/// Runs `read` with a snapshot of the store file at `path`, which no daemon may hold. A file
/// left by a crash is read through a repaired private copy (and the second value is true);
/// the file itself is never changed.
pub fn read_file<T>(
    path: &Path,
    read: impl FnOnce(&dyn Reads) -> Result<T, OfflineError>,
) -> Result<(T, bool), OfflineError> {
    match ReadOnlyDatabase::open(path) {
        Ok(db) => Ok((read(&Reader::begin(&db)?)?, false)),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            Err(OfflineError::InUse(path.display().to_string()))
        }
        Err(redb::DatabaseError::RepairAborted) => {
            let copy = RepairedCopy::make(path)?;
            let value = read(&Reader::begin(&copy.db)?)?;
            drop(copy);
            Ok((value, true))
        }
        Err(error) => Err(StoreError::Redb(error.into()).into()),
    }
}

/// A private, repaired copy of a store file that was not closed cleanly; removed when dropped,
/// after the database is closed (fields drop in order).
struct RepairedCopy {
    db: Database,
    _file: Removed,
}

/// A file removed when this is dropped.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl RepairedCopy {
    fn make(original: &Path) -> Result<Self, OfflineError> {
        let failed = |message: String| OfflineError::Repair {
            file: original.display().to_string(),
            message,
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "elevate-verify-{}-{nanos}.redb",
            std::process::id()
        ));
        let cannot_copy = |error: std::io::Error| {
            failed(format!(
                "cannot copy it to {} (set TMPDIR to a directory with room): {error}",
                path.display()
            ))
        };
        // Mode 0600: the copy holds the whole history, like the store.
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(cannot_copy)?;
        // Ours from here on: removed on every way out.
        let file = Removed(path.clone());
        std::fs::File::open(original)
            .and_then(|mut from| std::io::copy(&mut from, &mut to))
            .map_err(cannot_copy)?;
        drop(to);
        // A daemon that started meanwhile may have been writing while the file was copied.
        if let Err(redb::DatabaseError::DatabaseAlreadyOpen) = ReadOnlyDatabase::open(original) {
            return Err(OfflineError::InUse(original.display().to_string()));
        }
        let db = Database::open(&path).map_err(|error| failed(error.to_string()))?;
        Ok(Self { db, _file: file })
    }
}

/// Verifies the audit trail a snapshot of any backend holds; `shown` names the store.
pub(in crate::store) fn verify_reads(
    reader: &dyn Reads,
    shown: &str,
    key: Option<PublicKey>,
    wanted: &std::collections::BTreeSet<u64>,
) -> Result<StoreVerified, OfflineError> {
    let mut hashes = std::collections::BTreeMap::new();
    let recorded = reader.audit_key()?;
    let (key, recorded_key) = match (key, recorded) {
        (Some(key), recorded) => (key, recorded == Some(key)),
        (None, Some(recorded)) => (recorded, true),
        (None, None) => return Err(OfflineError::NoKey(shown.to_owned())),
    };
    let mut chain = Chain::new(key, true);
    let mut checkpoints = std::collections::VecDeque::new();
    let mut next_checkpoints = 1u64;
    let mut stored_at = 0u64;
    let mut from = 1u64;
    loop {
        // Read and hashed on every core; the chain is then walked in order.
        let page = reader.event_links(from, PAGE)?;
        let Some(&(last_key, _)) = page.last() else {
            break;
        };
        // After the last key a u64 holds there is no next page.
        let next = last_key.checked_add(1);
        for (key_seq, entry) in page {
            stored_at = key_seq;
            if entry.seq != key_seq {
                return Err(Broken {
                    seq: Some(key_seq),
                    damage: Damage::Reordered,
                    message: format!(
                        "the entry stored as number {key_seq} says it is entry {}",
                        entry.seq
                    ),
                }
                .into());
            }
            if checkpoints.is_empty() && next_checkpoints != u64::MAX {
                let found = reader.checkpoints(next_checkpoints, PAGE)?;
                next_checkpoints = found.last().map_or(u64::MAX, |c| c.seq.saturating_add(1));
                checkpoints.extend(found);
            }
            while let Some(checkpoint) = checkpoints.front().filter(|c| c.seq < entry.seq) {
                chain.checkpoint(checkpoint)?;
                checkpoints.pop_front();
            }
            if entry.stopped && reader.checkpoint_at(entry.seq)?.is_none() {
                return Err(Broken {
                    seq: Some(entry.seq),
                    damage: Damage::Truncated,
                    message: "the checkpoint signed with this clean stop was removed".to_owned(),
                }
                .into());
            }
            chain.event_checked(entry.seq, entry.prev, entry.hash, entry.intact)?;
            if wanted.contains(&entry.seq) {
                hashes.insert(entry.seq, hex(&entry.hash));
            }
            if let Some(checkpoint) = checkpoints.front().filter(|c| c.seq == entry.seq) {
                chain.checkpoint(checkpoint)?;
                checkpoints.pop_front();
            }
        }
        match next {
            Some(next) => from = next,
            None => break,
        }
    }
    let last = chain.last().unwrap_or(0);
    let beyond = match checkpoints.back() {
        Some(checkpoint) => Some(checkpoint.seq),
        None => reader
            .latest_checkpoint()?
            .map(|c| c.seq)
            .filter(|&seq| seq > last),
    };
    if let Some(signed) = beyond {
        return Err(Broken {
            seq: Some(last + 1),
            damage: Damage::Truncated,
            message: format!(
                "the log ends at entry {last} but a checkpoint signed entry {signed}: entries {}–{signed} were removed",
                last + 1
            ),
        }
        .into());
    }
    let written = reader.audit_count()?;
    if written != stored_at {
        return Err(Broken {
            seq: Some(stored_at + 1),
            damage: Damage::Truncated,
            message: format!(
                "the store wrote {written} entries but the log ends at entry {stored_at}"
            ),
        }
        .into());
    }
    if let Some(event) = reader.last_event()? {
        let head = reader.audit_head()?;
        if hex(&head) != event.hash {
            return Err(Broken {
                seq: Some(event.seq),
                damage: Damage::Altered,
                message: "the store's recorded head is not the last entry's hash".to_owned(),
            }
            .into());
        }
    }
    Ok(StoreVerified {
        key,
        recorded_key,
        summary: chain.summary().clone(),
        repaired: false,
        hashes,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::key::AuditKey;
    use crate::audit::{Actor, Draft};
    use crate::model::Timestamp;
    use crate::store::batch::Transaction;
    use crate::store::embedded::tables::{self, AUDIT, Tables};
    use crate::store::{Changes, Signing};

    /// A store at `path` with `count` chained entries, a checkpoint every four, still open.
    fn store(path: &Path, key: &Arc<AuditKey>, count: u64) -> Database {
        let db = Database::create(path).unwrap();
        tables::initialize(&db, path, Some(key.public())).unwrap();
        let signing = Signing {
            key: key.clone(),
            every: 4,
            witness: None,
        };
        for n in 1..=count {
            let txn = db.begin_write().unwrap();
            {
                let mut tables = Tables::open(&txn, Some(&signing)).unwrap();
                let at = Timestamp::from_unix_millis(1_800_000_000_000 + n);
                let changes = Changes {
                    events: vec![Draft::new(at, Actor::System, "lease.expired")],
                    ..Changes::default()
                };
                tables
                    .apply(changes, &mut Vec::new(), &mut Vec::new())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        db
    }

    #[test]
    fn a_store_left_by_a_crash_verifies_and_is_not_changed() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(AuditKey::ephemeral().unwrap());
        let live = dir.path().join("live.redb");
        let db = store(&live, &key, 10);
        let crashed = dir.path().join("crashed.redb");
        // What `kill -9` leaves: the file as last committed, never closed.
        std::fs::copy(&live, &crashed).unwrap();
        drop(db);
        assert!(
            matches!(
                ReadOnlyDatabase::open(&crashed),
                Err(redb::DatabaseError::RepairAborted)
            ),
            "the image should need a repair"
        );
        let before = std::fs::read(&crashed).unwrap();

        let verified = verify_store(&crashed, Some(key.public())).unwrap();
        assert!(verified.repaired);
        assert_eq!(verified.summary.last, Some(10));
        assert_eq!(verified.summary.signed_through, Some(8));
        assert_eq!(
            std::fs::read(&crashed).unwrap(),
            before,
            "verifying changed the file"
        );
        // A cleanly closed store is read as it is.
        let clean = verify_store(&live, None).unwrap();
        assert!(!clean.repaired);
        assert_eq!(clean.summary.last, Some(10));
    }

    #[test]
    fn an_entry_under_the_last_key_is_verified_too() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(AuditKey::ephemeral().unwrap());
        let path = dir.path().join("store.redb");
        let db = store(&path, &key, 10);
        // A copy of the last entry stored again under the highest key there is.
        let txn = db.begin_write().unwrap();
        {
            use redb::ReadableTable;
            let mut audit = txn.open_table(AUDIT).unwrap();
            let last = audit.get(10).unwrap().unwrap().value().to_vec();
            audit.insert(u64::MAX, last.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        let error = verify_store(&path, Some(key.public())).unwrap_err();
        assert!(error.to_string().contains(&u64::MAX.to_string()), "{error}");
    }

    #[test]
    fn damage_in_a_store_left_by_a_crash_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(AuditKey::ephemeral().unwrap());
        let live = dir.path().join("live.redb");
        let db = store(&live, &key, 10);
        let txn = db.begin_write().unwrap();
        txn.open_table(AUDIT).unwrap().remove(5).unwrap();
        txn.commit().unwrap();
        let crashed = dir.path().join("crashed.redb");
        // What `kill -9` leaves: the file as last committed, never closed.
        std::fs::copy(&live, &crashed).unwrap();
        drop(db);
        let error = verify_store(&crashed, Some(key.public())).unwrap_err();
        assert!(error.to_string().contains("entry 5 is missing"), "{error}");
    }
}
