//! The export format: what `elevate audit export` writes and `elevate audit verify` reads.
//!
//! An export is a sequence of records, oldest entry first, as JSON lines or as CSV rows:
//!
//! 1. `header`: format and version, who exported what and when, the filter, the key.
//! 2. `event` records for matching entries, with their chain hashes. When the export is
//!    filtered, each matching entry is followed by `link` records for the entries between it
//!    and the checkpoint that covers it (their sequence number, hashes and content digest, but
//!    not their contents), so that the chain can still be recomputed up to a signature.
//! 3. `checkpoint` records: a signed head covering the entries before it. The daemon signs a
//!    fresh checkpoint when an export starts, so every exported entry is covered.
//! 4. `end`: the number of records before it and the SHA-256 of every byte before it, signed
//!    with the audit key. A file cut short, or with lines added or removed, fails this even
//!    where the chain alone could not tell.
//!
//! In CSV, an event's fields are columns (an empty `actor` is the daemon itself; `details` is
//! a JSON object); the other records carry their JSON in the `record` column.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::key::{AuditKey, Checkpoint, PublicKey};
use super::query::Filter;
use super::{Content, Event, link_hash, unhex32};
use crate::hash::hex;
use crate::model::Timestamp;

/// The `format` of a header.
pub const FORMAT: &str = "elevate-audit-export";
/// The version of the format this build writes and reads.
pub const VERSION: u32 = 1;

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 13] = [
    "type",
    "seq",
    "at",
    "time",
    "actor",
    "action",
    "request",
    "resource",
    "principal",
    "details",
    "prev_hash",
    "hash",
    "record",
];

/// What the export holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// When the export was made.
    pub exported_at: Timestamp,
    /// Who made it.
    pub exported_by: String,
    /// Which events it holds.
    pub filter: Filter,
    /// Whether it holds every entry of the log up to `head_seq` (no filter).
    pub complete: bool,
    /// The last entry of the log when the export began.
    pub head_seq: u64,
    /// The audit key that signed its checkpoints.
    pub key: PublicKey,
}

/// One entry with its contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedEvent {
    /// Position in the log.
    pub seq: u64,
    /// Unix milliseconds.
    pub at: u64,
    /// `at` as RFC 3339, for people.
    pub time: String,
    /// The principal who caused it; `None` (empty in CSV) for the daemon.
    pub actor: Option<String>,
    /// What happened.
    pub action: String,
    /// The request.
    pub request: Option<String>,
    /// The resource.
    pub resource: Option<String>,
    /// The principal it concerns.
    pub principal: Option<String>,
    /// Details.
    pub details: BTreeMap<String, String>,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

impl ExportedEvent {
    /// The export form of a stored event.
    pub fn of(event: &Event) -> Self {
        let content = event.content();
        Self {
            seq: content.seq,
            at: content.at,
            time: event.at.rfc3339(),
            actor: content.actor,
            action: content.action,
            request: content.request,
            resource: content.resource,
            principal: content.principal,
            details: content.details,
            prev_hash: event.prev_hash.clone(),
            hash: event.hash.clone(),
        }
    }

    /// The hashed fields.
    pub fn content(&self) -> Content {
        Content {
            seq: self.seq,
            at: self.at,
            actor: self.actor.clone(),
            action: self.action.clone(),
            request: self.request.clone(),
            resource: self.resource.clone(),
            principal: self.principal.clone(),
            details: self.details.clone(),
        }
    }
}

/// An entry of the chain without its contents: enough to recompute its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Position in the log.
    pub seq: u64,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// The digest of the entry's contents.
    pub content: String,
    /// The entry's hash.
    pub hash: String,
}

impl Link {
    /// The link of a stored event.
    pub fn of(event: &Event) -> Self {
        Self {
            seq: event.seq,
            prev_hash: event.prev_hash.clone(),
            content: hex(&event.content_digest()),
            hash: event.hash.clone(),
        }
    }

    /// The hash the link should have; `None` when a field is not a hash.
    pub fn expected_hash(&self) -> Option<[u8; 32]> {
        Some(link_hash(
            &unhex32(&self.prev_hash)?,
            &unhex32(&self.content)?,
        ))
    }
}

/// The signed end of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    /// Records before this one (the header included).
    pub records: u64,
    /// Hex SHA-256 of every byte before this record.
    pub digest: String,
    /// Hex Ed25519 signature of [`End::message`].
    pub signature: String,
}

impl End {
    /// The bytes that are signed.
    pub fn message(records: u64, digest: &str) -> Vec<u8> {
        format!("elevate.audit.export.v1\n{records}\n{digest}").into_bytes()
    }
}

/// One record of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The first record.
    Header(Header),
    /// An entry with its contents.
    Event(ExportedEvent),
    /// An entry without its contents.
    Link(Link),
    /// A signed head.
    Checkpoint(Checkpoint),
    /// The last record.
    End(End),
}

/// How an export is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "jsonl" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            other => Err(format!(
                "unknown export format '{}': use jsonl or csv",
                crate::model::one_line(&other.chars().take(32).collect::<String>())
            )),
        }
    }
}

/// Turns records into bytes, keeping the count and digest the end record signs.
pub struct Encoder {
    format: Format,
    digest: ring::digest::Context,
    records: u64,
    started: bool,
}

impl Encoder {
    /// An encoder for `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            records: 0,
            started: false,
        }
    }

    /// The bytes of `record` (after the CSV header row, for the first one).
    pub fn record(&mut self, record: &Record) -> Vec<u8> {
        let bytes = self.encode(record);
        self.digest.update(&bytes);
        self.records += 1;
        bytes
    }

    /// The signed end record.
    pub fn finish(mut self, key: &AuditKey) -> Vec<u8> {
        let digest = hex(self.digest.clone().finish().as_ref());
        let end = Record::End(End {
            records: self.records,
            signature: key.sign(&End::message(self.records, &digest)),
            digest,
        });
        self.encode(&end)
    }

    fn encode(&mut self, record: &Record) -> Vec<u8> {
        match self.format {
            Format::Jsonl => {
                // Records are plain data: serializing cannot fail.
                let mut line = serde_json::to_vec(record).unwrap_or_default();
                line.push(b'\n');
                line
            }
            Format::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(Vec::new());
                if !self.started {
                    self.started = true;
                    let _ = writer.write_record(CSV_COLUMNS);
                }
                // Writing to a Vec cannot fail.
                let _ = writer.write_record(csv_row(record));
                writer.into_inner().unwrap_or_default()
            }
        }
    }
}

fn csv_row(record: &Record) -> [String; 13] {
    let mut row: [String; 13] = Default::default();
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    match record {
        Record::Event(event) => {
            row[0] = "event".to_owned();
            row[1] = event.seq.to_string();
            row[2] = event.at.to_string();
            row[3] = event.time.clone();
            row[4] = text(&event.actor);
            row[5] = event.action.clone();
            row[6] = text(&event.request);
            row[7] = text(&event.resource);
            row[8] = text(&event.principal);
            row[9] = serde_json::to_string(&event.details).unwrap_or_default();
            row[10] = event.prev_hash.clone();
            row[11] = event.hash.clone();
        }
        other => {
            let (kind, seq) = match other {
                Record::Header(_) => ("header", None),
                Record::Link(link) => ("link", Some(link.seq)),
                Record::Checkpoint(checkpoint) => ("checkpoint", Some(checkpoint.seq)),
                Record::End(_) => ("end", None),
                Record::Event(_) => ("event", None),
            };
            row[0] = kind.to_owned();
            row[1] = seq.map(|s| s.to_string()).unwrap_or_default();
            row[12] = serde_json::to_string(other).unwrap_or_default();
        }
    }
    row
}

/// Parses one CSV row back into a record; `Err` says what is wrong with it.
pub fn parse_csv_row(row: &csv::StringRecord) -> Result<Record, String> {
    let field = |index: usize| row.get(index).unwrap_or_default();
    let optional = |index: usize| Some(field(index).to_owned()).filter(|v| !v.is_empty());
    match field(0) {
        "event" => {
            let number = |index: usize, name: &str| {
                field(index)
                    .parse::<u64>()
                    .map_err(|_| format!("{name} is not a number: {:?}", field(index)))
            };
            Ok(Record::Event(ExportedEvent {
                seq: number(1, "seq")?,
                at: number(2, "at")?,
                time: field(3).to_owned(),
                actor: optional(4),
                action: field(5).to_owned(),
                request: optional(6),
                resource: optional(7),
                principal: optional(8),
                details: serde_json::from_str(field(9))
                    .map_err(|error| format!("details are not a JSON object: {error}"))?,
                prev_hash: field(10).to_owned(),
                hash: field(11).to_owned(),
            }))
        }
        "header" | "link" | "checkpoint" | "end" => {
            if (2..12).any(|index| !field(index).is_empty()) {
                return Err(format!(
                    "a {} row must leave the entry columns empty",
                    field(0)
                ));
            }
            let record: Record = serde_json::from_str(field(12))
                .map_err(|error| format!("the record column does not parse: {error}"))?;
            let kind = match &record {
                Record::Header(_) => "header",
                Record::Link(_) => "link",
                Record::Checkpoint(_) => "checkpoint",
                Record::End(_) => "end",
                Record::Event(_) => "event",
            };
            if kind != field(0) {
                return Err(format!(
                    "the type column says {} but the record is a {kind}",
                    field(0)
                ));
            }
            Ok(record)
        }
        other => Err(format!(
            "unknown record type {:?}",
            other.chars().take(32).collect::<String>()
        )),
    }
}
