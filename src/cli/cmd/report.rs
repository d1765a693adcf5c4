//! `elevate report`: the access report per resource and per approver.

use super::audit::millis;
use crate::cli::CliError;
use crate::cli::output::Format;
use crate::cli::session::Session;
use crate::model::{Timestamp, one_line};
use crate::proto::v1 as pb;

/// Access report per resource and per approver (auditors).
#[derive(Debug, clap::Args)]
pub struct Report {
    /// Requests submitted at or after: RFC 3339, a date, or a duration ago (90d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Requests submitted before.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0))
}

fn duration(ms: Option<u64>) -> String {
    ms.map_or("-".to_owned(), |ms| {
        humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
    })
}

impl Report {
    /// Asks the daemon for the report and prints it.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let (since, until, format) = (&self.since, &self.until, session.output);
        let clients = &mut session.clients;
        let answer = clients
            .audit
            .report(pb::ReportRequest {
                since_ms: millis("since", since)?,
                until_ms: millis("until", until)?,
            })
            .await?
            .into_inner();
        let report = answer.report.ok_or_else(|| {
            CliError::Call(tonic::Status::internal(
                "the daemon's answer held no report",
            ))
        })?;
        if format == Format::Json {
            println!("{}", json(&report));
            return Ok(());
        }
        let at = |ms: Option<i64>| {
            ms.map(|ms| Timestamp::from_unix_millis(u64::try_from(ms).unwrap_or_default()))
        };
        let window = match (at(report.since_ms), at(report.until_ms)) {
            (None, None) => "all time".to_owned(),
            (Some(since), None) => format!("since {since}"),
            (None, Some(until)) => format!("before {until}"),
            (Some(since), Some(until)) => format!("{since} to {until}"),
        };
        println!("Access report, requests submitted {window}");
        println!();
        println!(
            "{:<20} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10} {:>6} {:>11} {:>8}",
            "RESOURCE",
            "REQUESTS",
            "APPROVED",
            "DENIED",
            "APPROVAL",
            "DECIDE-P50",
            "DECIDE-P90",
            "AUTO",
            "BREAK-GLASS",
            "OVERDUE"
        );
        let counts = |r: &pb::ResourceReport| r.break_glass.unwrap_or_default();
        for r in &report.resources {
            println!(
                "{:<20} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10} {:>6} {:>11} {:>8}",
                r.resource,
                r.requests,
                r.approved,
                r.denied,
                percent(r.approval_rate),
                duration(r.decision_ms_median),
                duration(r.decision_ms_p90),
                percent(r.auto_approved_share),
                counts(r).count,
                counts(r).missed_deadline,
            );
        }
        for r in &report.resources {
            let bg = counts(r);
            if bg.count > 0 {
                println!(
                    "  {}: break-glass {} — {} justified, {} unjustified, {} open ({} overdue now), {} missed the review deadline",
                    r.resource,
                    bg.count,
                    bg.justified,
                    bg.unjustified,
                    bg.open,
                    bg.overdue_now,
                    bg.missed_deadline
                );
            }
            for reason in &r.denied_reasons {
                println!(
                    "  {}: denied {}× — {}",
                    r.resource,
                    reason.count,
                    one_line(&reason.reason)
                );
            }
        }
        println!();
        println!(
            "{:<20} {:>9} {:>9} {:>8} {:>13}",
            "APPROVER", "DECISIONS", "APPROVALS", "DENIALS", "RESPONSE-P50"
        );
        for a in &report.approvers {
            println!(
                "{:<20} {:>9} {:>9} {:>8} {:>13}",
                a.approver,
                a.decisions,
                a.approvals,
                a.denials,
                duration(a.response_ms_median)
            );
        }
        Ok(())
    }
}

/// The report as JSON: the fields of the daemon's report document, times in unix
/// milliseconds.
fn json(report: &pb::Report) -> serde_json::Value {
    let resources: Vec<_> = report
        .resources
        .iter()
        .map(|r| {
            let bg = r.break_glass.unwrap_or_default();
            serde_json::json!({
                "resource": r.resource,
                "requests": r.requests,
                "approved": r.approved,
                "denied": r.denied,
                "cancelled": r.cancelled,
                "timed_out": r.timed_out,
                "undecided": r.undecided,
                "auto_approved": r.auto_approved,
                "approval_rate": r.approval_rate,
                "auto_approved_share": r.auto_approved_share,
                "decision_ms_median": r.decision_ms_median,
                "decision_ms_p90": r.decision_ms_p90,
                "break_glass": {
                    "count": bg.count,
                    "justified": bg.justified,
                    "unjustified": bg.unjustified,
                    "open": bg.open,
                    "overdue_now": bg.overdue_now,
                    "missed_deadline": bg.missed_deadline,
                },
                "denied_reasons": r.denied_reasons.iter().map(|d| serde_json::json!({
                    "reason": d.reason,
                    "count": d.count,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let approvers: Vec<_> = report
        .approvers
        .iter()
        .map(|a| {
            serde_json::json!({
                "approver": a.approver,
                "decisions": a.decisions,
                "approvals": a.approvals,
                "denials": a.denials,
                "response_ms_median": a.response_ms_median,
            })
        })
        .collect();
    serde_json::json!({
        "since": report.since_ms,
        "until": report.until_ms,
        "resources": resources,
        "approvers": approvers,
    })
}
