//! SSH hosts as targets: short-lived OpenSSH user certificates signed by elevate's user CA
//! ([`ca`]), and the key revocation list hosts read as sshd's `RevokedKeys` ([`krl`]), so that a
//! lease ended early cuts the certificate at once; the [`provisioner`] that does both.

pub mod ca;
pub mod krl;
pub mod provisioner;

pub use provisioner::{SshProvisioner, SshSettings};
