//! Who is calling, with the roles the directory gives them now, and the rules of what a caller
//! may see and do that every part of the workflow applies.

use super::BrokerError;
use crate::model::{AccessRequest, GroupName, Principal};

/// An authenticated caller, with the roles the directory gives them now.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// Their groups.
    pub groups: Vec<GroupName>,
    /// Their manager.
    pub manager: Option<Principal>,
    /// Member of an auditor group.
    pub auditor: bool,
    /// Member of an admin group.
    pub admin: bool,
}

impl Caller {
    /// Whether the caller may see every request.
    pub fn sees_all(&self) -> bool {
        self.auditor || self.admin
    }

    /// Whether the caller may see `request`: its requester, its approvers (of the route or of
    /// an extension), the reviewers of a break-glass request (its review group), auditors and
    /// admins. Everyone else is answered as if it did not exist.
    pub fn may_see(&self, request: &AccessRequest) -> bool {
        request.requester == self.principal
            || request.is_approver(&self.principal)
            || request
                .break_glass
                .as_ref()
                .is_some_and(|b| self.groups.contains(&b.review_group))
            || self.sees_all()
    }

    /// Fails unless the caller is in an admin group; checked before any argument is looked at.
    pub fn require_admin(&self, what: &str) -> Result<(), BrokerError> {
        if self.admin {
            Ok(())
        } else {
            Err(BrokerError::Forbidden(format!(
                "{what} is for members of an admin group; {} is not one",
                self.principal
            )))
        }
    }

    /// Fails unless the caller is in an auditor group; checked before any argument is looked
    /// at.
    pub fn require_auditor(&self, what: &str) -> Result<(), BrokerError> {
        if self.auditor {
            Ok(())
        } else {
            Err(BrokerError::Forbidden(format!(
                "{what} is for members of an auditor group; {} is not one",
                self.principal
            )))
        }
    }
}
