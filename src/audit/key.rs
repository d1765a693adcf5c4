//! The daemon's Ed25519 audit key and the checkpoints it signs.
//!
//! A checkpoint states "the audit log's entry `seq` has hash `head`", signed. Because each
//! entry's hash commits to every entry before it, one valid checkpoint vouches for the whole
//! log up to `seq`: rewriting any of it would need a new signature. The key is generated on
//! the first start, stored as a PKCS#8 PEM file with mode 0600, and its public half is printed
//! by `elevated audit pubkey` for auditors to keep.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::hash::{hex, unhex};
use crate::model::Timestamp;

/// The public half of an audit key, written `ed25519:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The raw key.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From raw bytes, as stored.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Whether `signature` (hex) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Some(signature) = unhex(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A public key that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("not an audit public key (expected ed25519: followed by 64 hex digits): {0:?}")]
pub struct BadPublicKey(String);

impl FromStr for PublicKey {
    type Err = BadPublicKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let digits = trimmed.strip_prefix("ed25519:").unwrap_or(trimmed);
        super::unhex32(digits).map(PublicKey).ok_or_else(|| {
            BadPublicKey(crate::model::one_line(
                &trimmed.chars().take(80).collect::<String>(),
            ))
        })
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or permissions failed.
    #[error(transparent)]
    File(#[from] crate::private_file::PrivateFileError),
    /// The file holds no PEM private key.
    #[error("{}: no usable private key: {message}", file.display())]
    Pem {
        /// The file.
        file: PathBuf,
        /// What the PEM reader said.
        message: String,
    },
    /// Writing a new key failed.
    #[error(transparent)]
    Write(#[from] crate::private_file::WriteError),
    /// The file holds a key of another kind.
    #[error("{}: not an Ed25519 PKCS#8 private key", .0.display())]
    NotEd25519(PathBuf),
    /// Generating a key failed.
    #[error("cannot generate an audit key: {0}")]
    Generate(String),
}

/// The daemon's signing key. Never logged: its `Debug` shows the public half only.
pub struct AuditKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// Loads the key at `file`, refusing a file open to others ([`crate::private_file`]).
    pub fn load(file: &Path) -> Result<Self, KeyError> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        let bytes = crate::private_file::read(file, "private key")?;
        let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| KeyError::Pem {
            file: file.to_path_buf(),
            message: error.to_string(),
        })?;
        Self::from_pkcs8(der.secret_der()).ok_or_else(|| KeyError::NotEd25519(file.to_path_buf()))
    }

    /// Loads the key at `file`, generating it (mode 0600) when the file does not exist.
    /// Returns the key and whether it was generated now.
    pub fn load_or_generate(file: &Path) -> Result<(Self, bool), KeyError> {
        if file.exists() {
            return Ok((Self::load(file)?, false));
        }
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|error| KeyError::Generate(error.to_string()))?;
        let key = Self::from_pkcs8(pair.serialized_der())
            .ok_or_else(|| KeyError::Generate("the new key did not parse".to_owned()))?;
        crate::private_file::write(file, &pair.serialize_pem(), 0o600, false)?;
        Ok((key, true))
    }

    /// A key from PKCS#8 DER.
    fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).ok()?;
        let public = PublicKey(pair.public_key().as_ref().try_into().ok()?);
        Some(Self { pair, public })
    }

    /// A fresh key that lives only in memory (tests and benchmarks).
    pub fn ephemeral() -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let document = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError::Generate("no randomness".to_owned()))?;
        Self::from_pkcs8(document.as_ref())
            .ok_or_else(|| KeyError::Generate("the new key did not parse".to_owned()))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Hex signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        hex(self.pair.sign(message).as_ref())
    }

    /// A checkpoint of the log whose entry `seq` has hash `head`, made at `at`.
    pub fn checkpoint(&self, seq: u64, head: &[u8; 32], at: Timestamp) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            seq,
            head: hex(head),
            at,
            key: self.public,
            signature: String::new(),
        };
        checkpoint.signature = self.sign(&checkpoint.message());
        checkpoint
    }
}

/// A signed statement that the log's entry `seq` has hash `head`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last entry covered.
    pub seq: u64,
    /// Its hash (hex).
    pub head: String,
    /// When the checkpoint was made.
    pub at: Timestamp,
    /// The key that signed it.
    pub key: PublicKey,
    /// Hex Ed25519 signature of [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The bytes that are signed.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "elevate.audit.checkpoint.v1\n{}\n{}\n{}",
            self.seq,
            self.head,
            self.at.unix_millis()
        )
        .into_bytes()
    }

    /// Whether `key` signed this checkpoint.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        key.verifies(&self.message(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_checkpoint_verifies_only_with_its_key_and_contents() {
        let key = AuditKey::ephemeral().unwrap();
        let other = AuditKey::ephemeral().unwrap();
        let checkpoint = key.checkpoint(7, &[1; 32], Timestamp::from_unix_millis(5));
        assert!(checkpoint.signed_by(&key.public()));
        assert!(!checkpoint.signed_by(&other.public()));
        let mut moved = checkpoint.clone();
        moved.seq = 8;
        assert!(!moved.signed_by(&key.public()));
    }

    #[test]
    fn the_key_file_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.key");
        let (first, generated) = AuditKey::load_or_generate(&file).unwrap();
        assert!(generated);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, generated) = AuditKey::load_or_generate(&file).unwrap();
        assert!(!generated);
        assert_eq!(first.public(), again.public());
        assert!(!format!("{first:?}").contains("PRIVATE"));
    }

    #[test]
    fn public_keys_parse_with_or_without_the_prefix() {
        let key = AuditKey::ephemeral().unwrap().public();
        let text = key.to_string();
        assert!(text.starts_with("ed25519:"));
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!(text["ed25519:".len()..].parse::<PublicKey>().unwrap(), key);
        let error = "ed25519:abc".parse::<PublicKey>().unwrap_err();
        assert!(error.to_string().contains("64 hex digits"));
    }
}
