//! Protobuf in, typed domain values out (once, here), and records back to protobuf. Handlers
//! never see raw strings.

use tonic::Status;

use super::status::invalid;
use crate::audit::Event;
use crate::audit::actions as events;
use crate::audit::query::{ActionFilter, Filter};
use crate::model::{
    AccessRequest, Comment, Extension, ExtensionState, LeaseDuration, Principal, Reason, RequestId,
    ResourceName, ReviewState, StateKind, Ticket, Timestamp, Verdict,
};
use crate::policy::{Approval, Resource};
use crate::proto::v1 as pb;

/// Most requests one list call returns.
pub const MAX_PAGE: u32 = 1000;
/// Requests a list call returns when it names no limit.
pub const DEFAULT_PAGE: u32 = 100;

/// A request id field.
pub fn request_id(field: &str, text: &str) -> Result<RequestId, Status> {
    if text.trim().is_empty() {
        return Err(invalid(field, "a request id is required"));
    }
    text.trim().parse().map_err(|e| invalid(field, e))
}

/// A resource name field.
pub fn resource(text: &str) -> Result<ResourceName, Status> {
    ResourceName::parse(text.trim()).map_err(|e| invalid("resource", e))
}

/// A humantime duration field; empty means "not given".
pub fn duration(field: &str, text: &str) -> Result<Option<LeaseDuration>, Status> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    LeaseDuration::parse(text)
        .map(Some)
        .map_err(|e| invalid(field, e))
}

/// A reason field; empty means "not given".
pub fn reason(field: &str, text: &str) -> Result<Option<Reason>, Status> {
    Reason::parse_optional(text).map_err(|e| invalid(field, e))
}

/// A ticket field; empty means "not given".
pub fn ticket(text: &str) -> Result<Option<Ticket>, Status> {
    Ticket::parse_optional(text).map_err(|e| invalid("ticket", e))
}

/// An SSH public key field (the contents of a `.pub` file); empty means none.
pub fn ssh_key(text: &str) -> Result<Option<crate::model::SshPublicKey>, Status> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    crate::model::SshPublicKey::parse(text)
        .map(Some)
        .map_err(|e| invalid("ssh_key", e))
}

/// An incident reference field; required.
pub fn incident(text: &str) -> Result<Ticket, Status> {
    Ticket::parse_optional(text)
        .map_err(|e| invalid("incident", e.to_string().replace("ticket", "incident")))?
        .ok_or_else(|| {
            invalid(
                "incident",
                "an incident reference is required to break glass",
            )
        })
}

/// A comment field; empty means "not given".
pub fn comment(text: &str) -> Result<Option<Comment>, Status> {
    Comment::parse_optional(text).map_err(|e| invalid("comment", e))
}

/// A state filter; unspecified means "any state".
pub fn state_filter(value: i32) -> Result<Option<StateKind>, Status> {
    let state = pb::RequestState::try_from(value)
        .map_err(|_| invalid("state", format!("unknown state {value}")))?;
    Ok(match state {
        pb::RequestState::Unspecified => None,
        pb::RequestState::Pending => Some(StateKind::Pending),
        pb::RequestState::Approved => Some(StateKind::Approved),
        pb::RequestState::Active => Some(StateKind::Active),
        pb::RequestState::Denied => Some(StateKind::Denied),
        pb::RequestState::Cancelled => Some(StateKind::Cancelled),
        pb::RequestState::TimedOut => Some(StateKind::TimedOut),
        pb::RequestState::Expired => Some(StateKind::Expired),
        pb::RequestState::Released => Some(StateKind::Released),
        pb::RequestState::Revoked => Some(StateKind::Revoked),
        pb::RequestState::RevokeFailing => Some(StateKind::RevokeFailing),
        pb::RequestState::Failed => Some(StateKind::Failed),
    })
}

/// The wire state of a state kind.
pub fn state_to_proto(kind: StateKind) -> pb::RequestState {
    match kind {
        StateKind::Pending => pb::RequestState::Pending,
        StateKind::Approved => pb::RequestState::Approved,
        StateKind::Active => pb::RequestState::Active,
        StateKind::Denied => pb::RequestState::Denied,
        StateKind::Cancelled => pb::RequestState::Cancelled,
        StateKind::TimedOut => pb::RequestState::TimedOut,
        StateKind::Expired => pb::RequestState::Expired,
        StateKind::Released => pb::RequestState::Released,
        StateKind::Revoked => pb::RequestState::Revoked,
        StateKind::RevokeFailing => pb::RequestState::RevokeFailing,
        StateKind::Failed => pb::RequestState::Failed,
    }
}

/// A page size: 0 means the default; more than [`MAX_PAGE`] is refused.
pub fn limit(value: u32) -> Result<usize, Status> {
    match value {
        0 => Ok(DEFAULT_PAGE as usize),
        n if n > MAX_PAGE => Err(invalid("limit", format!("at most {MAX_PAGE}"))),
        n => Ok(n as usize),
    }
}

/// An optional time in unix milliseconds.
pub fn time(field: &str, value: Option<i64>) -> Result<Option<Timestamp>, Status> {
    match value {
        None => Ok(None),
        Some(ms) => u64::try_from(ms)
            .map(|ms| Some(Timestamp::from_unix_millis(ms)))
            .map_err(|_| invalid(field, "a time before 1970")),
    }
}

/// An audit filter: principal, resource, action (checked against the known actions) and a
/// time window.
pub fn audit_filter(body: &pb::QueryEventsRequest) -> Result<Filter, Status> {
    let text = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
    let filter = Filter {
        principal: text(&body.principal)
            .map(|p| Principal::parse(&p).map_err(|e| invalid("principal", e)))
            .transpose()?,
        resource: text(&body.resource).map(|r| resource(&r)).transpose()?,
        action: text(&body.action)
            .map(|a| ActionFilter::parse(&a, events::ALL).map_err(|e| invalid("action", e)))
            .transpose()?,
        since: time("since_ms", body.since_ms)?,
        until: time("until_ms", body.until_ms)?,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until) {
        if since >= until {
            return Err(invalid(
                "until_ms",
                format!(
                    "must be after since ({} ms is not after {} ms)",
                    until.unix_millis(),
                    since.unix_millis()
                ),
            ));
        }
    }
    Ok(filter)
}

/// An audit event on the wire.
pub fn event_to_proto(event: &Event) -> pb::AuditEvent {
    let content = event.content();
    pb::AuditEvent {
        seq: event.seq,
        at_ms: millis(event.at),
        actor: content.actor.unwrap_or_default(),
        action: content.action,
        request_id: content.request.unwrap_or_default(),
        resource: content.resource.unwrap_or_default(),
        principal: content.principal.unwrap_or_default(),
        details_json: serde_json::to_string(&content.details).unwrap_or_default(),
        prev_hash: event.prev_hash.clone(),
        hash: event.hash.clone(),
    }
}

fn millis(time: Timestamp) -> i64 {
    i64::try_from(time.unix_millis()).unwrap_or(i64::MAX)
}

/// A record on the wire.
pub fn request_to_proto(request: &AccessRequest) -> pb::AccessRequest {
    let attempts = request.attempts();
    pb::AccessRequest {
        id: request.id.to_string(),
        requester: request.requester.to_string(),
        resource: request.resource.to_string(),
        reason: request
            .reason
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        ticket: request
            .ticket
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        state: state_to_proto(request.kind()).into(),
        duration: request.duration.to_string(),
        created_at_ms: millis(request.created_at),
        decide_by_ms: millis(request.decide_by),
        approved_at_ms: request.approved_at.map(millis),
        granted_at_ms: request.granted_at.map(millis),
        expires_at_ms: request.expires_at.map(millis),
        ended_at_ms: request.ended_at.map(millis),
        route: request
            .route
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| pb::Stage {
                name: stage.name.clone(),
                quorum: stage.quorum,
                approvers: stage.approvers.iter().map(ToString::to_string).collect(),
                approved_by: request
                    .approvals_at(u32::try_from(index).unwrap_or(u32::MAX))
                    .map(|d| d.approver.to_string())
                    .collect(),
            })
            .collect(),
        current_stage: request.current_stage().map_or(0, |(index, _)| index),
        decisions: request
            .decisions
            .iter()
            .map(|d| pb::Decision {
                approver: d.approver.to_string(),
                decision: match d.verdict {
                    Verdict::Approve => "approve",
                    Verdict::Deny => "deny",
                }
                .to_owned(),
                comment: d.comment.clone().unwrap_or_default(),
                at_ms: millis(d.at),
                stage: d.stage,
                stage_name: request.stage_name(d.stage).to_owned(),
                void: d.void.clone().unwrap_or_default(),
            })
            .collect(),
        policy_version: request.policy_version.clone(),
        attempts: attempts.map_or(0, |a| a.count),
        last_error: request.last_error().unwrap_or_default().to_owned(),
        next_attempt_at_ms: attempts.filter(|a| a.count > 0).map(|a| millis(a.retry_at)),
        break_glass: request.is_break_glass(),
        incident: request
            .break_glass
            .as_ref()
            .map(|b| b.incident.to_string())
            .unwrap_or_default(),
        end_reason: request.end_reason.clone().unwrap_or_default(),
        review: review_to_proto(request),
        break_glass_needed_approval: request
            .break_glass
            .as_ref()
            .is_some_and(|b| b.needed_approval),
        extensions: request.extensions.iter().map(extension_to_proto).collect(),
        account: request
            .account
            .clone()
            .filter(|account| account != request.requester.as_str())
            .unwrap_or_default(),
        credentials_waiting: false,
        flagged: request.flagged.clone().unwrap_or_default(),
        ssh_key_fingerprint: request
            .ssh_key
            .as_ref()
            .map(crate::model::SshPublicKey::fingerprint)
            .unwrap_or_default(),
    }
}

fn extension_to_proto(extension: &Extension) -> pb::Extension {
    let detail = match &extension.state {
        ExtensionState::Denied { by, reason, .. } => format!("denied by {by}: {reason}"),
        ExtensionState::Failed { error, .. } => error.clone(),
        _ => String::new(),
    };
    pb::Extension {
        by: extension.by.to_string(),
        reason: extension.reason.to_string(),
        asked_at_ms: millis(extension.asked_at),
        from_ms: millis(extension.from),
        until_ms: millis(extension.until()),
        state: extension.state.as_str().to_owned(),
        stage: extension
            .stage
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        approvers: extension
            .stage
            .iter()
            .flat_map(|s| s.approvers.iter().map(ToString::to_string))
            .collect(),
        approved_by: extension
            .approvals
            .iter()
            .map(|(who, _)| who.to_string())
            .collect(),
        detail,
    }
}

/// The review of a break-glass request on the wire, once the grant opened it.
pub fn review_to_proto(request: &AccessRequest) -> Option<pb::Review> {
    let break_glass = request.break_glass.as_ref()?;
    let review = break_glass.review.as_ref()?;
    let verdict = review.verdict.as_ref();
    Some(pb::Review {
        id: request.id.to_string(),
        request_id: request.id.to_string(),
        holder: request.requester.to_string(),
        resource: request.resource.to_string(),
        state: match review.state {
            ReviewState::Pending => pb::ReviewState::Pending,
            ReviewState::Overdue => pb::ReviewState::Overdue,
            ReviewState::Justified => pb::ReviewState::Justified,
            ReviewState::Unjustified => pb::ReviewState::Unjustified,
        }
        .into(),
        reviewing_group: break_glass.review_group.to_string(),
        due_at_ms: millis(review.due_at),
        reviewer: verdict.map(|v| v.reviewer.to_string()).unwrap_or_default(),
        notes: verdict.and_then(|v| v.notes.clone()).unwrap_or_default(),
        closed_at_ms: verdict.map(|v| millis(v.at)),
        opened_at_ms: millis(review.opened_at),
        overdue_since_ms: review.overdue_since.map(millis),
        reminders: review.reminders,
        incident: break_glass.incident.to_string(),
        reason: request
            .reason
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        lease_state: state_to_proto(request.kind()).into(),
        escalate_to: break_glass
            .escalate_to
            .iter()
            .map(ToString::to_string)
            .collect(),
        granted_at_ms: request.granted_at.map(millis),
        expires_at_ms: request.expires_at.map(millis),
    })
}

/// A resource on the wire.
pub fn resource_to_proto(resource: &Resource) -> pb::ResourceInfo {
    pb::ResourceInfo {
        name: resource.name.to_string(),
        description: resource.description.clone(),
        default_duration: resource.default_duration.to_string(),
        max_duration: resource.max_duration.to_string(),
        reason_required: resource.require_reason,
        ticket_required: resource.require_ticket,
        ticket_pattern: resource
            .ticket_pattern
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        auto_approve: resource.approval == Approval::Auto,
        stages: match &resource.approval {
            Approval::Auto => Vec::new(),
            Approval::Stages(stages) => stages.iter().map(|s| s.name.clone()).collect(),
        },
        break_glass: resource.break_glass.is_some(),
    }
}

/// The access report as it crosses the wire.
pub fn report(report: crate::audit::report::Report) -> pb::Report {
    let millis = |at: Option<Timestamp>| at.map(|at| at.unix_millis() as i64);
    pb::Report {
        since_ms: millis(report.since),
        until_ms: millis(report.until),
        resources: report
            .resources
            .into_iter()
            .map(|r| pb::ResourceReport {
                resource: r.resource,
                requests: r.requests,
                approved: r.approved,
                denied: r.denied,
                cancelled: r.cancelled,
                timed_out: r.timed_out,
                undecided: r.undecided,
                auto_approved: r.auto_approved,
                approval_rate: r.approval_rate,
                auto_approved_share: r.auto_approved_share,
                decision_ms_median: r.decision_ms_median,
                decision_ms_p90: r.decision_ms_p90,
                break_glass: Some(pb::BreakGlassCounts {
                    count: r.break_glass.count,
                    justified: r.break_glass.justified,
                    unjustified: r.break_glass.unjustified,
                    open: r.break_glass.open,
                    overdue_now: r.break_glass.overdue_now,
                    missed_deadline: r.break_glass.missed_deadline,
                }),
                denied_reasons: r
                    .denied_reasons
                    .into_iter()
                    .map(|d| pb::ReasonCount {
                        reason: d.reason,
                        count: d.count,
                    })
                    .collect(),
            })
            .collect(),
        approvers: report
            .approvers
            .into_iter()
            .map(|a| pb::ApproverReport {
                approver: a.approver,
                decisions: a.decisions,
                approvals: a.approvals,
                denials: a.denials,
                response_ms_median: a.response_ms_median,
            })
            .collect(),
    }
}
