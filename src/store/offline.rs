//! Verifying a store file without the daemon: `elevated audit verify --db FILE`. Opens the file
//! read-only (the daemon must be stopped, or give it a copy), recomputes the whole audit chain,
//! checks every checkpoint signature, and compares the end of the log with the store's own
//! counter and head, so that entries cut off the end are found even after the last checkpoint.

use std::path::Path;

use redb::ReadOnlyDatabase;

use super::StoreError;
use super::codec::decode;
use super::reader::Reader;
use crate::audit::Event;
use crate::audit::key::PublicKey;
use crate::audit::verify::{Broken, Chain, Damage, Summary};
use crate::hash::hex;

/// Entries read per read transaction.
const PAGE: usize = 4096;

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
}

/// Verifies the audit trail in the store at `path`, with `key` or else the key the store
/// recorded on its first start.
pub fn verify_store(path: &Path, key: Option<PublicKey>) -> Result<StoreVerified, OfflineError> {
    let db = match ReadOnlyDatabase::open(path) {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(OfflineError::InUse(path.display().to_string()));
        }
        Err(error) => return Err(StoreError::Redb(error.into()).into()),
    };
    let reader = Reader::begin(&db)?;
    let recorded = reader.audit_key()?;
    let (key, recorded_key) = match (key, recorded) {
        (Some(key), recorded) => (key, recorded == Some(key)),
        (None, Some(recorded)) => (recorded, true),
        (None, None) => return Err(OfflineError::NoKey(path.display().to_string())),
    };
    let mut chain = Chain::new(key, true);
    let mut checkpoints = std::collections::VecDeque::new();
    let mut next_checkpoints = 1u64;
    let mut from = 1u64;
    let mut stored_at = 0u64;
    loop {
        let page = decode_page(reader.event_records(from, PAGE)?)?;
        let Some(&(last_key, _, _)) = page.last() else {
            break;
        };
        for (key_seq, event, digest) in page {
            stored_at = key_seq;
            if event.seq != key_seq {
                return Err(Broken {
                    seq: Some(key_seq),
                    damage: Damage::Reordered,
                    message: format!(
                        "the entry stored as number {key_seq} says it is entry {}",
                        event.seq
                    ),
                }
                .into());
            }
            if checkpoints.is_empty() && next_checkpoints != u64::MAX {
                let found = reader.checkpoints(next_checkpoints, PAGE)?;
                next_checkpoints = found.last().map_or(u64::MAX, |c| c.seq.saturating_add(1));
                checkpoints.extend(found);
            }
            while let Some(checkpoint) = checkpoints.front().filter(|c| c.seq < event.seq) {
                chain.checkpoint(checkpoint)?;
                checkpoints.pop_front();
            }
            if event.action == crate::broker::events::STOPPED
                && reader.checkpoint_at(event.seq)?.is_none()
            {
                return Err(Broken {
                    seq: Some(event.seq),
                    damage: Damage::Truncated,
                    message: "the checkpoint signed with this clean stop was removed".to_owned(),
                }
                .into());
            }
            chain.event(event.seq, &event.prev_hash, &event.hash, &digest)?;
            if let Some(checkpoint) = checkpoints.front().filter(|c| c.seq == event.seq) {
                chain.checkpoint(checkpoint)?;
                checkpoints.pop_front();
            }
        }
        from = last_key + 1;
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
    })
}

/// Decodes a page of stored entries and computes each one's content digest, spread over the
/// machine's cores: the part of verification that does not depend on the entry before. The
/// chain itself is then walked in order.
fn decode_page(page: Vec<(u64, Vec<u8>)>) -> Result<Vec<(u64, Event, [u8; 32])>, StoreError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let chunk = page.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = page
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(key, bytes)| {
                            let event: Event = decode("audit", bytes)?;
                            let digest = event.content_digest();
                            Ok((*key, event, digest))
                        })
                        .collect::<Result<Vec<_>, StoreError>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(page.len());
        for part in parts {
            out.extend(part.join().map_err(|_| StoreError::ReadPanicked)??);
        }
        Ok(out)
    })
}
