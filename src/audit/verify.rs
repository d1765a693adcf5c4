//! Offline verification: recompute the chain, check every checkpoint signature, and report the
//! first broken link precisely. Used on a store file (`elevated audit verify --db`) and on an
//! export (`elevate audit verify --file`); neither needs a running daemon.
//!
//! Longer than most files: the chain, checkpoints, exports and their links are verified by one
//! walk whose every failure must name the entry; its parts only make sense together.

use std::fmt;

use super::export::{End, Header, Link, Record, parse_csv_row};
use super::key::{Checkpoint, PublicKey};
use super::{GENESIS, unhex32};
use crate::hash::hex;

/// What kind of damage was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// An entry's contents or hashes were changed.
    Altered,
    /// Entries are missing from the middle.
    Missing,
    /// Entries or checkpoints are out of order.
    Reordered,
    /// The log or the export was cut short.
    Truncated,
    /// A signature does not verify with the key.
    BadSignature,
    /// A record does not parse or is not where it belongs.
    Malformed,
}

impl Damage {
    /// A short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Damage::Altered => "altered entry",
            Damage::Missing => "missing entry",
            Damage::Reordered => "reordering",
            Damage::Truncated => "truncation",
            Damage::BadSignature => "bad signature",
            Damage::Malformed => "malformed record",
        }
    }
}

/// The first broken link: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The entry (sequence number) where the damage shows, when it concerns one.
    pub seq: Option<u64>,
    /// The kind of damage.
    pub damage: Damage,
    /// A precise description.
    pub message: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(
                f,
                "{} at entry {seq}: {}",
                self.damage.as_str(),
                self.message
            ),
            None => write!(f, "{}: {}", self.damage.as_str(), self.message),
        }
    }
}

impl std::error::Error for Broken {}

/// Sequence numbers above this are refused, so that arithmetic on them cannot overflow.
const MAX_SEQ: u64 = 1 << 62;

/// Times after 9999-12-31 are refused (they cannot be written as RFC 3339).
const MAX_AT: u64 = 253_402_300_799_999;

fn broken(seq: impl Into<Option<u64>>, damage: Damage, message: impl Into<String>) -> Broken {
    Broken {
        seq: seq.into(),
        damage,
        message: message.into(),
    }
}

fn range(from: u64, to: u64) -> String {
    if from == to {
        format!("entry {from} is")
    } else {
        format!("entries {from}–{to} are")
    }
}

/// What a successful verification covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries checked with their contents.
    pub events: u64,
    /// Entries checked by their links only (filtered exports).
    pub links: u64,
    /// Checkpoints whose signatures verified.
    pub checkpoints: u64,
    /// The first and last entry seen.
    pub first: Option<u64>,
    /// The last entry seen.
    pub last: Option<u64>,
    /// The last entry covered by a verified checkpoint.
    pub signed_through: Option<u64>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return write!(f, "no entries; {} checkpoint(s) verified", self.checkpoints);
        };
        write!(
            f,
            "entries {first}–{last}: {} with contents, {} by link; {} checkpoint signature(s) verified",
            self.events, self.links, self.checkpoints
        )?;
        match self.signed_through {
            Some(signed) if signed >= last => write!(f, "; every entry is covered by a signature"),
            Some(signed) => write!(
                f,
                "; entries after {signed} are chained but not yet covered by a checkpoint"
            ),
            None => write!(f, "; no entry is covered by a checkpoint yet"),
        }
    }
}

/// Checks entries and checkpoints fed in order of sequence number.
///
/// Entries form segments: runs of consecutive entries, each closed by a checkpoint naming its
/// last entry's hash. In a complete log every entry is present, so the first segment starts at
/// entry 1 and each later one right after the previous checkpoint. A filtered export may skip
/// from a checkpoint to any later entry, but a segment must start with an entry that has its
/// contents (a link alone proves nothing about what came before it).
#[derive(Debug)]
pub struct Chain {
    key: PublicKey,
    complete: bool,
    /// The last entry of the open segment: its number and hash.
    open: Option<(u64, [u8; 32])>,
    /// The last checkpoint: its entry and head.
    sealed: Option<(u64, [u8; 32])>,
    summary: Summary,
}

impl Chain {
    /// A checker of a log signed with `key`; `complete` when no entry may be absent.
    pub fn new(key: PublicKey, complete: bool) -> Self {
        Self {
            key,
            complete,
            open: None,
            sealed: None,
            summary: Summary::default(),
        }
    }

    /// An entry with its contents: `content` is the digest of its fields.
    pub fn event(
        &mut self,
        seq: u64,
        prev_hash: &str,
        hash: &str,
        content: &[u8; 32],
    ) -> Result<(), Broken> {
        let (prev, stated) = Self::hashes(seq, prev_hash, hash)?;
        let intact = super::link_hash(&prev, content) == stated;
        self.event_checked(seq, prev, stated, intact)
    }

    /// [`Chain::event`] with the hashes as bytes (as the store keeps them), when whether
    /// `stated` is the link hash of `prev` and the entry's content digest (`intact`) was found
    /// already.
    pub fn event_checked(
        &mut self,
        seq: u64,
        prev: [u8; 32],
        stated: [u8; 32],
        intact: bool,
    ) -> Result<(), Broken> {
        if seq == 0 || seq > MAX_SEQ {
            return Err(broken(
                seq,
                Damage::Malformed,
                "the sequence number is out of range",
            ));
        }
        if !intact {
            return Err(broken(
                seq,
                Damage::Altered,
                "its contents do not match its hash (the entry was edited)",
            ));
        }
        self.place(seq, prev, stated, false)?;
        self.summary.events += 1;
        Ok(())
    }

    /// An entry known by its link only.
    pub fn link(&mut self, link: &Link) -> Result<(), Broken> {
        let (prev, stated) = Self::hashes(link.seq, &link.prev_hash, &link.hash)?;
        if link.expected_hash() != Some(stated) {
            return Err(broken(
                link.seq,
                Damage::Altered,
                "its link record does not hash to its stated hash",
            ));
        }
        self.place(link.seq, prev, stated, true)?;
        self.summary.links += 1;
        Ok(())
    }

    fn hashes(seq: u64, prev_hash: &str, hash: &str) -> Result<([u8; 32], [u8; 32]), Broken> {
        if seq == 0 || seq > MAX_SEQ {
            return Err(broken(
                seq,
                Damage::Malformed,
                "the sequence number is out of range",
            ));
        }
        let prev = unhex32(prev_hash).ok_or_else(|| {
            broken(
                seq,
                Damage::Altered,
                "its previous-hash field is not a SHA-256",
            )
        })?;
        let stated = unhex32(hash)
            .ok_or_else(|| broken(seq, Damage::Altered, "its hash field is not a SHA-256"))?;
        Ok((prev, stated))
    }

    fn place(
        &mut self,
        seq: u64,
        prev: [u8; 32],
        hash: [u8; 32],
        link: bool,
    ) -> Result<(), Broken> {
        match self.open {
            Some((last, last_hash)) => {
                if seq <= last {
                    return Err(broken(
                        seq,
                        Damage::Reordered,
                        format!("it comes after entry {last}"),
                    ));
                }
                if seq > last + 1 {
                    return Err(broken(
                        last + 1,
                        Damage::Missing,
                        format!(
                            "{} missing (entry {seq} follows entry {last})",
                            range(last + 1, seq - 1)
                        ),
                    ));
                }
                if prev != last_hash {
                    return Err(broken(
                        seq,
                        Damage::Altered,
                        format!(
                            "it does not link to entry {last} (entry {last} or this one was replaced)"
                        ),
                    ));
                }
            }
            None => {
                let (base, base_hash) = self.sealed.unwrap_or((0, GENESIS));
                if seq <= base {
                    return Err(broken(
                        seq,
                        Damage::Reordered,
                        format!("it comes after the checkpoint at entry {base}"),
                    ));
                }
                if seq == base + 1 {
                    if prev != base_hash {
                        let what = if base == 0 {
                            "the first entry does not start from the genesis hash".to_owned()
                        } else {
                            format!("it does not link to entry {base}, which the checkpoint signed")
                        };
                        return Err(broken(seq, Damage::Altered, what));
                    }
                } else if self.complete {
                    return Err(broken(
                        base + 1,
                        Damage::Missing,
                        format!(
                            "{} missing (entry {seq} follows entry {base})",
                            range(base + 1, seq - 1)
                        ),
                    ));
                } else if link {
                    return Err(broken(
                        seq - 1,
                        Damage::Missing,
                        format!(
                            "entry {} is missing: link {seq} cannot start a run of entries",
                            seq - 1
                        ),
                    ));
                }
            }
        }
        self.open = Some((seq, hash));
        self.summary.first.get_or_insert(seq);
        self.summary.last = Some(seq);
        Ok(())
    }

    /// A checkpoint, which must verify with the key and name the hash of the entry before it.
    pub fn checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), Broken> {
        let seq = checkpoint.seq;
        if seq == 0 || seq > MAX_SEQ {
            return Err(broken(
                seq,
                Damage::Malformed,
                "the checkpoint's sequence number is out of range",
            ));
        }
        if !checkpoint.signed_by(&self.key) {
            let whose = if checkpoint.key == self.key {
                "its signature does not match its contents".to_owned()
            } else {
                format!(
                    "it was not signed by {} (it names key {})",
                    self.key, checkpoint.key
                )
            };
            return Err(broken(
                seq,
                Damage::BadSignature,
                format!("checkpoint: {whose}"),
            ));
        }
        let head = unhex32(&checkpoint.head)
            .ok_or_else(|| broken(seq, Damage::Malformed, "checkpoint head is not a SHA-256"))?;
        match self.open {
            Some((last, last_hash)) => {
                if seq < last {
                    return Err(broken(
                        seq,
                        Damage::Reordered,
                        format!("the checkpoint of entry {seq} comes after entry {last}"),
                    ));
                }
                if seq > last {
                    return Err(broken(
                        last + 1,
                        Damage::Missing,
                        format!(
                            "{} missing before the checkpoint that signs entry {seq}",
                            range(last + 1, seq)
                        ),
                    ));
                }
                if head != last_hash {
                    return Err(broken(
                        seq,
                        Damage::Altered,
                        format!(
                            "the checkpoint signed hash {} but the entry has hash {} (the entry was replaced)",
                            checkpoint.head,
                            hex(&last_hash)
                        ),
                    ));
                }
            }
            None => {
                let base = self.sealed.map_or(0, |(seq, _)| seq);
                if seq <= base {
                    return Err(broken(
                        seq,
                        Damage::Reordered,
                        format!(
                            "the checkpoint of entry {seq} comes after the checkpoint of entry {base}"
                        ),
                    ));
                }
                if self.complete {
                    return Err(broken(
                        base + 1,
                        Damage::Missing,
                        format!(
                            "{} missing before the checkpoint that signs entry {seq}",
                            range(base + 1, seq)
                        ),
                    ));
                }
                return Err(broken(
                    seq,
                    Damage::Malformed,
                    "a checkpoint with no entries before it",
                ));
            }
        }
        self.open = None;
        self.sealed = Some((seq, head));
        self.summary.checkpoints += 1;
        self.summary.signed_through = Some(seq);
        Ok(())
    }

    /// The entry that must come next, when that is determined: the one after the last entry
    /// of a run, or (in a complete log) the one after the last checkpoint.
    pub fn expected_next(&self) -> Option<u64> {
        match (self.open, self.sealed) {
            (Some((last, _)), _) => Some(last + 1),
            (None, sealed) if self.complete => Some(sealed.map_or(1, |(seq, _)| seq + 1)),
            (None, _) => None,
        }
    }

    /// The last entry seen, if any.
    pub fn last(&self) -> Option<u64> {
        self.summary.last
    }

    /// The last checkpoint seen, if any.
    pub fn sealed(&self) -> Option<u64> {
        self.sealed.map(|(seq, _)| seq)
    }

    /// Entries after the last checkpoint, when there are any: (first, last).
    pub fn unsealed(&self) -> Option<(u64, u64)> {
        let (last, _) = self.open?;
        Some((self.sealed.map_or(1, |(seq, _)| seq + 1), last))
    }

    /// What was checked.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

/// What verifying an export found, when it is intact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The export's header.
    pub header: Header,
    /// What was checked.
    pub summary: Summary,
}

/// Verifies an export (JSON lines or CSV, told apart by the first byte) against `key`.
pub fn verify_export(bytes: &[u8], key: &PublicKey) -> Result<Verified, Broken> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(broken(None, Damage::Truncated, "the file is empty"));
    }
    let records = if bytes.first() == Some(&b'{') {
        split_jsonl(bytes)?
    } else {
        split_csv(bytes)?
    };
    let mut records = records.into_iter();
    let header = match records.next() {
        Some((_, Record::Header(header))) => header,
        Some(_) => {
            return Err(broken(
                None,
                Damage::Malformed,
                "the export does not start with its header",
            ));
        }
        None => return Err(broken(None, Damage::Truncated, "the file is empty")),
    };
    if header.format != super::export::FORMAT || header.version != super::export::VERSION {
        return Err(broken(
            None,
            Damage::Malformed,
            format!(
                "not an {} version {} file (it says {} version {})",
                super::export::FORMAT,
                super::export::VERSION,
                header.format,
                header.version
            ),
        ));
    }
    let records: Vec<(usize, Record)> = records.collect();
    // Where each entry is, to tell entries out of order from missing ones.
    let positions: std::collections::HashMap<u64, usize> = records
        .iter()
        .enumerate()
        .filter_map(|(index, (_, record))| match record {
            Record::Event(_) | Record::Link(_) => seq_of(record).map(|seq| (seq, index)),
            _ => None,
        })
        .collect();
    let mut chain = Chain::new(*key, header.complete);
    // The header is record 1.
    for (index, (count, (offset, record))) in (1u64..).zip(records).enumerate() {
        if let (Some(seq), Some(next)) = (entry_seq(&record), chain.expected_next()) {
            if seq > next && positions.get(&next).is_some_and(|&at| at > index) {
                return Err(broken(
                    next,
                    Damage::Reordered,
                    format!("entry {next} comes after entry {seq}: the entries are out of order"),
                ));
            }
        }
        match record {
            Record::Event(event) => {
                if event.at > MAX_AT {
                    return Err(broken(
                        event.seq,
                        Damage::Altered,
                        "its timestamp is after the year 9999",
                    ));
                }
                let at_text = crate::model::Timestamp::from_unix_millis(event.at).rfc3339();
                if event.time != at_text {
                    return Err(broken(
                        event.seq,
                        Damage::Altered,
                        format!(
                            "its time {:?} does not match its timestamp ({at_text})",
                            event.time
                        ),
                    ));
                }
                chain.event(
                    event.seq,
                    &event.prev_hash,
                    &event.hash,
                    &event.content().digest(),
                )?;
            }
            Record::Link(link) => chain.link(&link)?,
            Record::Checkpoint(checkpoint) => chain.checkpoint(&checkpoint)?,
            Record::Header(_) => {
                return Err(broken(chain.last(), Damage::Malformed, "a second header"));
            }
            Record::End(end) => {
                return finish(bytes, offset, count, &end, key, chain, header);
            }
        }
    }
    let after = match (chain.last(), chain.sealed()) {
        (Some(last), Some(sealed)) if sealed >= last => format!("the checkpoint at entry {sealed}"),
        (Some(last), _) => format!("entry {last}"),
        (None, _) => "its header".to_owned(),
    };
    Err(broken(
        chain.last(),
        Damage::Truncated,
        format!("the export ends after {after} without its signed end record: it was cut short"),
    ))
}

fn finish(
    bytes: &[u8],
    offset: usize,
    count: u64,
    end: &End,
    key: &PublicKey,
    chain: Chain,
    header: Header,
) -> Result<Verified, Broken> {
    if let Some((first, last)) = chain.unsealed() {
        return Err(broken(
            first,
            Damage::Truncated,
            format!(
                "{} not covered by a checkpoint before the end record",
                range(first, last)
            ),
        ));
    }
    if offset + end_len(bytes, offset) < bytes.len() {
        return Err(broken(
            chain.last(),
            Damage::Malformed,
            "records follow the end record",
        ));
    }
    let digest = hex(ring::digest::digest(&ring::digest::SHA256, &bytes[..offset]).as_ref());
    if !key.verifies(&End::message(end.records, &end.digest), &end.signature) {
        return Err(broken(
            None,
            Damage::BadSignature,
            format!("the end record was not signed by {key}"),
        ));
    }
    if end.records != count || end.digest != digest {
        return Err(broken(
            None,
            Damage::Altered,
            format!(
                "the signed end record covers {} records with digest {}, but the file has {count} records with digest {digest}: lines were added, removed or changed",
                end.records, end.digest
            ),
        ));
    }
    Ok(Verified {
        header,
        summary: chain.summary().clone(),
    })
}

/// Length of the record (line) starting at `offset`, its newline included.
fn end_len(bytes: &[u8], offset: usize) -> usize {
    bytes[offset..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len() - offset, |n| n + 1)
}

/// Records with their byte offsets.
/// The hashes an export states for the entries numbered in `wanted` (those it holds, as an
/// entry or a link), for comparing with a witness once the export verified.
pub fn entry_hashes(
    bytes: &[u8],
    wanted: &std::collections::BTreeSet<u64>,
) -> Result<std::collections::BTreeMap<u64, String>, Broken> {
    let records = if bytes.first() == Some(&b'{') {
        split_jsonl(bytes)?
    } else {
        split_csv(bytes)?
    };
    Ok(records
        .into_iter()
        .filter_map(|(_, record)| match record {
            Record::Event(event) => Some((event.seq, event.hash)),
            Record::Link(link) => Some((link.seq, link.hash)),
            _ => None,
        })
        .filter(|(seq, _)| wanted.contains(seq))
        .collect())
}

fn split_jsonl(bytes: &[u8]) -> Result<Vec<(usize, Record)>, Broken> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut last_seq = None;
    for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if !text.is_empty() {
            let record: Record = serde_json::from_slice(text).map_err(|error| {
                broken(
                    last_seq.map(|s: u64| s.saturating_add(1)),
                    Damage::Malformed,
                    format!("line {} is not a valid record: {error}", index + 1),
                )
            })?;
            last_seq = seq_of(&record).or(last_seq);
            out.push((offset, record));
        }
        offset += line.len();
    }
    Ok(out)
}

fn split_csv(bytes: &[u8]) -> Result<Vec<(usize, Record)>, Broken> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let columns = reader
        .headers()
        .map_err(|error| {
            broken(
                None,
                Damage::Malformed,
                format!("not an export (JSON lines or CSV): {error}"),
            )
        })?
        .clone();
    if columns.iter().ne(super::export::CSV_COLUMNS) {
        return Err(broken(
            None,
            Damage::Malformed,
            "not an export: the CSV header row differs",
        ));
    }
    let mut out = Vec::new();
    let mut row = csv::StringRecord::new();
    let mut last_seq = None;
    loop {
        let offset = usize::try_from(reader.position().byte()).unwrap_or(usize::MAX);
        let line = reader.position().line();
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {
                let record = parse_csv_row(&row).map_err(|message| {
                    broken(
                        last_seq.map(|s: u64| s.saturating_add(1)),
                        Damage::Malformed,
                        format!("line {line}: {message}"),
                    )
                })?;
                last_seq = seq_of(&record).or(last_seq);
                out.push((offset, record));
            }
            Err(error) => {
                return Err(broken(
                    last_seq.map(|s: u64| s.saturating_add(1)),
                    Damage::Malformed,
                    format!("line {line}: {error}"),
                ));
            }
        }
    }
    Ok(out)
}

fn entry_seq(record: &Record) -> Option<u64> {
    match record {
        Record::Event(_) | Record::Link(_) => seq_of(record),
        _ => None,
    }
}

fn seq_of(record: &Record) -> Option<u64> {
    match record {
        Record::Event(event) => Some(event.seq),
        Record::Link(link) => Some(link.seq),
        Record::Checkpoint(checkpoint) => Some(checkpoint.seq),
        Record::Header(_) | Record::End(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::export::{Encoder, ExportedEvent, Format, Header, Link, Record};
    use crate::audit::key::AuditKey;
    use crate::audit::query::Filter;
    use crate::audit::{Actor, Draft, Event};
    use crate::model::fixtures::t;

    /// Ten chained events with a checkpoint after the fifth and the tenth.
    fn log(key: &AuditKey) -> (Vec<Event>, Vec<Checkpoint>) {
        let mut head = GENESIS;
        let mut events = Vec::new();
        let mut checkpoints = Vec::new();
        for seq in 1..=10 {
            let draft = Draft::new(t(seq), Actor::System, "lease.expired").detail("n", seq);
            let (event, hash) = Event::chain(draft, seq, &head);
            head = hash;
            events.push(event);
            if seq % 5 == 0 {
                checkpoints.push(key.checkpoint(seq, &head, t(seq)));
            }
        }
        (events, checkpoints)
    }

    fn header(key: &AuditKey, complete: bool) -> Header {
        Header {
            format: crate::audit::export::FORMAT.to_owned(),
            version: crate::audit::export::VERSION,
            exported_at: t(20),
            exported_by: "auditor".to_owned(),
            filter: Filter::default(),
            complete,
            head_seq: 10,
            key: key.public(),
        }
    }

    fn encode(key: &AuditKey, records: &[Record], format: Format) -> Vec<u8> {
        let mut encoder = Encoder::new(format);
        let mut out = Vec::new();
        for record in records {
            out.extend(encoder.record(record));
        }
        out.extend(encoder.finish(key));
        out
    }

    fn complete(key: &AuditKey) -> Vec<Record> {
        let (events, checkpoints) = log(key);
        let mut records = vec![Record::Header(header(key, true))];
        for event in &events {
            records.push(Record::Event(ExportedEvent::of(event)));
            if let Some(c) = checkpoints.iter().find(|c| c.seq == event.seq) {
                records.push(Record::Checkpoint(c.clone()));
            }
        }
        records
    }

    #[test]
    fn an_intact_export_verifies_in_both_formats() {
        let key = AuditKey::ephemeral().unwrap();
        for format in [Format::Jsonl, Format::Csv] {
            let bytes = encode(&key, &complete(&key), format);
            let verified = verify_export(&bytes, &key.public()).unwrap();
            assert_eq!(verified.summary.events, 10);
            assert_eq!(verified.summary.checkpoints, 2);
            assert_eq!(verified.summary.signed_through, Some(10));
        }
    }

    #[test]
    fn a_filtered_export_is_checked_through_its_links() {
        let key = AuditKey::ephemeral().unwrap();
        let (events, checkpoints) = log(&key);
        let mut records = vec![Record::Header(header(&key, false))];
        // Entry 7 with its contents, 8–10 as links, then the checkpoint of 10.
        records.push(Record::Event(ExportedEvent::of(&events[6])));
        for event in &events[7..] {
            records.push(Record::Link(Link::of(event)));
        }
        records.push(Record::Checkpoint(checkpoints[1].clone()));
        let verified =
            verify_export(&encode(&key, &records, Format::Jsonl), &key.public()).unwrap();
        assert_eq!((verified.summary.events, verified.summary.links), (1, 3));

        // A forged link breaks the chain up to the signature.
        let mut forged = records.clone();
        if let Record::Link(link) = &mut forged[2] {
            link.content = crate::hash::hex(&[7; 32]);
        }
        let error =
            verify_export(&encode(&key, &forged, Format::Jsonl), &key.public()).unwrap_err();
        assert_eq!((error.seq, error.damage), (Some(8), Damage::Altered));

        // A run may not start with a link: the entry before it is missing.
        let mut headless = records.clone();
        headless.remove(1);
        let error =
            verify_export(&encode(&key, &headless, Format::Jsonl), &key.public()).unwrap_err();
        assert_eq!((error.seq, error.damage), (Some(7), Damage::Missing));

        // An entry edited and rehashed no longer matches what the checkpoint signed.
        let mut rehashed = records.clone();
        let mut edited = events[9].clone();
        edited.details.insert("n".into(), "99".into());
        let prev = crate::audit::unhex32(&edited.prev_hash).unwrap();
        edited.hash = crate::hash::hex(&crate::audit::link_hash(&prev, &edited.content().digest()));
        rehashed[4] = Record::Event(ExportedEvent::of(&edited));
        let error =
            verify_export(&encode(&key, &rehashed, Format::Jsonl), &key.public()).unwrap_err();
        assert_eq!((error.seq, error.damage), (Some(10), Damage::Altered));
        assert!(error.message.contains("checkpoint signed hash"), "{error}");
    }

    #[test]
    fn each_kind_of_damage_is_named_with_its_entry() {
        let key = AuditKey::ephemeral().unwrap();
        let records = complete(&key);
        let check = |records: &[Record]| {
            verify_export(&encode(&key, records, Format::Jsonl), &key.public()).unwrap_err()
        };
        // Entry 3 (index 3: the header comes first) removed.
        let mut missing = records.clone();
        missing.remove(3);
        let error = check(&missing);
        assert_eq!((error.seq, error.damage), (Some(3), Damage::Missing));
        // Entries 2 and 3 swapped.
        let mut swapped = records.clone();
        swapped.swap(2, 3);
        let error = check(&swapped);
        assert_eq!((error.seq, error.damage), (Some(2), Damage::Reordered));
        // The first checkpoint re-signed by another key.
        let other = AuditKey::ephemeral().unwrap();
        let mut resigned = records.clone();
        resigned[6] = Record::Checkpoint(other.checkpoint(5, &[0; 32], t(5)));
        let error = check(&resigned);
        assert_eq!((error.seq, error.damage), (Some(5), Damage::BadSignature));
        // The first entry does not start from the genesis hash.
        let (events, _) = log(&key);
        let mut moved = records.clone();
        moved.remove(1);
        moved.insert(1, Record::Event(ExportedEvent::of(&events[0])));
        if let Record::Event(event) = &mut moved[1] {
            event.time = t(999).rfc3339();
        }
        assert_eq!(check(&moved).damage, Damage::Altered);
    }

    #[test]
    fn cut_padded_or_empty_files_fail() {
        let key = AuditKey::ephemeral().unwrap();
        let bytes = encode(&key, &complete(&key), Format::Jsonl);
        let text = String::from_utf8(bytes.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let cut = lines[..lines.len() - 1].join("\n");
        let error = verify_export(cut.as_bytes(), &key.public()).unwrap_err();
        assert_eq!(error.damage, Damage::Truncated);
        let mut padded = bytes.clone();
        padded.extend_from_slice(lines[1].as_bytes());
        padded.push(b'\n');
        assert_eq!(
            verify_export(&padded, &key.public()).unwrap_err().damage,
            Damage::Malformed
        );
        assert_eq!(
            verify_export(b"", &key.public()).unwrap_err().damage,
            Damage::Truncated
        );
        assert_eq!(
            verify_export(b"{\"type\":\"end\"", &key.public())
                .unwrap_err()
                .damage,
            Damage::Malformed
        );
        assert_eq!(
            verify_export(b"garbage", &key.public()).unwrap_err().damage,
            Damage::Malformed
        );
    }
}
