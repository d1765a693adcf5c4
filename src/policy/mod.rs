//! Policy and directory: which resources exist, who may request them, who must approve, and
//! who belongs to which group. Both files are validated when loaded; a [`Live`] handle holds
//! the snapshot in force, and in-flight work keeps the snapshot it started with.

mod break_glass;
pub mod demo;
mod directory;
mod error;
mod route;
mod rules;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

pub use break_glass::{BreakGlassAsk, BreakGlassPlan};
pub use directory::{Directory, Person, Status};
pub use error::{Invalid, LoadError};
pub use route::{Ask, Evaluation, ExtensionPlan, Refusal};
pub use rules::{
    Approval, ApproverRef, BreakGlassRule, ExtensionApproval, ExtensionRule, OnIneligible, Policy,
    Resource, StageRule,
};

use crate::model::{Principal, ResourceName};

/// A policy together with the directory it is evaluated against.
#[derive(Debug)]
pub struct Snapshot {
    /// The policy.
    pub policy: Policy,
    /// The directory.
    pub directory: Directory,
}

impl Snapshot {
    /// Loads and validates both files, and checks them against each other.
    pub fn load(policy: &Path, directory: &Path) -> Result<Self, LoadError> {
        let snapshot = Self {
            policy: Policy::load(policy)?,
            directory: Directory::load(directory)?,
        };
        snapshot.check(policy)?;
        Ok(snapshot)
    }

    /// What only both files together can tell: every break-glass review group has an active
    /// member, so no break-glass can be granted that nobody could review.
    pub fn check(&self, policy_file: &Path) -> Result<(), Invalid> {
        for resource in self.policy.resources() {
            let Some(rule) = &resource.break_glass else {
                continue;
            };
            let active = self
                .directory
                .members(&rule.review_group)
                .any(|p| self.directory.person(p).is_some_and(Person::is_active));
            if !active {
                return Err(Invalid {
                    file: policy_file.to_path_buf(),
                    entry: format!("resources.{}", resource.name),
                    field: "break_glass.review_group".to_owned(),
                    message: format!(
                        "group '{}' has no active member in the directory, so nobody could review a break-glass",
                        rule.review_group
                    ),
                });
            }
        }
        Ok(())
    }

    /// Checks that every resource names a configured provisioner (`configured` holds their
    /// names): a policy that does not is refused at start and on reload.
    pub fn check_provisioners(
        &self,
        policy_file: &Path,
        configured: &BTreeSet<&str>,
    ) -> Result<(), Invalid> {
        for resource in self.policy.resources() {
            if !configured.contains(resource.provisioner.as_str()) {
                let known: Vec<&str> = configured.iter().copied().collect();
                return Err(Invalid {
                    file: policy_file.to_path_buf(),
                    entry: format!("resources.{}", resource.name),
                    field: "provisioner".to_owned(),
                    message: format!(
                        "'{}' is not a configured provisioner (configured: {})",
                        resource.provisioner,
                        known.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// Why `holder` counts as a leaver here (removed from the directory, or suspended), or
    /// `None` while they are active.
    pub fn leaving(&self, holder: &Principal) -> Option<&'static str> {
        match self.directory.person(holder) {
            None => Some("removed from the directory"),
            Some(person) if !person.is_active() => Some("suspended in the directory"),
            Some(_) => None,
        }
    }

    /// Why `holder` may no longer hold a lease on `resource` (got by break-glass when
    /// `break_glass`), or `None` while they may: the resource is still in the policy and the
    /// holder is in one of its eligible groups (or, for break-glass, in a group that may break
    /// glass on it).
    pub fn ineligibility(
        &self,
        holder: &Principal,
        resource: &ResourceName,
        break_glass: bool,
    ) -> Option<String> {
        let Some(found) = self.policy.resource(resource) else {
            return Some(format!("{resource} is no longer in the policy"));
        };
        let person = self.directory.person(holder)?;
        let by_break_glass = break_glass
            && found
                .break_glass
                .as_ref()
                .is_some_and(|rule| person.in_any(&rule.groups));
        if person.in_any(&found.eligible_groups) || by_break_glass {
            return None;
        }
        let groups: Vec<&str> = found.eligible_groups.iter().map(|g| g.as_str()).collect();
        Some(format!(
            "{holder} is no longer in a group eligible for {resource} ({})",
            groups.join(", ")
        ))
    }

    /// Whether `principal` is an active member of an auditor group.
    pub fn is_auditor(&self, principal: &Principal) -> bool {
        self.directory
            .person(principal)
            .is_some_and(|p| p.is_active() && p.in_any(&self.policy.auditor_groups))
    }

    /// Whether `principal` is an active member of an admin group.
    pub fn is_admin(&self, principal: &Principal) -> bool {
        self.directory
            .person(principal)
            .is_some_and(|p| p.is_active() && p.in_any(&self.policy.admin_groups))
    }
}

/// The snapshot in force. Cloning shares it; [`Live::replace`] swaps in a validated new one
/// while readers keep the `Arc` they already hold.
#[derive(Clone, Debug)]
pub struct Live {
    // A std lock: held only to clone or swap an Arc, never across an await.
    current: Arc<RwLock<Arc<Snapshot>>>,
}

impl Live {
    /// Starts with `snapshot` in force.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(snapshot))),
        }
    }

    /// The snapshot in force now.
    pub fn current(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `snapshot` in force.
    pub fn replace(&self, snapshot: Snapshot) {
        self.restore(Arc::new(snapshot));
    }

    /// Puts back `snapshot`, one that was in force before (a change that could not be
    /// recorded is undone this way).
    pub fn restore(&self, snapshot: Arc<Snapshot>) {
        match self.current.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}
