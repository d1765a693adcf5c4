//! How the CLI shows requests: a table for people, JSON for scripts. Free text written by
//! other people (reasons, comments) or by targets (errors) is shown on one line with newlines
//! and control characters escaped, so it can never pose as another line of the output.
//! The JSON fields are a
//! contract: `id`, `state`, `requester`, `resource`, `reason`, `created_at`, `expires_at`
//! (RFC 3339, null when unset) and `approvals` (`approver`, `decision`, `at`, …) at least.
//!
//! Longer than most files: every command's table and JSON form is here, so that the JSON field
//! names scripts rely on are defined in one place.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::model::{Timestamp, one_line};
use crate::proto::v1 as pb;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts: one object per request, an array for lists.
    Json,
}

fn time(ms: i64) -> String {
    Timestamp::from_unix_millis(u64::try_from(ms).unwrap_or(0)).rfc3339()
}

fn optional_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(time(ms)))
}

fn text_or_null(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        Value::String(text.to_owned())
    }
}

/// The state word of a wire state.
pub fn state_word(state: i32) -> &'static str {
    match pb::RequestState::try_from(state).unwrap_or(pb::RequestState::Unspecified) {
        pb::RequestState::Unspecified => "unknown",
        pb::RequestState::Pending => "pending",
        pb::RequestState::Approved => "approved",
        pb::RequestState::Active => "active",
        pb::RequestState::Denied => "denied",
        pb::RequestState::Cancelled => "cancelled",
        pb::RequestState::TimedOut => "timed_out",
        pb::RequestState::Expired => "expired",
        pb::RequestState::Released => "released",
        pb::RequestState::Revoked => "revoked",
        pb::RequestState::RevokeFailing => "revoke_failing",
        pb::RequestState::Failed => "failed",
    }
}

/// The JSON object of a request.
pub fn request_json(request: &pb::AccessRequest) -> Value {
    let current_stage = match pb::RequestState::try_from(request.state) {
        Ok(pb::RequestState::Pending) => request
            .route
            .get(request.current_stage as usize)
            .map_or(Value::Null, |stage| Value::String(stage.name.clone())),
        _ => Value::Null,
    };
    json!({
        "id": request.id,
        "state": state_word(request.state),
        "requester": request.requester,
        "resource": request.resource,
        "reason": text_or_null(&request.reason),
        "ticket": text_or_null(&request.ticket),
        "duration": request.duration,
        "created_at": time(request.created_at_ms),
        "decide_by": time(request.decide_by_ms),
        "approved_at": optional_time(request.approved_at_ms),
        "granted_at": optional_time(request.granted_at_ms),
        "expires_at": optional_time(request.expires_at_ms),
        "ended_at": optional_time(request.ended_at_ms),
        "current_stage": current_stage,
        "route": request.route.iter().map(|stage| json!({
            "stage": stage.name,
            "quorum": stage.quorum,
            "approvers": stage.approvers,
            "approved_by": stage.approved_by,
        })).collect::<Vec<_>>(),
        "approvals": request.decisions.iter().map(|d| json!({
            "approver": d.approver,
            "decision": d.decision,
            "comment": text_or_null(&d.comment),
            "at": time(d.at_ms),
            "stage": d.stage_name,
            "void": text_or_null(&d.void),
        })).collect::<Vec<_>>(),
        "policy_version": request.policy_version,
        "attempts": request.attempts,
        "last_error": text_or_null(&request.last_error),
        "next_attempt_at": optional_time(request.next_attempt_at_ms),
        "end_reason": text_or_null(&request.end_reason),
        "break_glass": request.break_glass,
        "incident": text_or_null(&request.incident),
        "break_glass_needed_approval": request.break_glass_needed_approval,
        "review": request.review.as_ref().map_or(Value::Null, review_json),
        "account": text_or_null(&request.account),
        "credentials_waiting": request.credentials_waiting,
        "flagged": text_or_null(&request.flagged),
        "extensions": request.extensions.iter().map(|e| json!({
            "by": e.by,
            "reason": e.reason,
            "asked_at": time(e.asked_at_ms),
            "from": time(e.from_ms),
            "until": time(e.until_ms),
            "state": e.state,
            "stage": text_or_null(&e.stage),
            "approvers": e.approvers,
            "approved_by": e.approved_by,
            "detail": text_or_null(&e.detail),
        })).collect::<Vec<_>>(),
    })
}

/// Credentials as a JSON object.
pub fn credentials_json(credentials: &std::collections::HashMap<String, String>) -> Value {
    let sorted: std::collections::BTreeMap<&String, &String> = credentials.iter().collect();
    json!(sorted)
}

/// Credentials as `key: value` lines, under a warning that they are shown once.
pub fn credentials_table(credentials: &std::collections::HashMap<String, String>) -> String {
    let sorted: std::collections::BTreeMap<&String, &String> = credentials.iter().collect();
    let mut lines = vec!["credentials (shown once; elevate keeps no copy):".to_owned()];
    lines.extend(
        sorted
            .iter()
            .map(|(key, value)| format!("  {key:<10} {value}")),
    );
    lines.join("\n")
}

/// What holding open requests against the directory did, as JSON.
pub fn enforcement_json(enforced: &pb::Enforcement) -> Value {
    json!({
        "revoked": enforced.revoked,
        "cancelled": enforced.cancelled,
        "flagged": enforced.flagged,
        "voided": enforced.voided,
        "failed": enforced.failed,
    })
}

/// What holding open requests against the directory did, a line per kind of action taken.
pub fn enforcement_table(enforced: &pb::Enforcement) -> String {
    let mut out = String::new();
    for (what, ids) in [
        ("revoked", &enforced.revoked),
        ("cancelled", &enforced.cancelled),
        ("flagged", &enforced.flagged),
        ("approvals voided on", &enforced.voided),
    ] {
        if !ids.is_empty() {
            out.push_str(&format!("{what}: {}\n", ids.join(", ")));
        }
    }
    for failed in &enforced.failed {
        out.push_str(&format!("FAILED: {failed}\n"));
    }
    out
}

/// A reload's outcome as JSON.
pub fn reloaded_json(reloaded: &pb::ReloadResponse) -> Value {
    let empty = pb::Enforcement::default();
    json!({
        "policy_version": reloaded.policy_version,
        "directory_version": reloaded.directory_version,
        "changed": reloaded.changed,
        "enforced": enforcement_json(reloaded.enforced.as_ref().unwrap_or(&empty)),
    })
}

/// A reload's outcome: the versions in force, then what changed for open requests.
pub fn reloaded_table(reloaded: &pb::ReloadResponse) -> String {
    let mut out = format!(
        "{} policy {} and directory {}\n",
        if reloaded.changed {
            "reloaded:"
        } else {
            "reloaded (unchanged):"
        },
        reloaded.policy_version,
        reloaded.directory_version
    );
    if let Some(enforced) = &reloaded.enforced {
        out.push_str(&enforcement_table(enforced));
    }
    out
}

/// Offboarded principals as JSON.
pub fn offboarded_json(listed: &[pb::Offboarded]) -> Value {
    Value::Array(
        listed
            .iter()
            .map(|o| {
                json!({
                    "principal": o.principal,
                    "at": time(o.at_ms),
                    "by": o.by,
                    "reason": o.reason,
                })
            })
            .collect(),
    )
}

/// Offboarded principals, a line each.
pub fn offboarded_table(listed: &[pb::Offboarded]) -> String {
    if listed.is_empty() {
        return "nobody is offboarded\n".to_owned();
    }
    listed
        .iter()
        .map(|o| {
            format!(
                "{}  offboarded {} by {}: {}\n",
                o.principal,
                time(o.at_ms),
                o.by,
                o.reason
            )
        })
        .collect()
}

/// The directory in force as JSON.
pub fn directory_json(listed: &pb::ListDirectoryResponse) -> Value {
    json!({
        "source": listed.source,
        "version": listed.version,
        "people": listed.people.iter().map(|person| json!({
            "principal": person.principal,
            "status": person.status,
            "groups": person.groups,
            "manager": (!person.manager.is_empty()).then_some(&person.manager),
            "accounts": person.accounts.iter().collect::<std::collections::BTreeMap<_, _>>(),
        })).collect::<Vec<_>>(),
    })
}

/// The directory in force, a line per principal.
pub fn directory_table(listed: &pb::ListDirectoryResponse) -> String {
    let mut out = format!("directory {} ({})\n", listed.version, listed.source);
    if listed.people.is_empty() {
        out.push_str("nobody is in the directory\n");
    }
    for person in &listed.people {
        out.push_str(&format!(
            "{}  {}  groups: {}",
            person.principal,
            person.status,
            if person.groups.is_empty() {
                "-".to_owned()
            } else {
                person.groups.join(", ")
            }
        ));
        if !person.manager.is_empty() {
            out.push_str(&format!("  manager: {}", person.manager));
        }
        let accounts: std::collections::BTreeMap<_, _> = person.accounts.iter().collect();
        for (provisioner, account) in accounts {
            out.push_str(&format!("  {provisioner}: {account}"));
        }
        out.push('\n');
    }
    out
}

/// A cluster's nodes as JSON.
pub fn cluster_json(status: &pb::ClusterStatusResponse) -> Value {
    json!({
        "epoch": status.epoch,
        "leader": status.leader,
        "nodes": status.nodes.iter().map(|node| json!({
            "node": node.node,
            "advertise": node.advertise,
            "role": node.role,
            "epoch": node.epoch,
            "last_seen": time(node.last_seen_ms),
        })).collect::<Vec<_>>(),
    })
}

/// A cluster's nodes, a line each, under a header.
pub fn cluster_table(status: &pb::ClusterStatusResponse) -> String {
    let mut out = format!(
        "{:<12} {:<32} {:<8} {:>6}  LAST SEEN\n",
        "NODE", "ADVERTISE", "ROLE", "EPOCH"
    );
    for node in &status.nodes {
        out.push_str(&format!(
            "{:<12} {:<32} {:<8} {:>6}  {}\n",
            node.node,
            node.advertise,
            node.role,
            node.epoch,
            time(node.last_seen_ms)
        ));
    }
    if status.leader.is_empty() {
        out.push_str("no leader holds the lease right now\n");
    }
    out
}

/// The review state word.
pub fn review_state_word(state: i32) -> &'static str {
    match pb::ReviewState::try_from(state).unwrap_or(pb::ReviewState::Unspecified) {
        pb::ReviewState::Unspecified => "unknown",
        pb::ReviewState::Pending => "pending",
        pb::ReviewState::Overdue => "overdue",
        pb::ReviewState::Justified => "justified",
        pb::ReviewState::Unjustified => "unjustified",
    }
}

/// The JSON object of a review.
pub fn review_json(review: &pb::Review) -> Value {
    json!({
        "id": review.id,
        "holder": review.holder,
        "resource": review.resource,
        "incident": review.incident,
        "reason": text_or_null(&review.reason),
        "state": review_state_word(review.state),
        "reviewing_group": review.reviewing_group,
        "opened_at": time(review.opened_at_ms),
        "due_at": time(review.due_at_ms),
        "overdue_since": optional_time(review.overdue_since_ms),
        "reminders": review.reminders,
        "escalate_to": review.escalate_to,
        "reviewer": text_or_null(&review.reviewer),
        "notes": text_or_null(&review.notes),
        "closed_at": optional_time(review.closed_at_ms),
        "lease_state": state_word(review.lease_state),
        "granted_at": optional_time(review.granted_at_ms),
        "expires_at": optional_time(review.expires_at_ms),
    })
}

/// One line on a review.
pub fn review_summary(review: &pb::Review) -> String {
    match pb::ReviewState::try_from(review.state).unwrap_or(pb::ReviewState::Unspecified) {
        pb::ReviewState::Pending => format!(
            "review pending by {}, due {} ({})",
            review.reviewing_group,
            time(review.due_at_ms),
            relative(review.due_at_ms)
        ),
        pb::ReviewState::Overdue => format!(
            "review OVERDUE since {} ({} reminder(s)), by {}",
            time(review.due_at_ms),
            review.reminders,
            review.reviewing_group
        ),
        state => {
            let notes = if review.notes.is_empty() {
                String::new()
            } else {
                format!(": {}", one_line(&review.notes))
            };
            format!(
                "review closed: {} by {}{notes}",
                review_state_word(state as i32),
                review.reviewer
            )
        }
    }
}

/// Reviews as aligned columns.
pub fn reviews_table(reviews: &[pb::Review]) -> String {
    if reviews.is_empty() {
        return "no reviews".to_owned();
    }
    let rows: Vec<Vec<String>> = reviews
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                review_state_word(r.state).to_owned(),
                r.holder.clone(),
                r.resource.clone(),
                one_line(&r.incident),
                format!("{} ({})", time(r.due_at_ms), relative(r.due_at_ms)),
                one_line(&r.reason),
            ]
        })
        .collect();
    columns(
        &[
            "ID", "REVIEW", "HOLDER", "RESOURCE", "INCIDENT", "DUE", "REASON",
        ],
        &rows,
    )
}

/// Aligned columns under a header.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(&mut header.iter().copied())];
    for row in rows {
        out.push(line(&mut row.iter().map(String::as_str)));
    }
    out.join("\n")
}

/// "in 44m", "3m ago": a time relative to now, to the second.
fn relative(ms: i64) -> String {
    let then = Timestamp::from_unix_millis(u64::try_from(ms).unwrap_or(0));
    let now = Timestamp::from_system_time(SystemTime::now());
    let round =
        |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
    if then >= now {
        format!("in {}", round(then.saturating_duration_since(now)))
    } else {
        format!("{} ago", round(now.saturating_duration_since(then)))
    }
}

/// One line on what a request is waiting for or how it stands.
pub fn summary(request: &pb::AccessRequest) -> String {
    match pb::RequestState::try_from(request.state).unwrap_or(pb::RequestState::Unspecified) {
        pb::RequestState::Pending => match request.route.get(request.current_stage as usize) {
            Some(stage) => format!(
                "waiting for stage '{}' ({} of {}): {} more approval(s) from {}",
                stage.name,
                request.current_stage + 1,
                request.route.len(),
                stage
                    .quorum
                    .saturating_sub(u32::try_from(stage.approved_by.len()).unwrap_or(0)),
                stage.approvers.join(", ")
            ),
            None => "waiting for approval".to_owned(),
        },
        pb::RequestState::Approved if request.attempts > 0 => format!(
            "approved; grant failed {} time(s), retrying: {}",
            request.attempts,
            one_line(&request.last_error)
        ),
        pb::RequestState::Approved => "approved; granting".to_owned(),
        pb::RequestState::Active => match request.expires_at_ms {
            Some(ms) => format!("granted until {} ({})", time(ms), relative(ms)),
            None => "granted".to_owned(),
        },
        pb::RequestState::RevokeFailing if request.attempts == 0 => {
            "revoking; the target has not confirmed yet".to_owned()
        }
        pb::RequestState::RevokeFailing => format!(
            "revoke failing after {} attempt(s), access still held: {}",
            request.attempts,
            one_line(&request.last_error)
        ),
        _ => one_line(&request.end_reason),
    }
}

/// A request as `key: value` lines.
pub fn request_table(request: &pb::AccessRequest) -> String {
    let mut lines = vec![
        ("id", request.id.clone()),
        ("state", state_word(request.state).to_owned()),
        ("requester", request.requester.clone()),
        ("resource", request.resource.clone()),
        ("duration", request.duration.clone()),
        ("reason", one_line(&request.reason)),
        ("ticket", one_line(&request.ticket)),
        ("created", time(request.created_at_ms)),
    ];
    if let Some(ms) = request.granted_at_ms {
        lines.push(("granted", time(ms)));
    }
    if let Some(ms) = request.expires_at_ms {
        lines.push(("expires", format!("{} ({})", time(ms), relative(ms))));
    }
    if let Some(ms) = request.ended_at_ms {
        lines.push(("ended", time(ms)));
    }
    let summary = summary(request);
    if !summary.is_empty() {
        lines.push(("status", summary));
    }
    if request.break_glass {
        let approval = if request.break_glass_needed_approval {
            " (waited for an approval: the holder had an unreviewed break-glass)"
        } else {
            ""
        };
        lines.push((
            "break-glass",
            format!("incident {}{approval}", one_line(&request.incident)),
        ));
        if let Some(review) = &request.review {
            lines.push(("review", review_summary(review)));
        }
    }
    for (index, stage) in request.route.iter().enumerate() {
        lines.push((
            "stage",
            format!(
                "{}. {} needs {} of [{}]; approved by [{}]",
                index + 1,
                stage.name,
                stage.quorum,
                stage.approvers.join(", "),
                stage.approved_by.join(", ")
            ),
        ));
    }
    for decision in request.decisions.iter().filter(|d| !d.void.is_empty()) {
        lines.push((
            "voided",
            format!(
                "{}'s approval at {} no longer counts: {}",
                decision.approver,
                decision.stage_name,
                one_line(&decision.void)
            ),
        ));
    }
    if !request.flagged.is_empty() {
        lines.push(("flagged", one_line(&request.flagged)));
    }
    if !request.account.is_empty() {
        lines.push(("account", request.account.clone()));
    }
    if request.credentials_waiting {
        lines.push((
            "credentials",
            format!(
                "waiting; collect them once with: elevate credentials {}",
                request.id
            ),
        ));
    }
    for extension in &request.extensions {
        let mut line = format!(
            "+{} to {}: {} ({})",
            extension.by,
            time(extension.until_ms),
            extension.state,
            one_line(&extension.reason)
        );
        if !extension.stage.is_empty() {
            line.push_str(&format!(
                "; stage {} [{}], approved by [{}]",
                extension.stage,
                extension.approvers.join(", "),
                extension.approved_by.join(", ")
            ));
        }
        if !extension.detail.is_empty() {
            line.push_str(&format!("; {}", one_line(&extension.detail)));
        }
        lines.push(("extension", line));
    }
    for decision in &request.decisions {
        let comment = if decision.comment.is_empty() {
            String::new()
        } else {
            format!(": {}", one_line(&decision.comment))
        };
        lines.push((
            "decision",
            format!(
                "{} {} at {} ({}){comment}",
                decision.approver,
                if decision.decision == "approve" {
                    "approved"
                } else {
                    "denied"
                },
                decision.stage_name,
                time(decision.at_ms)
            ),
        ));
    }
    lines.retain(|(_, value)| !value.is_empty());
    lines
        .iter()
        .map(|(key, value)| format!("{key:<10} {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Requests as aligned columns.
pub fn requests_table(requests: &[pb::AccessRequest]) -> String {
    if requests.is_empty() {
        return "no requests".to_owned();
    }
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            let resource = if r.break_glass {
                format!("{} (break-glass)", r.resource)
            } else {
                r.resource.clone()
            };
            vec![
                r.id.clone(),
                state_word(r.state).to_owned(),
                resource,
                r.requester.clone(),
                time(r.created_at_ms),
                summary(r),
            ]
        })
        .collect();
    columns(
        &["ID", "STATE", "RESOURCE", "REQUESTER", "CREATED", "STATUS"],
        &rows,
    )
}
