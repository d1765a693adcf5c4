//! Policy and directory: which resources exist, who may request them, who must approve, and
//! who belongs to which group. Both files are validated when loaded; a [`Live`] handle holds
//! the snapshot in force, and in-flight work keeps the snapshot it started with.

mod break_glass;
mod directory;
mod error;
mod route;
mod rules;

use std::path::Path;
use std::sync::{Arc, RwLock};

pub use break_glass::{BreakGlassAsk, BreakGlassPlan};
pub use directory::{Directory, Person, Status};
pub use error::{Invalid, LoadError};
pub use route::{Ask, Evaluation, ExtensionPlan, Refusal};
pub use rules::{
    Approval, ApproverRef, BreakGlassRule, ExtensionApproval, ExtensionRule, Policy, Resource,
    StageRule,
};

use crate::model::Principal;

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
        let snapshot = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}
