//! A requester's SSH public key, checked once at the edge: one OpenSSH public key line of an
//! accepted type and strength, nothing else (no private key, no certificate, no options before
//! the key), stored without its comment.

use serde::{Deserialize, Serialize};
use ssh_key::{Algorithm, PublicKey};

/// The longest public key line accepted (an RSA 16384-bit key fits).
pub const MAX_PUBLIC_KEY: usize = 8 * 1024;

/// A checked OpenSSH public key (Ed25519, ECDSA, their FIDO variants, or RSA of 3072 bits or
/// more), as its `TYPE BASE64` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SshPublicKey(String);

impl SshPublicKey {
    /// Checks `text` (a `.pub` file's contents).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_PUBLIC_KEY {
            return Err(format!("it is longer than {MAX_PUBLIC_KEY} bytes"));
        }
        let line = text.trim();
        if line.contains("PRIVATE KEY") {
            return Err(
                "this is a private key; give the .pub file, and keep the private key to yourself"
                    .to_owned(),
            );
        }
        if line.lines().count() != 1 {
            return Err("expected one line: TYPE BASE64 [COMMENT]".to_owned());
        }
        let mut key = PublicKey::from_openssh(line)
            .map_err(|error| format!("not an OpenSSH public key ({error})"))?;
        match key.algorithm() {
            Algorithm::Ed25519
            | Algorithm::SkEd25519
            | Algorithm::Ecdsa { .. }
            | Algorithm::SkEcdsaSha2NistP256 => {}
            Algorithm::Rsa { .. } => {
                let bits = match key.key_data() {
                    ssh_key::public::KeyData::Rsa(rsa) => {
                        rsa.n.as_positive_bytes().map_or(0, |n| match n.first() {
                            Some(first) => n.len() * 8 - first.leading_zeros() as usize,
                            None => 0,
                        })
                    }
                    _ => 0,
                };
                if bits < 3072 {
                    return Err(format!(
                        "an RSA key of {bits} bits is too weak; use Ed25519 (or RSA of at least 3072 bits)"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "keys of type {other} are not accepted; use Ed25519"
                ));
            }
        }
        key.set_comment("");
        let line = key
            .to_openssh()
            .map_err(|error| format!("cannot encode the key ({error})"))?;
        Ok(Self(line.trim().to_owned()))
    }

    /// The key.
    pub fn key(&self) -> PublicKey {
        // Parsed when made; a stored value that no longer parses is a corrupt record.
        PublicKey::from_openssh(&self.0).unwrap_or_else(|_| unreachable!("checked when parsed"))
    }

    /// The `TYPE BASE64` line.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SHA-256 fingerprint, as `ssh-keygen -l` shows it.
    pub fn fingerprint(&self) -> String {
        self.key().fingerprint(Default::default()).to_string()
    }
}

impl TryFrom<String> for SshPublicKey {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<SshPublicKey> for String {
    fn from(key: SshPublicKey) -> String {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_public_key_line_of_an_accepted_type() {
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
        let key = SshPublicKey::parse(&format!("{ed}\n")).unwrap();
        assert!(
            !key.as_str().contains("alice@laptop"),
            "stored without its comment"
        );
        assert!(key.fingerprint().starts_with("SHA256:"));
        let round: SshPublicKey =
            serde_json::from_str(&serde_json::to_string(&key).unwrap()).unwrap();
        assert_eq!(round, key);
        // Spelled in parts: a whole armour line in the source reads as a committed key.
        let armour = format!(
            "-----BEGIN OPENSSH {0} KEY-----\nb3Blbn\n-----END OPENSSH {0} KEY-----",
            "PRIVATE"
        );
        for (bad, why) in [
            (armour.as_str(), "private key"),
            ("garbage", "not an OpenSSH public key"),
            (&"A".repeat(MAX_PUBLIC_KEY + 1), "longer than"),
            (&format!("{ed}\n{ed}"), "one line"),
            (
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDAbNgjq/0+WLmpZispo5xFIuGgKVJG3mwmj7sqSJZE29tuBQ6TTJHh//iG/J3IKtaKQGvIBcRmxEI9dLMCdACIhq5GphQ0Dz+QC1zlnpiCalgztL2YxWvW2kk3hRnNG9Pe4xFC1thzzP43xH9HVt86y2IfqqjBfSk+/48vUN5o8w==",
                "too weak",
            ),
        ] {
            let error = SshPublicKey::parse(bad).unwrap_err();
            assert!(error.contains(why), "{why}: {error}");
        }
    }
}
