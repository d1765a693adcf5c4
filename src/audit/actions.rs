//! The names of the actions the audit trail records. They are stable: auditors, scripts,
//! metrics and notifications filter on them.

/// A request was submitted.
pub const SUBMITTED: &str = "request.submitted";
/// One approval was recorded at a stage.
pub const APPROVAL: &str = "request.approval";
/// Every stage passed (or the resource auto-approves).
pub const APPROVED: &str = "request.approved";
/// An approver denied the request.
pub const DENIED: &str = "request.denied";
/// The requester cancelled.
pub const CANCELLED: &str = "request.cancelled";
/// No decision in time.
pub const TIMED_OUT: &str = "request.timed_out";
/// The target confirmed the grant.
pub const GRANTED: &str = "lease.granted";
/// A grant attempt failed.
pub const GRANT_FAILED: &str = "lease.grant_failed";
/// A revoke attempt failed.
pub const REVOKE_FAILED: &str = "lease.revoke_failed";
/// The lease expired and the target confirmed the revoke.
pub const EXPIRED: &str = "lease.expired";
/// The holder released the lease and the target confirmed the revoke.
pub const RELEASED: &str = "lease.released";
/// An administrator revoked the lease and the target confirmed it.
pub const REVOKED: &str = "lease.revoked";
/// The holder asked to extend an active lease.
pub const EXTENSION_REQUESTED: &str = "lease.extension_requested";
/// One approval of an extension.
pub const EXTENSION_APPROVAL: &str = "lease.extension_approval";
/// An approver refused an extension.
pub const EXTENSION_DENIED: &str = "lease.extension_denied";
/// The target accepted the new end and the lease's expiry moved.
pub const EXTENDED: &str = "lease.extended";
/// The target refused an extension's new end; the lease keeps its end.
pub const EXTENSION_FAILED: &str = "lease.extension_failed";
/// Reconciliation removed a grant on a target that no live lease holds.
pub const DRIFT_REVOKED: &str = "drift.revoked";
/// Reconciliation put back the grant of an active lease that had disappeared from its target.
pub const DRIFT_RESTORED: &str = "drift.restored";
/// Reconciliation could not correct a difference (the target failed); it is retried.
pub const DRIFT_FAILED: &str = "drift.failed";
/// The grant failed for good and its leftovers were revoked.
pub const FAILED: &str = "request.failed";
/// A break-glass review's deadline passed without a verdict: escalated.
pub const REVIEW_OVERDUE: &str = "review.overdue";
/// An overdue review was reminded about again.
pub const REVIEW_REMINDED: &str = "review.reminded";
/// A reviewer closed a break-glass review with a verdict.
pub const REVIEW_CLOSED: &str = "review.closed";
/// The daemon started: the policy and directory versions in force, the audit key.
pub const STARTED: &str = "daemon.started";
/// The daemon stopped cleanly.
pub const STOPPED: &str = "daemon.stopped";
/// A caller with a valid certificate was refused: unknown to the directory or suspended.
pub const AUTH_REFUSED: &str = "auth.refused";
/// A caller was refused by a rate limit (the first refusal of each window).
pub const RATE_LIMITED: &str = "rate.limited";
/// A notification was given up on after its retries.
pub const NOTIFICATION_DROPPED: &str = "notification.dropped";
/// The policy and directory were reloaded: old and new version hashes.
pub const POLICY_RELOADED: &str = "policy.reloaded";
/// A reload was refused because a file failed validation; the old files stay in force.
pub const POLICY_RELOAD_REJECTED: &str = "policy.reload_rejected";
/// An administrator offboarded a principal.
pub const PRINCIPAL_OFFBOARDED: &str = "principal.offboarded";
/// An administrator reinstated an offboarded principal.
pub const PRINCIPAL_REINSTATED: &str = "principal.reinstated";
/// An approval stopped counting toward its stage's quorum: the approver left.
pub const APPROVAL_VOIDED: &str = "request.approval_voided";
/// An active lease's holder stopped being eligible and the policy keeps such leases running,
/// flagged for review.
pub const FLAGGED: &str = "lease.flagged";

/// Every action the daemon records, for validating filters.
pub const ALL: &[&str] = &[
    SUBMITTED,
    APPROVAL,
    APPROVED,
    DENIED,
    CANCELLED,
    TIMED_OUT,
    GRANTED,
    GRANT_FAILED,
    REVOKE_FAILED,
    EXPIRED,
    RELEASED,
    REVOKED,
    EXTENSION_REQUESTED,
    EXTENSION_APPROVAL,
    EXTENSION_DENIED,
    EXTENDED,
    EXTENSION_FAILED,
    DRIFT_REVOKED,
    DRIFT_RESTORED,
    DRIFT_FAILED,
    FAILED,
    REVIEW_OVERDUE,
    REVIEW_REMINDED,
    REVIEW_CLOSED,
    STARTED,
    STOPPED,
    AUTH_REFUSED,
    RATE_LIMITED,
    NOTIFICATION_DROPPED,
    POLICY_RELOADED,
    POLICY_RELOAD_REJECTED,
    PRINCIPAL_OFFBOARDED,
    PRINCIPAL_REINSTATED,
    APPROVAL_VOIDED,
    FLAGGED,
];
/// A user of the directory of record was created (actor `scim`, or the daemon on an import).
pub const DIRECTORY_USER_CREATED: &str = "directory.user.created";
/// A user's attributes changed.
pub const DIRECTORY_USER_UPDATED: &str = "directory.user.updated";
/// A user was deactivated: the leaver path follows.
pub const DIRECTORY_USER_DEACTIVATED: &str = "directory.user.deactivated";
/// A user was reactivated: they may request again.
pub const DIRECTORY_USER_REACTIVATED: &str = "directory.user.reactivated";
/// A user was deleted: the leaver path follows.
pub const DIRECTORY_USER_DELETED: &str = "directory.user.deleted";
/// A group of the directory of record was created.
pub const DIRECTORY_GROUP_CREATED: &str = "directory.group.created";
/// A group's name or members changed: the mover path follows for those who left it.
pub const DIRECTORY_GROUP_UPDATED: &str = "directory.group.updated";
/// A group was deleted: the mover path follows for its members.
pub const DIRECTORY_GROUP_DELETED: &str = "directory.group.deleted";
/// A SCIM request was refused for its credentials (the first refusals of each window).
pub const SCIM_REFUSED: &str = "scim.refused";
