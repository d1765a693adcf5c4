//! The demo policy and directory: what dev mode writes on first start, and the fixture of the
//! tests of routing, break-glass and notifications.
//!
//! Six people (engineer, manager, security, auditor, oncall, admin) and three resources:
//! `staging-db` (auto-approved), `prod-db-read` (the manager approves) and `prod-db-admin`
//! (the manager, then security; break-glass for SRE, reviewed by security).

use std::path::Path;

use super::{Directory, LoadError, Policy, Snapshot};

/// The demo policy.
pub const POLICY: &str = include_str!("policy.toml");

/// The demo directory.
pub const DIRECTORY: &str = include_str!("directory.toml");

/// The demo policy and directory as one snapshot.
pub fn snapshot() -> Result<Snapshot, LoadError> {
    Ok(Snapshot {
        policy: Policy::parse(POLICY, Path::new("policy.toml"))?,
        directory: Directory::parse(DIRECTORY, Path::new("directory.toml"))?,
    })
}
