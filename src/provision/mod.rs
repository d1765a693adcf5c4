//! Granting and revoking access on target systems.
//!
//! A [`Provisioner`] grants and revokes one lease's access. Both calls must be idempotent
//! (granting twice = granted; revoking what is gone = revoked), because the timer, an RPC and
//! startup recovery may all call them for the same lease. `Ok` from `revoke` means the target
//! was asked afterwards and confirmed the access is gone (read-back); the broker marks a lease
//! ended only then.
//!
//! Every lease holds one *grant* on its target, named by [`Provisioner::grant_key`]. Leases
//! whose grants have the same key share it (the same login in the same role, the same line in
//! the same holders file): the broker removes a shared grant only when no other live lease
//! holds the same key (see `broker::lease`). Provisioners that can list what their target
//! grants ([`Provisioner::list`]) take part in drift reconciliation.

mod exec;
pub mod fence;
mod file;
pub mod postgres;
pub mod ssh;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use exec::ExecProvisioner;
pub use file::FileProvisioner;
pub use postgres::PostgresProvisioner;

use crate::model::{Principal, RequestId, ResourceName, Timestamp};

pub use crate::BoxFuture;

/// The lease a grant or revoke is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTarget {
    /// The lease (request) id.
    pub lease: RequestId,
    /// Who gets or loses access.
    pub principal: Principal,
    /// To what.
    pub resource: ResourceName,
    /// When the lease ends (targets that can enforce it themselves should). For
    /// [`Provisioner::extend`], the new end.
    pub expires_at: Timestamp,
    /// The account on the target that gets the access: the directory's mapping of the
    /// principal for this provisioner, or the principal's name.
    pub account: String,
    /// The holder's SSH public key, for provisioners that sign SSH certificates.
    pub ssh_key: Option<crate::model::SshPublicKey>,
}

/// Secrets a grant created for the holder alone (an ephemeral login and its password). They
/// are handed to the holder once and never logged, audited or stored: `Debug` shows only
/// the names of the values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials(BTreeMap<String, String>);

impl Credentials {
    /// Credentials made of `pairs`.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(pairs.into_iter().collect())
    }

    /// The values by name.
    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The values by name, consumed.
    pub fn into_pairs(self) -> BTreeMap<String, String> {
        self.0
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What a successful grant produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Granted {
    /// Credentials for the holder, when the grant made some.
    pub credentials: Option<Credentials>,
}

/// One grant a target holds, as listed for drift reconciliation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holding {
    /// The grant's key, comparable with [`Provisioner::grant_key`] of the lease holding it.
    pub key: String,
    /// The account on the target.
    pub account: String,
    /// The resource, for targets whose grants are per resource.
    pub resource: Option<ResourceName>,
}

/// A target refused or failed. The message is shown to the holder and operators as the
/// lease's last error, so it must not contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProvisionError(pub String);

/// Grants and revokes access on one kind of target.
pub trait Provisioner: Send + Sync + fmt::Debug + 'static {
    /// Gives `target.account` access to `target.resource` until `target.expires_at`.
    /// Idempotent. Provisioners that make credentials make fresh ones on every call, so a grant
    /// retried after a crash still hands the holder a working secret.
    fn grant<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>>;

    /// Takes the access away and confirms by asking the target again that it is gone.
    /// Idempotent: access already gone is success.
    fn revoke<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>>;

    /// Moves the end of an active lease to `target.expires_at` on targets that enforce it
    /// themselves; credentials it makes (a certificate with the new end) wait for the holder as
    /// a grant's do. Nothing to do by default.
    fn extend<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        let _ = target;
        Box::pin(async { Ok(Granted::default()) })
    }

    /// Puts back the access of an active lease that disappeared from the target (drift). By
    /// default a grant; provisioners with credentials keep the ones the holder has where they
    /// still exist.
    fn restore<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        self.grant(target)
    }

    /// The key of the grant `target` holds on the target system; leases with equal keys share
    /// one grant. By default the account within the resource.
    fn grant_key(&self, target: &LeaseTarget) -> String {
        format!("{}/{}", target.resource, target.account)
    }

    /// What the audit entry of an expiry says about the target, for targets whose access ends
    /// by itself at the lease's end (a certificate); `None` for the others.
    fn expiry_note(&self) -> Option<&'static str> {
        None
    }

    /// Whether a request must name the holder's SSH public key (which no other provisioner
    /// takes): those that sign SSH certificates.
    fn needs_ssh_key(&self) -> bool {
        false
    }

    /// Whether leases of different resources can hold the same grant key (one role granted
    /// for several resources); when not, only leases of the same resource are compared.
    fn keys_span_resources(&self) -> bool {
        false
    }

    /// Every grant the target holds that this provisioner manages, for the given resources;
    /// `None` when the target cannot be asked.
    fn list<'a>(
        &'a self,
        resources: &'a [ResourceName],
    ) -> BoxFuture<'a, Result<Option<Vec<Holding>>, ProvisionError>> {
        let _ = resources;
        Box::pin(async { Ok(None) })
    }

    /// Removes a grant no lease covers (drift), confirming it is gone. Only called for
    /// holdings [`Provisioner::list`] returned.
    fn remove<'a>(&'a self, holding: &'a Holding) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            Err(ProvisionError(format!(
                "this target cannot remove {} by itself",
                holding.account
            )))
        })
    }
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

    /// Every provisioner wrapped by `wrap` (the same names).
    pub fn map(self, wrap: impl Fn(Arc<dyn Provisioner>) -> Arc<dyn Provisioner>) -> Self {
        Self {
            by_name: self
                .by_name
                .into_iter()
                .map(|(name, provisioner)| (name, wrap(provisioner)))
                .collect(),
        }
    }
}
