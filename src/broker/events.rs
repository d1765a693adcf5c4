//! Audit drafts for each transition. The action names are the audit trail's own
//! ([`crate::audit::actions`]), re-exported here for the workflow that records them.

pub use crate::audit::actions::*;
use crate::audit::{Actor, Draft};
use crate::model::{AccessRequest, Ending, Timestamp};

/// A draft about `request`, with its id, resource and requester as subjects.
pub fn about(request: &AccessRequest, at: Timestamp, actor: Actor, action: &'static str) -> Draft {
    let mut draft = Draft::new(at, actor, action);
    draft.request = Some(request.id);
    draft.resource = Some(request.resource.clone());
    draft.principal = Some(request.requester.clone());
    match &request.break_glass {
        // Marked everywhere: every event about a break-glass request says so.
        Some(break_glass) => draft
            .detail("break_glass", true)
            .detail("incident", &break_glass.incident),
        None => draft,
    }
}

/// The draft for a submission: everything the policy decided.
pub fn submitted(request: &AccessRequest) -> Draft {
    let route = request
        .route
        .stages
        .iter()
        .map(|stage| {
            let approvers: Vec<&str> = stage.approvers.iter().map(|p| p.as_str()).collect();
            format!("{}:{}/[{}]", stage.name, stage.quorum, approvers.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ");
    about(
        request,
        request.created_at,
        Actor::Principal(request.requester.clone()),
        SUBMITTED,
    )
    .detail("duration", request.duration)
    .detail(
        "reason",
        request.reason.as_ref().map(|r| r.as_str()).unwrap_or(""),
    )
    .detail(
        "ticket",
        request.ticket.as_ref().map(|t| t.as_str()).unwrap_or(""),
    )
    .detail("route", if route.is_empty() { "auto" } else { &route })
    .detail("policy_version", &request.policy_version)
    .detail("decide_by", request.decide_by)
}

/// The action recording a confirmed end of a lease.
pub fn ended(ending: Ending) -> &'static str {
    match ending {
        Ending::Expired => EXPIRED,
        Ending::Released => RELEASED,
        Ending::Revoked => REVOKED,
        Ending::Failed => FAILED,
    }
}
