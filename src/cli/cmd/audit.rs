//! `elevate audit`: query the audit trail (auditors), export it, or verify an export with
//! `elevate audit verify`, which needs no daemon at all.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};
use tokio_stream::StreamExt;

use crate::audit::key::PublicKey;
use crate::audit::verify;
use crate::cli::CliError;
use crate::cli::client::Clients;
use crate::cli::output::Format;
use crate::cli::session::Session;
use crate::model::{Timestamp, one_line};
use crate::proto::v1 as pb;

/// Which events: every given condition must hold.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct FilterArgs {
    /// Events about this principal (as requester or holder) or caused by them.
    #[arg(long)]
    pub principal: Option<String>,
    /// Events about this resource.
    #[arg(long)]
    pub resource: Option<String>,
    /// Events of this action (lease.expired) or family (lease.*).
    #[arg(long)]
    pub action: Option<String>,
    /// At or after: RFC 3339, a date, or a duration ago (7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Before: RFC 3339, a date, or a duration ago.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// `elevate audit`: query, or one of the subcommands.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// Export or verify instead of querying.
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Which events.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many events, newest first; 0 for all of them.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// The audit subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Write a signed export of the matching events to standard output.
    Export {
        /// Which events.
        #[command(flatten)]
        filter: FilterArgs,
        /// jsonl or csv.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
    /// Verify an export offline: the chain, every checkpoint signature, the signed end.
    Verify {
        /// The export file.
        #[arg(long)]
        file: PathBuf,
        /// The audit public key (ed25519:…, from `elevated audit pubkey`) or a file holding it.
        #[arg(long)]
        pubkey: String,
        /// A witness file (what the `[audit] witness` notifier kept): the export must not be
        /// behind, nor disagree with, any checkpoint in it.
        #[arg(long)]
        witness: Option<PathBuf>,
    },
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

pub(super) fn millis(option: &str, text: &Option<String>) -> Result<Option<i64>, CliError> {
    let Some(text) = text else { return Ok(None) };
    let at = Timestamp::parse_when(text, now())
        .map_err(|error| CliError::Usage(format!("--{option}: {error}")))?;
    Ok(Some(i64::try_from(at.unix_millis()).unwrap_or(i64::MAX)))
}

impl FilterArgs {
    fn to_proto(&self, limit: u32) -> Result<pb::QueryEventsRequest, CliError> {
        Ok(pb::QueryEventsRequest {
            principal: self.principal.clone().unwrap_or_default(),
            resource: self.resource.clone().unwrap_or_default(),
            action: self.action.clone().unwrap_or_default(),
            since_ms: millis("since", &self.since)?,
            until_ms: millis("until", &self.until)?,
            limit,
        })
    }
}

/// Reads the public key from the argument, or from the file it names.
pub fn public_key(argument: &str) -> Result<PublicKey, CliError> {
    let text = if Path::new(argument).is_file() {
        std::fs::read_to_string(argument).map_err(|error| {
            CliError::Usage(format!(
                "cannot read the public key file {argument}: {error}"
            ))
        })?
    } else {
        argument.to_owned()
    };
    text.parse()
        .map_err(|error| CliError::Usage(format!("--pubkey: {error}")))
}

/// `elevate audit verify`: no daemon, no certificates.
pub fn verify_file(
    file: &Path,
    pubkey: &str,
    witness: Option<&Path>,
    format: Format,
) -> Result<(), CliError> {
    let key = public_key(pubkey)?;
    let bytes = std::fs::read(file)
        .map_err(|error| CliError::Usage(format!("cannot read {}: {error}", file.display())))?;
    let witnessed = witness
        .map(|witness| {
            let text = std::fs::read(witness).map_err(|error| {
                CliError::Usage(format!("cannot read {}: {error}", witness.display()))
            })?;
            crate::audit::witness::read(&text)
                .map_err(|error| CliError::Usage(format!("{}: {error}", witness.display())))
        })
        .transpose()?;
    match verify::verify_export(&bytes, &key) {
        Ok(verified) => {
            let agreement = match &witnessed {
                None => None,
                Some(witnessed) => {
                    let wanted = crate::audit::witness::entries(witnessed);
                    let hashes = verify::entry_hashes(&bytes, &wanted).map_err(|broken| {
                        CliError::Verify(format!("{}: {broken}", file.display()))
                    })?;
                    let agreed = crate::audit::witness::compare(
                        witnessed,
                        &key,
                        &hashes,
                        verified.summary.last,
                        verified.header.complete,
                    )
                    .map_err(|disagreement| {
                        CliError::Verify(format!(
                            "{}: verification failed: {disagreement}",
                            file.display()
                        ))
                    })?;
                    Some(agreed)
                }
            };
            let header = &verified.header;
            match format {
                Format::Json => println!(
                    "{}",
                    json!({
                        "ok": true,
                        "file": file.display().to_string(),
                        "key": key.to_string(),
                        "exported_by": header.exported_by,
                        "exported_at": header.exported_at.rfc3339(),
                        "complete": header.complete,
                        "events": verified.summary.events,
                        "links": verified.summary.links,
                        "checkpoints": verified.summary.checkpoints,
                        "first_seq": verified.summary.first,
                        "last_seq": verified.summary.last,
                        "witness": agreement.as_ref().map(|agreed| json!({
                            "matched": agreed.matched,
                            "uncovered": agreed.uncovered,
                            "latest_seq": agreed.latest,
                        })),
                    })
                ),
                Format::Table => {
                    println!("{}: intact", file.display());
                    println!("  {}", verified.summary);
                    println!(
                        "  exported by {} at {} ({}); signed by {key}",
                        header.exported_by,
                        header.exported_at,
                        if header.complete {
                            "the whole log".to_owned()
                        } else {
                            format!(
                                "filtered: {}",
                                serde_json::to_string(&header.filter).unwrap_or_default()
                            )
                        }
                    );
                    if let Some(agreed) = &agreement {
                        println!("  witness: {agreed}");
                    }
                }
            }
            Ok(())
        }
        Err(broken) => Err(CliError::Verify(format!(
            "{}: verification failed: {broken}",
            file.display()
        ))),
    }
}

pub(super) fn event_json(event: &pb::AuditEvent) -> Value {
    let details: Value = serde_json::from_str(&event.details_json).unwrap_or(Value::Null);
    let text = |t: &str| {
        if t.is_empty() {
            Value::Null
        } else {
            Value::String(t.to_owned())
        }
    };
    json!({
        "seq": event.seq,
        "at": Timestamp::from_unix_millis(u64::try_from(event.at_ms).unwrap_or(0)).rfc3339(),
        "actor": text(&event.actor),
        "action": event.action,
        "request": text(&event.request_id),
        "resource": text(&event.resource),
        "principal": text(&event.principal),
        "details": details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    })
}

/// The details as `key=value` pairs on one line.
fn details_line(event: &pb::AuditEvent) -> String {
    let details: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&event.details_json).unwrap_or_default();
    let line = details
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}", one_line(value)))
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(119).collect::<String>())
    } else {
        line
    }
}

pub(super) fn event_row(event: &pb::AuditEvent) -> String {
    let time = Timestamp::from_unix_millis(u64::try_from(event.at_ms).unwrap_or(0)).rfc3339();
    let actor = if event.actor.is_empty() {
        "elevated"
    } else {
        &event.actor
    };
    let dash = |t: &str| {
        if t.is_empty() {
            "-".to_owned()
        } else {
            t.to_owned()
        }
    };
    format!(
        "{:<24}  {:>7}  {:<12}  {:<22}  {:<9}  {:<12}  {:<16}  {}",
        time,
        event.seq,
        actor,
        event.action,
        dash(&event.request_id),
        dash(&event.principal),
        dash(&event.resource),
        details_line(event)
    )
}

pub(super) const HEADER: &str = "TIME                          SEQ  ACTOR         ACTION                  REQUEST    PRINCIPAL     RESOURCE          DETAILS";

/// `elevate audit`: events stream in and are printed as they come.
pub async fn query(
    clients: &mut Clients,
    args: &AuditArgs,
    format: Format,
) -> Result<(), CliError> {
    let request = args.filter.to_proto(args.limit)?;
    let mut events = clients.audit.query_events(request).await?.into_inner();
    let mut out = std::io::stdout().lock();
    let mut count = 0u64;
    while let Some(event) = events.next().await {
        let event = event?;
        if count == 0 && format == Format::Table {
            let _ = writeln!(out, "{HEADER}");
        }
        let line = match format {
            Format::Json => event_json(&event).to_string(),
            Format::Table => event_row(&event),
        };
        if writeln!(out, "{line}").is_err() {
            return Ok(());
        }
        count += 1;
    }
    if count == 0 && format == Format::Table {
        let _ = writeln!(out, "no matching events");
    } else if format == Format::Table && args.limit > 0 && count == u64::from(args.limit) {
        eprintln!("(the newest {count} shown; raise --limit, or --limit 0 for all)");
    }
    Ok(())
}

/// `elevate audit export`: the daemon's bytes, copied to standard output as they come.
pub async fn export(
    clients: &mut Clients,
    filter: &FilterArgs,
    format: ExportFormat,
) -> Result<(), CliError> {
    let request = pb::ExportRequest {
        filter: Some(filter.to_proto(0)?),
        format: match format {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
        }
        .to_owned(),
    };
    let mut chunks = clients.audit.export(request).await?.into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = chunks.next().await {
        out.write_all(&chunk?.data)
            .map_err(|error| CliError::Usage(format!("cannot write the export: {error}")))?;
    }
    out.flush()
        .map_err(|error| CliError::Usage(format!("cannot write the export: {error}")))
}

impl AuditArgs {
    /// Queries, exports or verifies.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        match &self.command {
            None => query(&mut session.clients, self, session.output).await,
            Some(AuditCommand::Export { filter, format }) => {
                export(&mut session.clients, filter, *format).await
            }
            Some(AuditCommand::Verify {
                file,
                pubkey,
                witness,
            }) => verify_file(file, pubkey, witness.as_deref(), session.output),
        }
    }
}
