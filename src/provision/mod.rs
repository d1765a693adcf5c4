//! Granting and revoking access on target systems.
//!
//! A [`Provisioner`] grants and revokes one lease's access. Both calls must be idempotent
//! (granting twice = granted; revoking what is gone = revoked), because the timer, an RPC and
//! startup recovery may all call them for the same lease. `Ok` from `revoke` means the target
//! confirmed the access is gone; the broker marks a lease ended only then.

mod exec;
mod file;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use exec::ExecProvisioner;
pub use file::FileProvisioner;

use crate::model::{Principal, RequestId, ResourceName, Timestamp};

/// A boxed future, for object-safe async trait methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The lease a grant or revoke is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTarget {
    /// The lease (request) id.
    pub lease: RequestId,
    /// Who gets or loses access.
    pub principal: Principal,
    /// To what.
    pub resource: ResourceName,
    /// When the lease ends (targets that can enforce it themselves should).
    pub expires_at: Timestamp,
}

/// A target refused or failed. The message is shown to the holder and operators as the
/// lease's last error, so it must not contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProvisionError(pub String);

/// Grants and revokes access on one kind of target.
pub trait Provisioner: Send + Sync + fmt::Debug + 'static {
    /// Gives `target.principal` access to `target.resource`. Idempotent.
    fn grant<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>>;

    /// Takes the access away and confirms it is gone. Idempotent.
    fn revoke<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>>;
}

/// The configured provisioners, by name.
#[derive(Clone, Debug, Default)]
pub struct Provisioners {
    by_name: BTreeMap<String, Arc<dyn Provisioner>>,
}

impl Provisioners {
    /// Adds (or replaces) the provisioner called `name`.
    pub fn insert(&mut self, name: impl Into<String>, provisioner: Arc<dyn Provisioner>) {
        self.by_name.insert(name.into(), provisioner);
    }

    /// The provisioner called `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Provisioner>, ProvisionError> {
        self.by_name
            .get(name)
            .ok_or_else(|| ProvisionError(format!("provisioner '{name}' is not configured")))
    }

    /// Whether `name` is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Configured names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}
