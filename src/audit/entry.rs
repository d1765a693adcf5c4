//! How each domain event ([`Happened`]) is written down: its action name and its details. The
//! one place entries are made, so that the stored format (which auditors' tools and old stores
//! rely on, pinned by `tests/golden/audit_day.jsonl`) has one owner.

use super::actions::*;
use super::{Actor, Draft};
use crate::model::{AccessRequest, Approval, DirectoryChange, Ending, Happened, Timestamp};

/// The action that records `happened`.
pub fn action(happened: &Happened) -> &'static str {
    match happened {
        Happened::Submitted { .. } => SUBMITTED,
        Happened::ApprovalRecorded { .. } => APPROVAL,
        Happened::Approved { .. } => APPROVED,
        Happened::Denied { .. } => DENIED,
        Happened::Cancelled { .. } => CANCELLED,
        Happened::TimedOut => TIMED_OUT,
        Happened::ApprovalVoided { .. } => APPROVAL_VOIDED,
        Happened::Granted { .. } => GRANTED,
        Happened::GrantFailed { .. } => GRANT_FAILED,
        Happened::Ended { ending, .. } => match ending {
            Ending::Expired => EXPIRED,
            Ending::Released => RELEASED,
            Ending::Revoked => REVOKED,
            Ending::Failed => FAILED,
        },
        Happened::RevokeFailed { .. } => REVOKE_FAILED,
        Happened::Flagged { .. } => FLAGGED,
        Happened::ExtensionRequested { .. } => EXTENSION_REQUESTED,
        Happened::ExtensionApproval { .. } => EXTENSION_APPROVAL,
        Happened::ExtensionDenied { .. } => EXTENSION_DENIED,
        Happened::Extended { .. } => EXTENDED,
        Happened::ExtensionFailed { .. } => EXTENSION_FAILED,
        Happened::ReviewOverdue => REVIEW_OVERDUE,
        Happened::ReviewReminded { .. } => REVIEW_REMINDED,
        Happened::ReviewClosed { .. } => REVIEW_CLOSED,
        Happened::DriftRevoked { .. } => DRIFT_REVOKED,
        Happened::DriftRestored { .. } => DRIFT_RESTORED,
        Happened::DriftFailed { .. } => DRIFT_FAILED,
        Happened::Started { .. } => STARTED,
        Happened::Stopped => STOPPED,
        Happened::AuthRefused { .. } => AUTH_REFUSED,
        Happened::RateLimited { .. } => RATE_LIMITED,
        Happened::PolicyReloaded { .. } => POLICY_RELOADED,
        Happened::PolicyReloadRejected { .. } => POLICY_RELOAD_REJECTED,
        Happened::Offboarded { .. } => PRINCIPAL_OFFBOARDED,
        Happened::Reinstated { .. } => PRINCIPAL_REINSTATED,
        Happened::NotificationDropped { .. } => NOTIFICATION_DROPPED,
        Happened::DirectoryUser { change, .. } => match change {
            DirectoryChange::Created => DIRECTORY_USER_CREATED,
            DirectoryChange::Updated => DIRECTORY_USER_UPDATED,
            DirectoryChange::Deactivated => DIRECTORY_USER_DEACTIVATED,
            DirectoryChange::Reactivated => DIRECTORY_USER_REACTIVATED,
            DirectoryChange::Deleted => DIRECTORY_USER_DELETED,
        },
        Happened::DirectoryGroup { change, .. } => match change {
            DirectoryChange::Created => DIRECTORY_GROUP_CREATED,
            DirectoryChange::Deleted => DIRECTORY_GROUP_DELETED,
            _ => DIRECTORY_GROUP_UPDATED,
        },
        Happened::ScimRefused { .. } => SCIM_REFUSED,
    }
}

/// The entry recording that `happened` to `request` at `at`, caused by `actor`: the request's
/// id, resource and requester are its subjects, and every entry about a break-glass request
/// says so.
pub fn about(request: &AccessRequest, at: Timestamp, actor: Actor, happened: Happened) -> Draft {
    let mut draft = Draft::new(at, actor, action(&happened));
    draft.request = Some(request.id);
    draft.resource = Some(request.resource.clone());
    draft.principal = Some(request.requester.clone());
    if let Some(break_glass) = &request.break_glass {
        draft = draft
            .detail("break_glass", true)
            .detail("incident", &break_glass.incident);
    }
    let mut draft = details(draft, Some(request), &happened);
    draft.happened = Some(happened);
    draft
}

/// The entry recording that `happened`, which concerns no request, at `at`, caused by `actor`.
pub fn of(at: Timestamp, actor: Actor, happened: Happened) -> Draft {
    let mut draft = details(Draft::new(at, actor, action(&happened)), None, &happened);
    draft.happened = Some(happened);
    draft
}

fn text<T: ToString>(value: Option<&T>) -> String {
    value.map(ToString::to_string).unwrap_or_default()
}

fn rfc3339(at: Option<Timestamp>) -> String {
    at.map(Timestamp::rfc3339).unwrap_or_default()
}

/// Adds the details (and subjects) `happened` records.
fn details(draft: Draft, request: Option<&AccessRequest>, happened: &Happened) -> Draft {
    match happened {
        Happened::Submitted {
            needs_approval_because,
        } => {
            let Some(request) = request else { return draft };
            let draft = submitted(draft, request);
            match needs_approval_because {
                Some(reviews) => draft.detail("needs_approval_because", reviews.join(" ")),
                None => draft,
            }
        }
        Happened::ApprovalRecorded {
            stage,
            stage_name,
            comment,
        } => draft
            .detail("stage", stage)
            .detail("stage_name", stage_name)
            .detail("comment", text(comment.as_ref())),
        Happened::Approved { how } => match how {
            Approval::Route => draft,
            Approval::Auto => draft.detail("auto", true),
            Approval::BreakGlass => draft.detail("break_glass", true),
        },
        Happened::Denied {
            stage,
            stage_name,
            reason,
        } => draft
            .detail("stage", stage)
            .detail("stage_name", stage_name)
            .detail("reason", reason),
        Happened::Cancelled {
            superseded_by,
            reason,
        } => {
            let mut draft = draft;
            if let Some(by) = superseded_by {
                draft = draft.detail("superseded_by", by);
            }
            match reason {
                Some(reason) => draft.detail("reason", reason),
                None => draft,
            }
        }
        Happened::TimedOut | Happened::ReviewOverdue | Happened::Stopped => draft,
        Happened::ApprovalVoided {
            approver,
            reason,
            extension,
        } => {
            let draft = draft.detail("approver", approver).detail("reason", reason);
            if *extension {
                draft.detail("extension", true)
            } else {
                draft
            }
        }
        Happened::Granted { credentials_issued } => {
            let Some(request) = request else { return draft };
            let draft = draft
                .detail("provisioner", &request.provisioner)
                .detail("expires_at", rfc3339(request.expires_at));
            if *credentials_issued {
                // That credentials exist is audited; they themselves never are.
                draft.detail("credentials", "issued")
            } else {
                draft
            }
        }
        Happened::GrantFailed {
            attempt,
            error,
            retry_at,
        } => draft
            .detail("attempt", attempt)
            .detail("error", error)
            .detail("retry_at", rfc3339(*retry_at)),
        Happened::Ended {
            ending: _,
            grant_kept_for,
            reason,
            lag,
        } => {
            let mut draft = draft;
            if let Some(other) = grant_kept_for {
                draft = draft.detail("grant_kept_for", other);
            }
            if let Some(why) = reason {
                draft = draft.detail("reason", why);
            }
            if let Some(lag) = lag {
                draft = draft.detail("lag_ms", lag.as_millis());
            }
            draft
        }
        Happened::RevokeFailed {
            attempt,
            error,
            retry_at,
            reason,
        } => {
            let draft = draft
                .detail("attempt", attempt)
                .detail("error", error)
                .detail("retry_at", retry_at);
            match reason {
                Some(why) => draft.detail("reason", why),
                None => draft,
            }
        }
        Happened::Flagged { reason } => draft.detail("reason", reason),
        Happened::ExtensionRequested {
            by,
            reason,
            until,
            stage,
        } => draft
            .detail("by", by)
            .detail("reason", reason)
            .detail("until", rfc3339(*until))
            .detail(
                "approval",
                match stage {
                    Some(stage) => format!("stage {stage}"),
                    None => "auto".to_owned(),
                },
            ),
        Happened::ExtensionApproval { comment } => draft.detail("comment", text(comment.as_ref())),
        Happened::ExtensionDenied { reason } => draft.detail("reason", reason),
        Happened::Extended { from, until } => draft
            .detail("from", rfc3339(*from))
            .detail("until", until.rfc3339()),
        Happened::ExtensionFailed { error } => draft.detail("error", error),
        Happened::ReviewReminded { reminder } => draft.detail("reminder", reminder),
        Happened::ReviewClosed {
            justified,
            notes,
            revoke,
        } => draft
            .detail(
                "verdict",
                if *justified {
                    "justified"
                } else {
                    "unjustified"
                },
            )
            .detail("notes", text(notes.as_ref()))
            .detail("revoke", revoke),
        Happened::DriftRevoked { drift } => {
            let mut draft = draft
                .detail("provisioner", &drift.provisioner)
                .detail("account", &drift.account)
                .detail("key", &drift.key);
            if request.is_none() {
                draft.resource = drift.resource.clone();
            }
            draft
        }
        Happened::DriftRestored {
            drift,
            credentials_reissued,
        } => {
            let draft = draft
                .detail("provisioner", &drift.provisioner)
                .detail("account", &drift.account)
                .detail("key", &drift.key);
            if *credentials_reissued {
                draft.detail("credentials", "reissued")
            } else {
                draft
            }
        }
        Happened::DriftFailed {
            provisioner,
            correction,
            error,
        } => {
            let mut draft = draft.detail("provisioner", provisioner);
            if let Some((correction, drift)) = correction {
                draft = draft
                    .detail("account", &drift.account)
                    .detail("key", &drift.key)
                    .detail("correction", correction.as_str());
                if request.is_none() {
                    draft.resource = drift.resource.clone();
                }
            }
            draft.detail("error", error)
        }
        Happened::Started {
            policy_version,
            directory_version,
            overdue,
            scheduled,
            audit_key,
        } => {
            let draft = draft
                .detail("policy_version", policy_version)
                .detail("directory_version", directory_version)
                .detail("overdue_at_start", overdue)
                .detail("scheduled", scheduled)
                .detail("version", env!("CARGO_PKG_VERSION"));
            match audit_key {
                Some(key) => draft.detail("audit_key", key),
                None => draft,
            }
        }
        Happened::AuthRefused { principal, reason } => {
            let mut draft = draft.detail("reason", reason);
            draft.principal = Some(principal.clone());
            draft
        }
        Happened::RateLimited {
            principal,
            resource,
            action,
            rate,
        } => {
            let mut draft = draft.detail("action", action).detail("rate", rate);
            draft.principal = Some(principal.clone());
            draft.resource = Some(resource.clone());
            draft
        }
        Happened::PolicyReloaded {
            old_policy_version,
            new_policy_version,
            old_directory_version,
            new_directory_version,
            changed,
        } => draft
            .detail("old_policy_version", old_policy_version)
            .detail("new_policy_version", new_policy_version)
            .detail("old_directory_version", old_directory_version)
            .detail("new_directory_version", new_directory_version)
            .detail("changed", changed),
        Happened::PolicyReloadRejected {
            error,
            policy_version,
            directory_version,
        } => draft
            .detail("error", error)
            .detail("policy_version", policy_version)
            .detail("directory_version", directory_version),
        Happened::Offboarded { principal, reason } | Happened::Reinstated { principal, reason } => {
            let mut draft = draft.detail("reason", reason);
            draft.principal = Some(principal.clone());
            draft
        }
        Happened::DirectoryUser {
            id,
            principal,
            attributes,
            ..
        } => {
            let mut draft = draft.detail("id", id);
            if !attributes.is_empty() {
                draft = draft.detail("attributes", attributes.join(", "));
            }
            draft.principal = Some(principal.clone());
            draft
        }
        Happened::DirectoryGroup {
            id,
            group,
            added,
            removed,
            attributes,
            ..
        } => {
            let names = |list: &[crate::model::Principal]| {
                list.iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let mut draft = draft.detail("id", id).detail("group", group);
            if !added.is_empty() {
                draft = draft.detail("added", names(added));
            }
            if !removed.is_empty() {
                draft = draft.detail("removed", names(removed));
            }
            if !attributes.is_empty() {
                draft = draft.detail("attributes", attributes.join(", "));
            }
            draft
        }
        Happened::ScimRefused { remote, reason } => {
            draft.detail("remote", remote).detail("reason", reason)
        }
        Happened::NotificationDropped {
            notifier,
            attempts,
            error,
            request: about,
            notification,
        } => {
            let mut draft = draft
                .detail("notifier", notifier)
                .detail("attempts", attempts)
                .detail("error", error);
            if let Some((kind, id)) = notification {
                draft.request = *about;
                draft = draft.detail("event", kind).detail("event_id", id);
            }
            draft
        }
    }
}

/// The details of a submission: everything the policy decided.
fn submitted(draft: Draft, request: &AccessRequest) -> Draft {
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
    draft
        .detail("duration", request.duration)
        .detail("reason", text(request.reason.as_ref()))
        .detail("ticket", text(request.ticket.as_ref()))
        .detail("route", if route.is_empty() { "auto" } else { &route })
        .detail("policy_version", &request.policy_version)
        .detail("decide_by", request.decide_by)
}
