//! The audit trail as auditors use it: exact stories, filtered queries that survive restarts,
//! signed exports verified offline (and every kind of tampering caught), store verification,
//! refusals for non-auditors, and the access report against hand-computed figures.

use std::process::Output;
use std::time::Duration;

use elevate::audit::{Actor, Event};
use elevate::clock::Clock;
use elevate::model::Timestamp;
use elevate::proto::v1 as pb;
use redb::ReadableTable;
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::Code;

use super::cli::{elevate, json};
use super::harness::*;

pub async fn elevated(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
        .args(args)
        .output()
        .await
        .unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The published public key, as `elevated audit pubkey` prints it.
pub async fn pubkey(env: &Env) -> String {
    let key = env.layout.audit_key.to_str().unwrap().to_owned();
    let output = elevated(&["audit", "pubkey", "--key", &key]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output).trim().to_owned();
    assert!(
        text.starts_with("ed25519:") && text.len() == 8 + 64,
        "{text}"
    );
    text
}

async fn query(
    clients: &mut elevate::cli::client::Clients,
    filter: pb::QueryEventsRequest,
) -> Result<Vec<pb::AuditEvent>, tonic::Status> {
    let mut stream = clients.audit.query_events(filter).await?.into_inner();
    let mut out = Vec::new();
    while let Some(event) = stream.next().await {
        out.push(event?);
    }
    Ok(out)
}

fn seqs(events: &[pb::AuditEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// What a filter should return, worked out from the whole log independently of the daemon:
/// newest first by time, then sequence number.
fn expected(all: &[Event], keep: impl Fn(&Event) -> bool) -> Vec<u64> {
    let mut kept: Vec<&Event> = all.iter().filter(|e| keep(e)).collect();
    kept.sort_by_key(|e| std::cmp::Reverse((e.at, e.seq)));
    kept.iter().map(|e| e.seq).collect()
}

fn concerns(event: &Event, name: &str) -> bool {
    event.principal.as_ref().is_some_and(|p| p.as_str() == name)
        || matches!(&event.actor, Actor::Principal(a) if a.as_str() == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_day_has_an_exact_story_per_request_and_history_shows_it() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut oncall = daemon.client("oncall").await;
    let mut security = daemon.client("security").await;
    let mut auditor = daemon.client("auditor").await;

    let auto = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    let read = request(&mut engineer, "prod-db-read", "45m", "slow queries", "")
        .await
        .unwrap();
    approve(&mut manager, &read.id).await.unwrap();
    let denied = request(&mut oncall, "prod-db-admin", "30m", "tidy up", "OPS-1")
        .await
        .unwrap();
    deny(&mut manager, &denied.id, "no change window")
        .await
        .unwrap();
    let glass = break_glass(&mut oncall, "prod-db-admin", "20m", "primary down", "INC-7")
        .await
        .unwrap();
    review(&mut security, &glass.id, "justified", "")
        .await
        .unwrap();
    env.advance(Duration::from_secs(3600));
    until_state(&engineer, &read.id, "expired").await;
    until_state(&engineer, &auto.id, "expired").await;
    until_state(&oncall, &glass.id, "expired").await;

    let lease = ["lease.granted", "lease.expired"];
    let story = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter().chain(tail).map(|s| s.to_string()).collect()
    };
    assert_eq!(
        daemon.actions(&auto.id).await,
        story(&["request.submitted", "request.approved"], &lease)
    );
    assert_eq!(
        daemon.actions(&read.id).await,
        story(
            &["request.submitted", "request.approval", "request.approved"],
            &lease
        )
    );
    assert_eq!(
        daemon.actions(&denied.id).await,
        ["request.submitted", "request.denied"]
    );
    assert_eq!(
        daemon.actions(&glass.id).await,
        [
            "request.submitted",
            "request.approved",
            "lease.granted",
            "review.closed",
            "lease.expired"
        ]
    );

    // History: the request and exactly its events, oldest first, with who said yes.
    let history = auditor
        .audit
        .get_history(pb::GetHistoryRequest {
            request_id: read.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<(&str, &str)> = history
        .events
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("request.submitted", "engineer"),
            ("request.approval", "manager"),
            ("request.approved", "manager"),
            ("lease.granted", ""),
            ("lease.expired", ""),
        ]
    );
    let record = history.request.unwrap();
    assert_eq!(state(&record), "expired");
    assert_eq!(record.decisions[0].approver, "manager");

    // The CLI shows the same story: as JSON for scripts, and as a table for people.
    let shown = json(
        &elevate(
            &daemon,
            &["--as", "auditor", "-o", "json", "history", &glass.id],
        )
        .await,
    );
    let actions: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[3], "review.closed");
    assert_eq!(shown["events"][3]["actor"], "security");
    assert_eq!(shown["events"][0]["details"]["incident"], "INC-7");
    assert_eq!(shown["request"]["state"], "expired");
    let table = elevate(&daemon, &["--as", "engineer", "history", &read.id]).await;
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(
        text.contains("request.approval") && text.contains("manager"),
        "{text}"
    );
    assert!(text.contains("lease.expired"), "{text}");

    // The requester sees their own history; to somebody unrelated it does not exist.
    let refused = oncall
        .audit
        .get_history(pb::GetHistoryRequest {
            request_id: read.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_return_exactly_the_right_events_across_restarts_and_after_expiry() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let before = env.clock.now();
    let first = request(&mut engineer, "prod-db-read", "30m", "look", "")
        .await
        .unwrap();
    approve(&mut manager, &first.id).await.unwrap();
    env.advance(Duration::from_secs(600));
    let middle = env.clock.now();
    let mut oncall = daemon.client("oncall").await;
    let staging = request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap();
    daemon.stop().await;

    // After a restart and after every lease expired, nothing is lost.
    env.advance(Duration::from_secs(7200));
    let daemon = env.start().await;
    let engineer = daemon.client("engineer").await;
    let oncall = daemon.client("oncall").await;
    until_state(&engineer, &first.id, "expired").await;
    until_state(&oncall, &staging.id, "expired").await;
    let after = env.clock.now();
    let mut auditor = daemon.client("auditor").await;
    let all = daemon.all_events().await;
    assert!(all.iter().filter(|e| e.action == "daemon.started").count() == 2);
    assert!(all.iter().any(|e| e.action == "daemon.stopped"));

    let filter = |principal: &str, resource: &str, action: &str| pb::QueryEventsRequest {
        principal: principal.into(),
        resource: resource.into(),
        action: action.into(),
        ..Default::default()
    };
    let everything = query(&mut auditor, filter("", "", "")).await.unwrap();
    assert_eq!(seqs(&everything), expected(&all, |_| true));

    let engineer_events = query(&mut auditor, filter("engineer", "", ""))
        .await
        .unwrap();
    assert_eq!(
        seqs(&engineer_events),
        expected(&all, |e| concerns(e, "engineer"))
    );
    assert_eq!(
        engineer_events.len(),
        5,
        "submitted, approval, approved, granted, expired"
    );
    let manager_events = query(&mut auditor, filter("manager", "", ""))
        .await
        .unwrap();
    assert_eq!(
        seqs(&manager_events),
        expected(&all, |e| concerns(e, "manager"))
    );
    assert_eq!(
        manager_events.len(),
        2,
        "the approval and the approval completing the route"
    );

    let by_resource = query(&mut auditor, filter("", "staging-db", ""))
        .await
        .unwrap();
    assert_eq!(
        seqs(&by_resource),
        expected(&all, |e| e
            .resource
            .as_ref()
            .is_some_and(|r| r.as_str() == "staging-db"))
    );
    let expired = query(&mut auditor, filter("", "", "lease.expired"))
        .await
        .unwrap();
    let ids: Vec<&str> = expired.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first.id.as_str()) && ids.contains(&staging.id.as_str()));
    let leases = query(&mut auditor, filter("", "", "lease.*"))
        .await
        .unwrap();
    assert_eq!(
        seqs(&leases),
        expected(&all, |e| e.action.starts_with("lease."))
    );
    let combined = query(
        &mut auditor,
        filter("engineer", "prod-db-read", "request.*"),
    )
    .await
    .unwrap();
    assert_eq!(
        seqs(&combined),
        expected(&all, |e| concerns(e, "engineer")
            && e.resource
                .as_ref()
                .is_some_and(|r| r.as_str() == "prod-db-read")
            && e.action.starts_with("request."))
    );

    // Time windows: since is inclusive, until exclusive.
    let ms = |t: elevate::model::Timestamp| Some(t.unix_millis() as i64);
    let window = query(
        &mut auditor,
        pb::QueryEventsRequest {
            since_ms: ms(before),
            until_ms: ms(middle),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        seqs(&window),
        expected(&all, |e| e.at >= before && e.at < middle)
    );
    assert!(!window.is_empty());
    let late = query(
        &mut auditor,
        pb::QueryEventsRequest {
            since_ms: ms(after),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(seqs(&late), expected(&all, |e| e.at >= after));
    let newest_two = query(
        &mut auditor,
        pb::QueryEventsRequest {
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(seqs(&newest_two), expected(&all, |_| true)[..2]);

    // The CLI: one JSON object per line, newest first; relative times accepted.
    let lines = elevate(
        &daemon,
        &[
            "--as",
            "auditor",
            "-o",
            "json",
            "audit",
            "--principal",
            "engineer",
            "--since",
            "30d",
            "--limit",
            "0",
        ],
    )
    .await;
    assert!(lines.status.success(), "{}", stderr(&lines));
    let shown: Vec<u64> = stdout(&lines)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(shown, seqs(&engineer_events));

    // Bad filters are refused clearly and change nothing.
    let error = query(&mut auditor, filter("", "", "lease.expird"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("unknown action 'lease.expird'"),
        "{}",
        error.message()
    );
    let error = query(&mut auditor, filter("not a name!", "", ""))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = query(
        &mut auditor,
        pb::QueryEventsRequest {
            since_ms: ms(middle),
            until_ms: ms(before),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        error.message().contains("must be after since"),
        "{}",
        error.message()
    );
    let cli = elevate(
        &daemon,
        &["--as", "auditor", "audit", "--since", "yesterday"],
    )
    .await;
    assert_eq!(cli.status.code(), Some(2));
    assert!(stderr(&cli).contains("--since"), "{}", stderr(&cli));
    assert_eq!(daemon.all_events().await.len(), all.len());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_auditors_are_refused() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let error = query(&mut engineer, Default::default()).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains("auditor group"),
        "{}",
        error.message()
    );
    let error = engineer
        .audit
        .export(pb::ExportRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = engineer
        .audit
        .report(pb::ReportRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let cli = elevate(&daemon, &["--as", "admin", "audit"]).await;
    assert_eq!(cli.status.code(), Some(1));
    assert!(
        stderr(&cli).contains("permission denied"),
        "{}",
        stderr(&cli)
    );
    daemon.stop().await;
}

/// Makes some history: requests, an approval, a denial, a break-glass and its review, and
/// expiry; enough events for several checkpoints.
pub async fn some_history(env: &Env, daemon: &Daemon) {
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut oncall = daemon.client("oncall").await;
    let mut security = daemon.client("security").await;
    let read = request(&mut engineer, "prod-db-read", "30m", "look", "")
        .await
        .unwrap();
    approve(&mut manager, &read.id).await.unwrap();
    let denied = request(&mut oncall, "prod-db-read", "30m", "peek", "")
        .await
        .unwrap();
    deny(&mut manager, &denied.id, "not now").await.unwrap();
    let glass = break_glass(&mut oncall, "prod-db-admin", "20m", "down", "INC-9")
        .await
        .unwrap();
    review(&mut security, &glass.id, "justified", "")
        .await
        .unwrap();
    let staging = request(&mut oncall, "staging-db", "30m", "", "")
        .await
        .unwrap();
    env.advance(Duration::from_secs(3600));
    until_state(&engineer, &read.id, "expired").await;
    until_state(&oncall, &glass.id, "expired").await;
    // Every lease has ended, so nothing is written after this returns.
    until_state(&oncall, &staging.id, "expired").await;
}

pub async fn export(daemon: &Daemon, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["--as", "auditor", "audit", "export"];
    all.extend_from_slice(args);
    let output = elevate(daemon, &all).await;
    assert!(output.status.success(), "{}", stderr(&output));
    output.stdout
}

/// Writes `bytes` to a file and runs `elevate audit verify` on it.
async fn verify(bytes: &[u8], key: &str) -> Output {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    // No daemon and no certificates: verification is offline.
    tokio::process::Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args([
            "audit",
            "verify",
            "--file",
            file.path().to_str().unwrap(),
            "--pubkey",
            key,
        ])
        .env("ELEVATE_ENDPOINT", "https://127.0.0.1:1")
        .env_remove("ELEVATE_CERT_DIR")
        .output()
        .await
        .unwrap()
}

fn assert_fails(output: &Output, wanted: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stdout(output));
    let message = stderr(output);
    assert!(message.contains(wanted), "wanted {wanted:?} in: {message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect()
}

fn record_type(line: &str) -> String {
    serde_json::from_str::<Value>(line).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_offline_and_every_kind_of_tampering_is_caught() {
    let env = Env::new();
    let daemon = env.start().await;
    some_history(&env, &daemon).await;
    let key = pubkey(&env).await;
    let exported = export(&daemon, &["--format", "jsonl"]).await;
    let ok = verify(&exported, &key).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("intact"), "{}", stdout(&ok));
    let original = lines(&exported);
    let types: Vec<String> = original.iter().map(|l| record_type(l)).collect();
    assert_eq!(types.first().unwrap(), "header");
    assert_eq!(types.last().unwrap(), "end");
    assert!(
        types.iter().filter(|t| *t == "checkpoint").count() >= 3,
        "{types:?}"
    );
    let events: Vec<usize> = (0..types.len()).filter(|&i| types[i] == "event").collect();
    let total = events.len() as u64;
    assert_eq!(total, daemon.all_events().await.len() as u64);

    // Flipping one byte of an entry.
    let target = events[4];
    let mut flipped = original.clone();
    flipped[target] = flipped[target].replacen("\"action\":\"", "\"action\":\"X", 1);
    let seq = seq_of(&original[target]);
    let output = verify(flipped.concat().as_bytes(), &key).await;
    assert_fails(
        &output,
        &format!("altered entry at entry {seq}: its contents do not match its hash"),
    );

    // Deleting one line.
    let mut deleted = original.clone();
    deleted.remove(events[6]);
    let seq = seq_of(&original[events[6]]);
    let output = verify(deleted.concat().as_bytes(), &key).await;
    assert_fails(
        &output,
        &format!("missing entry at entry {seq}: entry {seq} is missing"),
    );

    // Swapping two lines.
    let a = (events[6]..types.len())
        .find(|&i| types[i] == "event" && types[i + 1] == "event")
        .unwrap();
    let b = a + 1;
    let mut swapped = original.clone();
    swapped.swap(a, b);
    let output = verify(swapped.concat().as_bytes(), &key).await;
    assert_fails(
        &output,
        &format!(
            "reordering at entry {}: entry {} comes after entry {}",
            seq_of(&original[a]),
            seq_of(&original[a]),
            seq_of(&original[b])
        ),
    );

    // Truncating after a checkpoint.
    let cut = types.iter().position(|t| t == "checkpoint").unwrap();
    let truncated = original[..=cut].concat();
    let output = verify(truncated.as_bytes(), &key).await;
    let signed = seq_of(&original[cut]);
    assert_fails(
        &output,
        &format!(
            "the export ends after the checkpoint at entry {signed} without its signed end record"
        ),
    );

    // Another public key.
    let other = elevate::audit::key::AuditKey::ephemeral()
        .unwrap()
        .public()
        .to_string();
    let output = verify(&exported, &other).await;
    assert_fails(&output, "bad signature");
    assert_fails(&output, &format!("not signed by {other}"));

    // A line added after the end, or a line dropped that the chain alone cannot notice (the
    // header), is caught by the signed end record.
    let mut extra = original.clone();
    extra.insert(1, original[events[0]].clone());
    let output = verify(extra.concat().as_bytes(), &key).await;
    assert_eq!(output.status.code(), Some(1));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_and_csv_exports_verify_and_tampering_is_caught() {
    let env = Env::new();
    let daemon = env.start().await;
    some_history(&env, &daemon).await;
    let key = pubkey(&env).await;

    // Filtered: only oncall's events, linked to their checkpoints.
    let exported = export(&daemon, &["--principal", "oncall", "--format", "jsonl"]).await;
    let ok = verify(&exported, &key).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    let original = lines(&exported);
    let events: Vec<&String> = original
        .iter()
        .filter(|l| record_type(l) == "event")
        .collect();
    let all = daemon.all_events().await;
    let wanted: Vec<u64> = all
        .iter()
        .filter(|e| concerns(e, "oncall"))
        .map(|e| e.seq)
        .collect();
    assert_eq!(events.iter().map(|l| seq_of(l)).collect::<Vec<_>>(), wanted);
    // The first submission (entry 2) is followed by an approval before any checkpoint can be
    // signed (one needs five uncovered entries), so that approval travels as a link.
    let submissions = export(&daemon, &["--action", "request.submitted"]).await;
    let ok = verify(&submissions, &key).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    let records = lines(&submissions);
    assert_eq!(record_type(&records[1]), "event");
    assert_eq!(record_type(&records[2]), "link");
    assert_eq!(seq_of(&records[2]), seq_of(&records[1]) + 1);
    let target = original
        .iter()
        .position(|l| record_type(l) == "event")
        .unwrap();
    let mut flipped = original.clone();
    flipped[target] = flipped[target].replacen("oncall", "oncalL", 1);
    let output = verify(flipped.concat().as_bytes(), &key).await;
    assert_fails(&output, "altered entry");

    // CSV: the same checks hold.
    let csv = export(&daemon, &["--format", "csv"]).await;
    let text = String::from_utf8(csv.clone()).unwrap();
    assert!(text.starts_with("type,seq,at,time,actor,action"), "{text}");
    let ok = verify(&csv, &key).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    let altered = text.replacen(",request.approval,", ",request.approvaL,", 1);
    assert_ne!(altered, text);
    let output = verify(altered.as_bytes(), &key).await;
    assert_fails(&output, "altered entry");
    let rows: Vec<&str> = text.lines().collect();
    let dropped = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, r)| format!("{r}\n"))
        .collect::<String>();
    let output = verify(dropped.as_bytes(), &key).await;
    assert_fails(&output, "missing entry");
    daemon.stop().await;
}

/// The audit table of a copied store, opened directly to tamper with it.
const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");

fn tamper(
    original: &std::path::Path,
    change: impl FnOnce(&mut redb::Table<u64, &[u8]>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(original, &copy).unwrap();
    let db = redb::Database::open(&copy).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(AUDIT).unwrap();
        change(&mut table);
    }
    txn.commit().unwrap();
    dir
}

async fn verify_db(dir: &std::path::Path, extra: &[&str]) -> Output {
    let db = dir.join("copy.redb");
    let mut args = vec!["audit", "verify", "--db", db.to_str().unwrap()];
    args.extend_from_slice(extra);
    elevated(&args).await
}

fn entry_at(table: &redb::Table<u64, &[u8]>, seq: u64) -> Vec<u8> {
    table.get(seq).unwrap().unwrap().value().to_vec()
}

/// A stored audit entry whose time somebody editing the store directly moved back a minute in
/// its canonical content bytes, leaving its hashes as they were.
fn edited(entry: &[u8]) -> Vec<u8> {
    use prost::Message;
    let mut entry = elevate::store::records::pb::AuditEntry::decode(entry).unwrap();
    let content = String::from_utf8(entry.content.to_vec()).unwrap();
    let (before, after) = content.split_once(",\"at\":").unwrap();
    let (at, rest) = after.split_once(',').unwrap();
    let earlier = at.parse::<u64>().unwrap() - 60_000;
    entry.content = format!("{before},\"at\":{earlier},{rest}")
        .into_bytes()
        .into();
    entry.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_verifies_offline_and_tampering_is_caught() {
    let env = Env::new();
    let daemon = env.start().await;
    some_history(&env, &daemon).await;
    // Stopping records one more entry (daemon.stopped) and signs the head.
    let total = daemon.all_events().await.len() as u64 + 1;
    daemon.stop().await;
    if let Some((server, database)) = env.postgres() {
        return a_postgres_store_verifies_and_tampering_is_caught(&server, &database, total).await;
    }
    let store = env.layout.store.clone();
    let key = pubkey(&env).await;

    let output = elevated(&[
        "audit",
        "verify",
        "--db",
        store.to_str().unwrap(),
        "--pubkey",
        &key,
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("every entry is covered by a signature"),
        "{}",
        stdout(&output)
    );

    let assert_db_fails = |output: Output, wanted: &str| {
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        let message = stderr(&output);
        assert!(message.contains(wanted), "wanted {wanted:?} in: {message}");
    };
    // An edited entry.
    let dir = tamper(&store, |table| {
        let entry = edited(&entry_at(table, 3));
        table.insert(3, entry.as_slice()).unwrap();
    });
    assert_db_fails(verify_db(dir.path(), &[]).await, "altered entry at entry 3");
    // A removed entry.
    let dir = tamper(&store, |table| {
        table.remove(5).unwrap();
    });
    assert_db_fails(verify_db(dir.path(), &[]).await, "missing entry at entry 5");
    // Two entries swapped.
    let dir = tamper(&store, |table| {
        let (six, seven) = (entry_at(table, 6), entry_at(table, 7));
        table.insert(6, seven.as_slice()).unwrap();
        table.insert(7, six.as_slice()).unwrap();
    });
    assert_db_fails(verify_db(dir.path(), &[]).await, "reordering at entry 6");
    // The tail cut off after a checkpoint.
    let dir = tamper(&store, |table| {
        for seq in total - 3..=total {
            table.remove(seq).unwrap();
        }
    });
    assert_db_fails(
        verify_db(dir.path(), &[]).await,
        &format!("truncation at entry {}", total - 3),
    );
    // Another key.
    let other = elevate::audit::key::AuditKey::ephemeral()
        .unwrap()
        .public()
        .to_string();
    let dir = tamper(&store, |_| {});
    assert_db_fails(
        verify_db(dir.path(), &["--pubkey", &other]).await,
        "bad signature",
    );
}

/// The same damage as in a redb file, done with SQL to a PostgreSQL store (and undone after
/// each check), caught by verifying one snapshot of it.
async fn a_postgres_store_verifies_and_tampering_is_caught(
    server: &super::harness::PostgresUnderTest,
    database: &str,
    total: u64,
) {
    let elevate::store::Location::Postgres(target) = server.location(database) else {
        unreachable!()
    };
    let verify = |key: Option<elevate::audit::key::PublicKey>| {
        let target = target.clone();
        async move { elevate::store::postgres::verify(&target, key, Default::default()).await }
    };
    let verified = verify(None).await.unwrap();
    assert!(verified.recorded_key);
    assert_eq!(verified.summary.events, total);
    let (client, connection) = server
        .config(database)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT seq, at, request, resource, action, record FROM elevate_audit ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let record = |seq: u64| -> Vec<u8> { rows[seq as usize - 1].get(5) };
    let put = |seq: u64, bytes: Vec<u8>| {
        let client = &client;
        async move {
            client
                .execute(
                    "UPDATE elevate_audit SET record = $2 WHERE seq = $1",
                    &[&(seq as i64), &bytes],
                )
                .await
                .unwrap();
        }
    };
    let restore = || {
        let (client, rows) = (&client, &rows);
        async move {
            client
                .execute("DELETE FROM elevate_audit", &[])
                .await
                .unwrap();
            for row in rows {
                let (seq, at, request, resource, action, record): (
                    i64,
                    i64,
                    Option<i64>,
                    Option<String>,
                    String,
                    Vec<u8>,
                ) = (
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                );
                client
                    .execute(
                        "INSERT INTO elevate_audit VALUES ($1, $2, $3, $4, $5, $6)",
                        &[&seq, &at, &request, &resource, &action, &record],
                    )
                    .await
                    .unwrap();
            }
        }
    };
    let fails = |wanted: String| {
        let verify = &verify;
        async move {
            let error = verify(None).await.unwrap_err().to_string();
            assert!(error.contains(&wanted), "wanted {wanted:?} in: {error}");
        }
    };
    // An edited entry.
    let entry = edited(&record(3));
    put(3, entry).await;
    fails("altered entry at entry 3".into()).await;
    restore().await;
    // A removed entry.
    client
        .execute("DELETE FROM elevate_audit WHERE seq = 5", &[])
        .await
        .unwrap();
    fails("missing entry at entry 5".into()).await;
    restore().await;
    // Two entries swapped.
    put(6, record(7)).await;
    put(7, record(6)).await;
    fails("reordering at entry 6".into()).await;
    restore().await;
    // The tail cut off after a checkpoint.
    client
        .execute(
            "DELETE FROM elevate_audit WHERE seq >= $1",
            &[&((total - 3) as i64)],
        )
        .await
        .unwrap();
    fails(format!("truncation at entry {}", total - 3)).await;
    restore().await;
    assert_eq!(verify(None).await.unwrap().summary.events, total);
    // Another key.
    let other = elevate::audit::key::AuditKey::ephemeral().unwrap().public();
    let error = verify(Some(other)).await.unwrap_err().to_string();
    assert!(error.contains("bad signature"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_matches_a_hand_computed_scenario() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut oncall = daemon.client("oncall").await;
    let mut security = daemon.client("security").await;
    let minute = Duration::from_secs(60);
    let start = env.clock.now();

    // prod-db-read: decided after 10m (approve), 20m (deny), 30m (approve).
    let a = request(&mut engineer, "prod-db-read", "1h", "a", "")
        .await
        .unwrap();
    env.advance(10 * minute);
    approve(&mut manager, &a.id).await.unwrap();
    let b = request(&mut oncall, "prod-db-read", "1h", "b", "")
        .await
        .unwrap();
    env.advance(20 * minute);
    deny(&mut manager, &b.id, "no ticket").await.unwrap();
    release(&mut engineer, &a.id).await.unwrap();
    let c = request(&mut engineer, "prod-db-read", "1h", "c", "")
        .await
        .unwrap();
    env.advance(30 * minute);
    approve(&mut manager, &c.id).await.unwrap();
    // staging-db: auto-approved.
    request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap();
    // prod-db-admin: one break-glass, reviewed as justified.
    let glass = break_glass(&mut oncall, "prod-db-admin", "20m", "down", "INC-3")
        .await
        .unwrap();
    review(&mut security, &glass.id, "justified", "")
        .await
        .unwrap();

    let mut auditor = daemon.client("auditor").await;
    let answer = auditor
        .audit
        .report(pb::ReportRequest::default())
        .await
        .unwrap()
        .into_inner();
    let report: Value = serde_json::from_str(&answer.report_json).unwrap();
    let resource = |name: &str| {
        report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == name)
            .unwrap()
            .clone()
    };
    let read = resource("prod-db-read");
    assert_eq!(read["requests"], 3);
    assert_eq!(read["approved"], 2);
    assert_eq!(read["denied"], 1);
    assert_eq!(read["approval_rate"].as_f64().unwrap(), 2.0 / 3.0);
    assert_eq!(read["auto_approved_share"].as_f64().unwrap(), 0.0);
    assert_eq!(read["decision_ms_median"], 20 * 60_000);
    assert_eq!(read["decision_ms_p90"], 30 * 60_000);
    assert_eq!(
        read["denied_reasons"],
        serde_json::json!([{"reason": "no ticket", "count": 1}])
    );
    let staging = resource("staging-db");
    assert_eq!(staging["requests"], 1);
    assert_eq!(staging["auto_approved_share"].as_f64().unwrap(), 1.0);
    assert_eq!(staging["approval_rate"].as_f64().unwrap(), 1.0);
    assert!(staging["decision_ms_median"].is_null());
    let admin = resource("prod-db-admin");
    assert_eq!(admin["requests"], 0);
    assert_eq!(admin["break_glass"]["count"], 1);
    assert_eq!(admin["break_glass"]["justified"], 1);
    assert_eq!(admin["break_glass"]["missed_deadline"], 0);
    let approvers = report["approvers"].as_array().unwrap();
    assert_eq!(approvers.len(), 1, "{approvers:?}");
    assert_eq!(approvers[0]["approver"], "manager");
    assert_eq!(approvers[0]["decisions"], 3);
    assert_eq!(approvers[0]["approvals"], 2);
    assert_eq!(approvers[0]["denials"], 1);
    assert_eq!(approvers[0]["response_ms_median"], 20 * 60_000);

    // --since leaves out the first request.
    let since = start.saturating_add(minute).unix_millis() as i64;
    let later = auditor
        .audit
        .report(pb::ReportRequest {
            since_ms: Some(since),
            until_ms: None,
        })
        .await
        .unwrap()
        .into_inner();
    let later: Value = serde_json::from_str(&later.report_json).unwrap();
    let read = later["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "prod-db-read")
        .unwrap()
        .clone();
    assert_eq!(read["requests"], 2);
    assert_eq!(read["approval_rate"].as_f64().unwrap(), 0.5);

    // The CLI prints it for people.
    let table = elevate(&daemon, &["--as", "auditor", "report", "--since", "30d"]).await;
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(
        text.contains("prod-db-read") && text.contains("67%"),
        "{text}"
    );
    assert!(text.contains("denied 1× — no ticket"), "{text}");

    // The report crosses the wire as a message; the CLI's JSON of it is the daemon's document,
    // field for field.
    let message = answer.report.clone().expect("the report message");
    assert_eq!(
        message.resources.len(),
        report["resources"].as_array().unwrap().len()
    );
    let json = elevate(&daemon, &["--as", "auditor", "-o", "json", "report"]).await;
    assert!(json.status.success(), "{}", stderr(&json));
    let printed: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(printed, report);
    let since_json = elevate(
        &daemon,
        &[
            "--as",
            "auditor",
            "-o",
            "json",
            "report",
            "--since",
            &Timestamp::from_unix_millis(since as u64).rfc3339(),
        ],
    )
    .await;
    let printed: Value = serde_json::from_str(&stdout(&since_json)).unwrap();
    assert_eq!(printed, later);
    daemon.stop().await;
}
