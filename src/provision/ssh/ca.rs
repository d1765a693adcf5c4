//! The SSH user certificate authority: its Ed25519 key (a private file, refused when open to
//! others), the line hosts trust (`TrustedUserCAKeys`), and user certificates signed with
//! explicit principals for requesters' keys ([`SshPublicKey`], checked at the edge).

use std::path::Path;

use ssh_key::certificate::{Builder, CertType, Certificate};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::model::SshPublicKey;

/// The comment of a CA key made by elevated.
const CA_COMMENT: &str = "elevate user CA";

/// Something about the CA or a key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CA key file.
    #[error("{file}: {message}")]
    Key {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Signing failed.
    #[error("signing the certificate failed: {0}")]
    Sign(String),
}

/// A user CA: signs certificates with its Ed25519 key. `Debug` shows only its public half.
pub struct UserCa {
    key: PrivateKey,
}

impl std::fmt::Debug for UserCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserCa({})", self.public_line())
    }
}

/// What a certificate says.
#[derive(Clone, Debug)]
pub struct Issue<'a> {
    /// The requester's key.
    pub key: &'a SshPublicKey,
    /// Unique per certificate; never 0.
    pub serial: u64,
    /// What sshd logs: request, principal, resource.
    pub key_id: String,
    /// The logins it is valid for; never empty.
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds.
    pub valid_before: u64,
    /// Extensions by name (`permit-pty`), with their values (usually empty).
    pub extensions: Vec<(String, String)>,
    /// Critical options (`force-command`, `source-address`).
    pub critical_options: Vec<(String, String)>,
}

impl UserCa {
    /// Reads the CA key in `file`: private (mode 0600 or stricter), unencrypted, Ed25519.
    pub fn load(file: &Path) -> Result<Self, CaError> {
        let failed = |message: String| CaError::Key {
            file: file.display().to_string(),
            message,
        };
        let bytes = crate::private_file::read(file, "SSH CA key")
            .map_err(|error| failed(error.to_string()))?;
        let key = PrivateKey::from_openssh(&bytes)
            .map_err(|error| failed(format!("not an OpenSSH private key: {error}")))?;
        if key.is_encrypted() {
            return Err(failed(
                "the key is encrypted; elevated needs it unencrypted".into(),
            ));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(failed(format!(
                "the CA key must be Ed25519, not {}",
                key.algorithm()
            )));
        }
        Ok(Self { key })
    }

    /// Makes a new CA key and writes it to `file` (mode 0600; refused when it exists).
    pub fn generate(file: &Path) -> Result<Self, CaError> {
        let failed = |message: String| CaError::Key {
            file: file.display().to_string(),
            message,
        };
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .map_err(|error| failed(error.to_string()))?;
        key.set_comment(CA_COMMENT);
        let text = key
            .to_openssh(LineEnding::LF)
            .map_err(|error| failed(error.to_string()))?;
        crate::private_file::write(file, &text, 0o600, false)
            .map_err(|error| failed(error.to_string()))?;
        Ok(Self { key })
    }

    /// The line hosts put in the file `TrustedUserCAKeys` names.
    pub fn public_line(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .unwrap_or_else(|_| String::from("(unencodable key)"))
    }

    /// The CA's public key in SSH wire encoding (how a KRL names it).
    pub fn public_blob(&self) -> Vec<u8> {
        self.key.public_key().to_bytes().unwrap_or_default()
    }

    /// Signs a user certificate as `issue` says.
    pub fn issue(&self, issue: &Issue<'_>) -> Result<Certificate, CaError> {
        if issue.principals.is_empty() {
            // An empty list would make the certificate valid for every login.
            return Err(CaError::Sign(
                "a certificate needs at least one principal".into(),
            ));
        }
        if issue.serial == 0 {
            return Err(CaError::Sign(
                "serial 0 cannot be revoked; use another".into(),
            ));
        }
        let sign = |error: ssh_key::Error| CaError::Sign(error.to_string());
        let mut builder = Builder::new_with_random_nonce(
            &mut OsRng,
            issue.key.key().key_data().clone(),
            issue.valid_after,
            issue.valid_before,
        )
        .map_err(sign)?;
        builder
            .serial(issue.serial)
            .map_err(sign)?
            .cert_type(CertType::User)
            .map_err(sign)?
            .key_id(issue.key_id.clone())
            .map_err(sign)?;
        for principal in &issue.principals {
            builder.valid_principal(principal.clone()).map_err(sign)?;
        }
        for (name, value) in &issue.extensions {
            builder
                .extension(name.clone(), value.clone())
                .map_err(sign)?;
        }
        for (name, value) in &issue.critical_options {
            builder
                .critical_option(name.clone(), value.clone())
                .map_err(sign)?;
        }
        builder.sign(&self.key).map_err(sign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_name_their_principals_and_never_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca");
        let ca = UserCa::generate(&file).unwrap();
        assert!(UserCa::generate(&file).is_err(), "never overwritten");
        let loaded = UserCa::load(&file).unwrap();
        assert_eq!(loaded.public_line(), ca.public_line());
        assert!(ca.public_line().starts_with("ssh-ed25519 "));
        assert!(!format!("{ca:?}").contains("PRIVATE"));

        let user = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let line = user.public_key().to_openssh().unwrap();
        let key = SshPublicKey::parse(&format!("{line}\n")).unwrap();
        let issue = Issue {
            key: &key,
            serial: 7,
            key_id: "req-1 alice prod-ssh".into(),
            principals: vec!["alice".into()],
            valid_after: 1_000,
            valid_before: 5_000,
            extensions: vec![("permit-pty".into(), String::new())],
            critical_options: vec![("force-command".into(), "/bin/true".into())],
        };
        let cert = ca.issue(&issue).unwrap();
        assert_eq!(cert.serial(), 7);
        assert_eq!(cert.valid_principals(), ["alice"]);
        let fingerprint = ca.key.public_key().fingerprint(Default::default());
        cert.validate_at(2_000, [&fingerprint]).unwrap();
        assert!(cert.validate_at(6_000, [&fingerprint]).is_err());
        assert!(
            ca.issue(&Issue {
                principals: vec![],
                ..issue.clone()
            })
            .is_err()
        );
        assert!(ca.issue(&Issue { serial: 0, ..issue }).is_err());
    }
}
