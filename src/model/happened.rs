//! What happened, typed: the domain events of the workflow. The transitions of the state
//! machine return them with the new record (`Transition::Changed`); the broker says what
//! happens outside a transition (a submission, a daemon start, a reload, drift). The audit
//! trail names each one (its action) and writes its entry (`crate::audit::entry`);
//! notifications of outcomes are routed from them (`crate::notify::derive`); metrics count
//! them as they commit (`crate::metrics`). Nothing here knows how an event is written down.

use std::time::Duration;

use super::{Comment, Ending, LeaseDuration, Principal, Reason, RequestId, ResourceName};
use super::{Rate, Timestamp};

/// One thing that happened. Events about a request take the rest of what they say (requester,
/// resource, route, times) from the request as stored with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happened {
    // ---- Requests and their decisions.
    /// A request was submitted. A break-glass request that still needs approval says why.
    Submitted {
        /// Why a break-glass request waits for approval (the reviews its requester left open).
        needs_approval_because: Option<Vec<String>>,
    },
    /// One approval was recorded at a stage.
    ApprovalRecorded {
        /// The stage's index.
        stage: u32,
        /// The stage's name.
        stage_name: String,
        /// The approver's comment.
        comment: Option<Comment>,
    },
    /// Every stage passed, or nothing had to.
    Approved {
        /// How.
        how: Approval,
    },
    /// An approver denied the request.
    Denied {
        /// The stage's index.
        stage: u32,
        /// The stage's name.
        stage_name: String,
        /// Why.
        reason: Reason,
    },
    /// The request was withdrawn before it was granted.
    Cancelled {
        /// The break-glass request that replaced it.
        superseded_by: Option<RequestId>,
        /// Why, when the requester did not cancel it themselves (they left).
        reason: Option<String>,
    },
    /// No decision in time.
    TimedOut,
    /// An approval stopped counting toward a quorum: the approver left.
    ApprovalVoided {
        /// Whose approval.
        approver: Principal,
        /// Why.
        reason: String,
        /// Whether it was an approval of an extension.
        extension: bool,
    },

    // ---- Leases on targets.
    /// The target confirmed the grant.
    Granted {
        /// Whether the target issued credentials (they themselves are never recorded).
        credentials_issued: bool,
    },
    /// A grant attempt failed.
    GrantFailed {
        /// Which attempt, from 1.
        attempt: u32,
        /// What the target said.
        error: String,
        /// When the next attempt is due (`None` after the last).
        retry_at: Option<Timestamp>,
    },
    /// The target confirmed the revoke: the lease ended.
    Ended {
        /// How.
        ending: Ending,
        /// Another live lease holds the same grant, which therefore stays on the target.
        grant_kept_for: Option<RequestId>,
        /// Why, when someone gave a reason.
        reason: Option<String>,
        /// How late after its end an expired lease was revoked.
        lag: Option<Duration>,
    },
    /// A revoke attempt failed; access is still held.
    RevokeFailed {
        /// Which attempt, from 1.
        attempt: u32,
        /// What the target said.
        error: String,
        /// When the next attempt is due.
        retry_at: Timestamp,
        /// Why the lease is revoked, when someone gave a reason.
        reason: Option<String>,
    },
    /// A holder who stopped being eligible keeps the lease to its end, flagged for review.
    Flagged {
        /// Why.
        reason: String,
    },

    // ---- Extensions.
    /// The holder asked for more time.
    ExtensionRequested {
        /// How much more.
        by: LeaseDuration,
        /// Why.
        reason: Reason,
        /// The end asked for.
        until: Option<Timestamp>,
        /// The stage that decides it (`None`: approved automatically).
        stage: Option<String>,
    },
    /// One approval of an extension.
    ExtensionApproval {
        /// The approver's comment.
        comment: Option<Comment>,
    },
    /// An approver refused an extension.
    ExtensionDenied {
        /// Why.
        reason: Reason,
    },
    /// The target accepted the new end.
    Extended {
        /// The end before.
        from: Option<Timestamp>,
        /// The end now.
        until: Timestamp,
    },
    /// The target refused the new end; the lease keeps its end.
    ExtensionFailed {
        /// What the target said.
        error: String,
    },

    // ---- Break-glass reviews.
    /// A review's deadline passed without a verdict.
    ReviewOverdue,
    /// An overdue review was reminded about again.
    ReviewReminded {
        /// How many reminders so far.
        reminder: u32,
    },
    /// A reviewer closed the review.
    ReviewClosed {
        /// The verdict.
        justified: bool,
        /// The reviewer's notes.
        notes: Option<Reason>,
        /// Whether the verdict revokes the lease.
        revoke: bool,
    },

    // ---- Reconciliation of targets with the leases.
    /// A grant no live lease holds was removed.
    DriftRevoked {
        /// The drift found on a target.
        drift: Drift,
    },
    /// The grant of an active lease had disappeared and was put back.
    DriftRestored {
        /// The drift found on a target.
        drift: Drift,
        /// Whether the target issued new credentials.
        credentials_reissued: bool,
    },
    /// A difference could not be corrected, or the target could not be listed.
    DriftFailed {
        /// The provisioner.
        provisioner: String,
        /// What was being corrected (`None`: listing the target failed).
        correction: Option<(DriftCorrection, Drift)>,
        /// What the target said.
        error: String,
    },

    // ---- The daemon, its rules and its callers.
    /// The daemon started.
    Started {
        /// The policy in force.
        policy_version: String,
        /// The directory in force.
        directory_version: String,
        /// Requests overdue at start, driven before serving.
        overdue: usize,
        /// Requests scheduled.
        scheduled: usize,
        /// The public audit key.
        audit_key: Option<String>,
    },
    /// The daemon stopped cleanly.
    Stopped,
    /// A caller with a valid certificate was refused.
    AuthRefused {
        /// Who.
        principal: Principal,
        /// Why ("not in the directory", "offboarded", "suspended").
        reason: &'static str,
    },
    /// A caller was refused by a rate limit.
    RateLimited {
        /// Who.
        principal: Principal,
        /// The resource asked for.
        resource: ResourceName,
        /// What was limited ("submit", "extend").
        action: &'static str,
        /// The rate in force.
        rate: Rate,
    },
    /// The policy and directory were reloaded.
    PolicyReloaded {
        /// The policy before.
        old_policy_version: String,
        /// The policy now.
        new_policy_version: String,
        /// The directory before.
        old_directory_version: String,
        /// The directory now.
        new_directory_version: String,
        /// Whether either changed.
        changed: bool,
    },
    /// A reload was refused; the old files stay in force.
    PolicyReloadRejected {
        /// Why.
        error: String,
        /// The policy in force.
        policy_version: String,
        /// The directory in force.
        directory_version: String,
    },
    /// An administrator offboarded a principal.
    Offboarded {
        /// Who.
        principal: Principal,
        /// Why.
        reason: Reason,
    },
    /// An administrator reinstated an offboarded principal.
    Reinstated {
        /// Who.
        principal: Principal,
        /// Why.
        reason: Reason,
    },
    // ---- The directory of record (pushed over SCIM, or imported).
    /// A user of the directory of record was created, changed, deactivated, reactivated or
    /// deleted.
    DirectoryUser {
        /// What became of them.
        change: DirectoryChange,
        /// Their id in the directory of record.
        id: String,
        /// The principal they are (their userName).
        principal: Principal,
        /// The attributes a change touched, by name.
        attributes: Vec<String>,
    },
    /// A group of the directory of record was created, changed or deleted.
    DirectoryGroup {
        /// What became of it.
        change: DirectoryChange,
        /// Its id in the directory of record.
        id: String,
        /// Its name (displayName), the group policies name.
        group: String,
        /// Principals who joined it.
        added: Vec<Principal>,
        /// Principals who left it.
        removed: Vec<Principal>,
        /// Other attributes a change touched (`displayName (was sre)`).
        attributes: Vec<String>,
    },
    /// A SCIM request was refused before it was read: no token, a wrong one.
    ScimRefused {
        /// The peer's address.
        remote: String,
        /// Why.
        reason: &'static str,
    },
    /// A notification was given up on after its retries.
    NotificationDropped {
        /// The notifier.
        notifier: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
        /// The request the notification was about.
        request: Option<RequestId>,
        /// The notification's kind and id, when it could be read.
        notification: Option<(String, String)>,
    },
}

/// How a request came to be approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    /// Its route's last stage reached its quorum.
    Route,
    /// The resource approves automatically.
    Auto,
    /// Break-glass: granted at once, reviewed afterwards.
    BreakGlass,
}

/// A difference between a target and the leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The provisioner of the target.
    pub provisioner: String,
    /// The account on the target.
    pub account: String,
    /// The grant's key.
    pub key: String,
    /// The resource, when the target names it.
    pub resource: Option<ResourceName>,
}

/// The correction reconciliation attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftCorrection {
    /// Removing a grant no lease holds.
    Revoke,
    /// Putting back the grant of an active lease.
    Restore,
}

impl DriftCorrection {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftCorrection::Revoke => "revoke",
            DriftCorrection::Restore => "restore",
        }
    }
}

/// What a change did to a resource of the directory of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryChange {
    /// It was created.
    Created,
    /// Some of its attributes changed (for a user, not whether they are active).
    Updated,
    /// A user was deactivated (`active` set to false).
    Deactivated,
    /// A user was reactivated (`active` set to true).
    Reactivated,
    /// It was deleted.
    Deleted,
}

impl DirectoryChange {
    /// The last part of its action name (`directory.user.deactivated`).
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryChange::Created => "created",
            DirectoryChange::Updated => "updated",
            DirectoryChange::Deactivated => "deactivated",
            DirectoryChange::Reactivated => "reactivated",
            DirectoryChange::Deleted => "deleted",
        }
    }
}
