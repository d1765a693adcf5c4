//! The audit witness: signed checkpoints kept outside the store. Anyone who can write the store
//! and the audit key beside it can rewrite the entries after the last checkpoint and sign new
//! checkpoints, or cut the log back to an older checkpoint, and the store alone still verifies.
//! With `[audit] witness = "<notifier>"` every checkpoint also goes, through the durable outbox,
//! to a notifier on other storage or another host (an append-only file, a webhook). Checking a
//! store or an export against what the witness kept finds both: a witnessed entry the store no
//! longer reaches (it is *behind*), or one whose hash differs (it *disagrees*).
//!
//! A witness file is what the `file` notifier writes: JSON lines, of which those of kind
//! `audit.checkpoint` carry a checkpoint; other lines are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::key::{Checkpoint, PublicKey};

/// The kind of the lines that carry a checkpoint.
pub const KIND: &str = "audit.checkpoint";

#[derive(serde::Deserialize)]
struct Line {
    kind: String,
    #[serde(default)]
    checkpoint: Option<Checkpoint>,
}

/// The checkpoints in a witness file, by entry number (the same checkpoint delivered twice
/// counts once; two different ones for one entry are an error).
pub fn read(bytes: &[u8]) -> Result<BTreeMap<u64, Checkpoint>, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "the witness file is not UTF-8".to_owned())?;
    let mut checkpoints: BTreeMap<u64, Checkpoint> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(line)
            .map_err(|error| format!("witness line {}: not an event: {error}", index + 1))?;
        if line.kind != KIND {
            continue;
        }
        let checkpoint = line.checkpoint.ok_or_else(|| {
            format!(
                "witness line {}: an {KIND} event without its checkpoint",
                index + 1
            )
        })?;
        match checkpoints.get(&checkpoint.seq) {
            Some(earlier) if *earlier != checkpoint => {
                return Err(format!(
                    "witness line {}: a second, different checkpoint of entry {}",
                    index + 1,
                    checkpoint.seq
                ));
            }
            _ => {
                checkpoints.insert(checkpoint.seq, checkpoint);
            }
        }
    }
    if checkpoints.is_empty() {
        return Err("the witness file holds no checkpoint".to_owned());
    }
    Ok(checkpoints)
}

/// What the witness agrees with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// Witnessed checkpoints whose entry the log holds with the same hash.
    pub matched: usize,
    /// Witnessed checkpoints whose entry a filtered export does not hold (not checkable).
    pub uncovered: usize,
    /// The highest entry witnessed.
    pub latest: u64,
}

impl fmt::Display for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} witnessed checkpoint(s) agree, up to entry {}",
            self.matched, self.latest
        )?;
        if self.uncovered > 0 {
            write!(
                f,
                "; {} are of entries this filtered export does not hold",
                self.uncovered
            )?;
        }
        Ok(())
    }
}

/// How the log and the witness differ: the first difference, by entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Disagreement {
    /// A witnessed checkpoint does not verify with the audit key.
    #[error(
        "the witness's checkpoint of entry {seq} is not signed by {key}: the witness file was tampered with, or belongs to another key"
    )]
    Unsigned {
        /// Its entry.
        seq: u64,
        /// The key expected.
        key: PublicKey,
    },
    /// The log ends before a witnessed entry: it was cut back.
    #[error(
        "behind its witness: the witness saw entry {seq} (signed at {at}), but the log ends at {}",
        match .ends_at { Some(last) => format!("entry {last}"), None => "no entry".to_owned() }
    )]
    Behind {
        /// The witnessed entry.
        seq: u64,
        /// When its checkpoint was signed (RFC 3339).
        at: String,
        /// The log's last entry.
        ends_at: Option<u64>,
    },
    /// A witnessed entry has another hash in the log: it was rewritten.
    #[error(
        "disagrees with its witness at entry {seq}: the witness saw hash {witnessed}, the log has {found}"
    )]
    Disagrees {
        /// The entry.
        seq: u64,
        /// The hash the witness kept.
        witnessed: String,
        /// The hash in the log.
        found: String,
    },
}

/// Compares a verified log with `witnessed`: `hashes` holds the log's hash of each witnessed
/// entry it has, `last` its last entry, and `complete` whether it holds every entry up to
/// `last` (a store, a complete export).
pub fn compare(
    witnessed: &BTreeMap<u64, Checkpoint>,
    key: &PublicKey,
    hashes: &BTreeMap<u64, String>,
    last: Option<u64>,
    complete: bool,
) -> Result<Agreement, Disagreement> {
    let mut agreement = Agreement {
        matched: 0,
        uncovered: 0,
        latest: 0,
    };
    for (seq, checkpoint) in witnessed {
        if !checkpoint.signed_by(key) {
            return Err(Disagreement::Unsigned {
                seq: *seq,
                key: *key,
            });
        }
        agreement.latest = *seq;
        match hashes.get(seq) {
            Some(found) if *found == checkpoint.head => agreement.matched += 1,
            Some(found) => {
                return Err(Disagreement::Disagrees {
                    seq: *seq,
                    witnessed: checkpoint.head.clone(),
                    found: found.clone(),
                });
            }
            None if complete || last.is_none_or(|last| *seq > last) => {
                return Err(Disagreement::Behind {
                    seq: *seq,
                    at: checkpoint.at.rfc3339(),
                    ends_at: last,
                });
            }
            None => agreement.uncovered += 1,
        }
    }
    Ok(agreement)
}

/// The entry numbers of `witnessed`.
pub fn entries(witnessed: &BTreeMap<u64, Checkpoint>) -> BTreeSet<u64> {
    witnessed.keys().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::key::AuditKey;
    use crate::model::Timestamp;

    fn line(checkpoint: &Checkpoint) -> String {
        crate::notify::Event::witnessing(checkpoint).to_string()
    }

    #[test]
    fn a_log_behind_or_rewritten_is_caught_and_one_that_agrees_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = AuditKey::load_or_generate(&dir.path().join("audit.key")).unwrap();
        let at = Timestamp::from_unix_millis(1_800_000_000_000);
        let five = key.checkpoint(5, &[5u8; 32], at);
        let nine = key.checkpoint(9, &[9u8; 32], at);
        let file = format!(
            "{}\n{{\"kind\":\"access.granted\",\"id\":\"x\"}}\n{}\n{}\n",
            line(&five),
            line(&nine),
            line(&nine)
        );
        let witnessed = read(file.as_bytes()).unwrap();
        assert_eq!(entries(&witnessed), BTreeSet::from([5, 9]));
        let public = key.public();
        let hashes = BTreeMap::from([(5, five.head.clone()), (9, nine.head.clone())]);
        let agreed = compare(&witnessed, &public, &hashes, Some(12), true).unwrap();
        assert_eq!((agreed.matched, agreed.latest), (2, 9));

        // Cut back to entry 7.
        let cut = BTreeMap::from([(5, five.head.clone())]);
        let behind = compare(&witnessed, &public, &cut, Some(7), true).unwrap_err();
        assert!(
            behind.to_string().contains("the log ends at entry 7"),
            "{behind}"
        );
        // Rewritten after entry 5.
        let rewritten = BTreeMap::from([(5, five.head.clone()), (9, "00".repeat(32))]);
        let differs = compare(&witnessed, &public, &rewritten, Some(12), true).unwrap_err();
        assert!(
            matches!(differs, Disagreement::Disagrees { seq: 9, .. }),
            "{differs}"
        );
        // A filtered export that holds only entry 5.
        let agreed = compare(&witnessed, &public, &cut, Some(12), false).unwrap();
        assert_eq!((agreed.matched, agreed.uncovered), (1, 1));
        // Another key's witness.
        let (other, _) = AuditKey::load_or_generate(&dir.path().join("other.key")).unwrap();
        let refused = compare(&witnessed, &other.public(), &hashes, Some(12), true).unwrap_err();
        assert!(matches!(refused, Disagreement::Unsigned { .. }));
    }

    #[test]
    fn a_witness_file_without_checkpoints_or_with_two_for_one_entry_is_refused() {
        assert!(
            read(b"{\"kind\":\"access.granted\"}\n")
                .unwrap_err()
                .contains("no checkpoint")
        );
        assert!(read(b"not json\n").unwrap_err().contains("line 1"));
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = AuditKey::load_or_generate(&dir.path().join("audit.key")).unwrap();
        let at = Timestamp::from_unix_millis(1);
        let a = key.checkpoint(5, &[5u8; 32], at);
        let b = key.checkpoint(5, &[6u8; 32], at);
        let file = format!("{}\n{}\n", line(&a), line(&b));
        assert!(
            read(file.as_bytes())
                .unwrap_err()
                .contains("second, different")
        );
    }
}
