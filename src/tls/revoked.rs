//! The deny list: client certificates that chain to the CA but are refused all the same. It is a
//! TOML file, `revoked.toml` beside the CA unless `[tls] revoked` names another, to which
//! `elevated certs revoke` adds entries (written whole to a temporary file, then renamed over
//! the old one, so a reader never sees half of it).
//!
//! The daemon consults a [`DenyList`] on every new connection. It looks at the file's metadata
//! each time and reads it again when the file changed, so a revocation takes effect at the next
//! connection, without a restart. A missing file is an empty list. A file that cannot be read or
//! parsed fails closed: every client certificate is refused until it is fixed or removed (a
//! revocation someone wrote must never be ignored), and the error is logged once per change.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::model::{Principal, Reason, Timestamp};
use crate::tls::issue::{CertDir, IssueError, write_file};
use crate::tls::load_certs;

/// The deny list's name in a certificate directory.
pub const FILE_NAME: &str = "revoked.toml";

/// The longest serial number accepted, in bytes (RFC 5280 allows 20, plus a sign byte).
const MAX_SERIAL_BYTES: usize = 21;

/// A certificate serial number: its value, without leading zero bytes. Shown as upper-case hex
/// without colons, the way `openssl x509 -noout -serial` prints it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// The serial of DER integer bytes (such as x509-parser's `raw_serial`).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let start = bytes
            .iter()
            .position(|byte| *byte != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        Self(bytes.get(start..).unwrap_or_default().to_vec())
    }

    /// Its value, big-endian, without leading zero bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The serial of a certificate (DER).
    pub fn of_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(Self::from_bytes(cert.raw_serial()))
    }
}

impl FromStr for Serial {
    type Err = RevokedError;

    /// Hex digits in either case, with or without colons, optionally after `serial=`: what
    /// `openssl x509 -serial` prints, and the `aa:bb:…` form of `openssl x509 -text`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || RevokedError::Serial(text.to_owned());
        let trimmed = text.trim();
        let digits = match trimmed.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("serial=") => &trimmed[7..],
            _ => trimmed,
        };
        let digits: String = digits.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let bytes = crate::hash::unhex(&padded).ok_or_else(malformed)?;
        let serial = Self::from_bytes(&bytes);
        if serial.0.len() > MAX_SERIAL_BYTES {
            return Err(malformed());
        }
        Ok(serial)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One refused certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Its serial number.
    pub serial: Serial,
    /// The name it was issued for, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// When it was revoked (RFC 3339).
    pub revoked_at: String,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    #[serde(default)]
    revoked: Vec<Revocation>,
}

const HEADER: &str = "\
# Client certificates elevated refuses although they chain to its CA. Written by
# `elevated certs revoke`; the daemon re-reads this file when it changes. Serials are hex, as
# `openssl x509 -noout -serial` prints them. Removing an entry lets that certificate in again.

";

/// Revoking or reading the deny list failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokedError {
    /// Not a serial number.
    #[error(
        "malformed serial '{0}': expected hexadecimal digits as `openssl x509 -noout -serial` prints them (colons allowed)"
    )]
    Serial(String),
    /// The name is not a principal name, or names the CA or server certificate.
    #[error("{0}")]
    Name(String),
    /// No certificate was issued for the name in the directory.
    #[error(
        "no certificate {} to revoke ('elevated certs issue' writes NAME.crt there); revoke by --serial instead",
        .0.display()
    )]
    UnknownName(PathBuf),
    /// A file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's contents are unusable.
    #[error("{}: {message}", file.display())]
    Content {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The deny list could not be written.
    #[error(transparent)]
    Write(#[from] IssueError),
}

/// The entries of the deny list `file`; none when it does not exist.
pub fn load(file: &Path) -> Result<Vec<Revocation>, RevokedError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RevokedError::Read {
                file: file.to_path_buf(),
                source,
            });
        }
    };
    toml::from_str::<ListFile>(&text)
        .map(|list| list.revoked)
        .map_err(|error| RevokedError::Content {
            file: file.to_path_buf(),
            message: error.to_string(),
        })
}

/// Which certificate to revoke.
#[derive(Clone, Debug)]
pub enum Target {
    /// The one with this serial number.
    Serial(Serial),
    /// The one `elevated certs issue` last wrote for this name (`DIR/NAME.crt`).
    Name(String),
}

/// What [`revoke`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The certificate was added to the list.
    Added(Revocation),
    /// It was on the list already; nothing changed.
    Already(Revocation),
}

/// Adds `target`'s certificate to the deny list of certificate directory `dir`
/// (`DIR/revoked.toml`). Nothing is written when the input is unusable or the certificate is
/// already listed.
pub fn revoke(
    dir: &Path,
    target: &Target,
    reason: &str,
    at: Timestamp,
) -> Result<Revoked, RevokedError> {
    let certs = CertDir(dir.to_path_buf());
    let reason = Reason::parse_optional(reason)
        .map_err(|error| RevokedError::Name(format!("--reason: {error}")))?
        .map(|reason| reason.as_str().to_owned())
        .unwrap_or_default();
    let (serial, name) = match target {
        Target::Name(name) => {
            Principal::parse(name).map_err(|error| RevokedError::Name(error.to_string()))?;
            if matches!(name.as_str(), "ca" | "server") {
                return Err(RevokedError::Name(format!(
                    "'{name}' is the {name} certificate, not a client's; the deny list holds client certificates"
                )));
            }
            let file = certs.client_cert(name);
            if !file.is_file() {
                return Err(RevokedError::UnknownName(file));
            }
            (serial_of_file(&file)?, name.clone())
        }
        Target::Serial(serial) => (serial.clone(), name_of_serial(&certs, serial)),
    };
    let file = certs.0.join(FILE_NAME);
    let mut entries = load(&file)?;
    if let Some(existing) = entries.iter().find(|entry| entry.serial == serial) {
        return Ok(Revoked::Already(existing.clone()));
    }
    let entry = Revocation {
        serial,
        name,
        revoked_at: at.rfc3339(),
        reason,
    };
    entries.push(entry.clone());
    let text =
        toml::to_string(&ListFile { revoked: entries }).map_err(|error| RevokedError::Content {
            file: file.clone(),
            message: error.to_string(),
        })?;
    write_file(&file, &format!("{HEADER}{text}"), 0o644, true)?;
    Ok(Revoked::Added(entry))
}

/// Writes a CRL to `out` that lists every certificate of the deny list of certificate
/// directory `dir`, signed by the CA there (`DIR/ca.key`), issued at `at` and announcing its
/// next update `valid_for` later. Its CRL number is `at` in unix milliseconds, so that each
/// one written is numbered above the last. Returns how many certificates it lists.
pub fn write_crl(
    dir: &Path,
    out: &Path,
    valid_for: std::time::Duration,
    at: Timestamp,
) -> Result<usize, RevokedError> {
    let certs = CertDir(dir.to_path_buf());
    let entries = load(&certs.0.join(FILE_NAME))?;
    let issuer = crate::tls::issue::issuer(&certs)?;
    let time_of = |at: Timestamp| {
        let seconds = i64::try_from(at.unix_millis() / 1000).unwrap_or(i64::MAX);
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    let this_update = time_of(at);
    let next_update = this_update
        + time::Duration::try_from(valid_for).map_err(|_| {
            RevokedError::Name(format!(
                "--crl-valid: {} is too long",
                humantime::format_duration(valid_for)
            ))
        })?;
    let revoked_certs = entries
        .iter()
        .map(|entry| rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(entry.serial.as_bytes()),
            revocation_time: Timestamp::parse_rfc3339(&entry.revoked_at)
                .map(time_of)
                .unwrap_or(this_update),
            reason_code: None,
            invalidity_date: None,
        })
        .collect();
    let params = rcgen::CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: rcgen::SerialNumber::from(at.unix_millis()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let pem = params
        .signed_by(&issuer)
        .and_then(|crl| crl.pem())
        .map_err(IssueError::from)?;
    write_file(out, &pem, 0o644, true)?;
    Ok(entries.len())
}

/// The serial of the first certificate in PEM file `file`.
fn serial_of_file(file: &Path) -> Result<Serial, RevokedError> {
    let certs = load_certs(file).map_err(|error| RevokedError::Content {
        file: file.to_path_buf(),
        message: error.to_string(),
    })?;
    certs
        .first()
        .and_then(|der| Serial::of_certificate(der))
        .ok_or_else(|| RevokedError::Content {
            file: file.to_path_buf(),
            message: "not a parsable certificate".to_owned(),
        })
}

/// The name of the client certificate in `certs` whose serial is `serial`, or "" when none is.
fn name_of_serial(certs: &CertDir, serial: &Serial) -> String {
    let Ok(entries) = std::fs::read_dir(&certs.0) else {
        return String::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_stem()?.to_str()?.to_owned();
            let is_client = path.extension().is_some_and(|ext| ext == "crt")
                && !matches!(name.as_str(), "ca" | "server");
            (is_client && serial_of_file(&path).ok().as_ref() == Some(serial)).then_some(name)
        })
        .next()
        .unwrap_or_default()
}

/// What the deny list says about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not listed.
    Allowed,
    /// Listed.
    Revoked(Revocation),
    /// The list cannot be read or parsed, so nothing is let in; the text says why.
    Unusable(String),
}

/// What identifies one version of the file: a rename gives a new inode, an edit a new size or
/// modification time, a `chmod` a new change time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// The list as last read, and which version of the file that was (`None`: no file).
#[derive(Debug)]
struct Cached {
    stamp: Option<Stamp>,
    entries: Result<BTreeMap<Serial, Revocation>, String>,
}

/// The deny list the daemon checks connections against. Cloning shares it; the cache sits
/// behind a short `std::sync::Mutex` (held for a `stat`, and for a read of the file when it
/// changed; nothing awaits under it).
#[derive(Clone, Debug)]
pub struct DenyList {
    file: Arc<PathBuf>,
    cached: Arc<Mutex<Cached>>,
}

impl DenyList {
    /// The deny list in `file`, read now: an unreadable or corrupt file is an error here, so
    /// that the daemon does not start with it.
    pub fn open(file: PathBuf) -> Result<Self, RevokedError> {
        let list = Self {
            file: Arc::new(file),
            cached: Arc::new(Mutex::new(Cached {
                stamp: None,
                entries: Ok(BTreeMap::new()),
            })),
        };
        let mut cached = list.lock();
        list.refresh(&mut cached);
        if let Err(message) = &cached.entries {
            return Err(RevokedError::Content {
                file: list.file.to_path_buf(),
                message: message.clone(),
            });
        }
        drop(cached);
        Ok(list)
    }

    /// The file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        match self.cached.lock() {
            Ok(cached) => cached,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Re-reads the file when it is not the version cached.
    fn refresh(&self, cached: &mut Cached) {
        let stamp = match std::fs::metadata(&*self.file) {
            Ok(metadata) => Some(Stamp::of(&metadata)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                let message = format!("{}: cannot read: {error}", self.file.display());
                if cached.entries.as_ref().err() != Some(&message) {
                    tracing::error!(file = %self.file.display(), %error, "cannot read the certificate deny list; refusing every client certificate until it can be read");
                }
                cached.stamp = None;
                cached.entries = Err(message);
                return;
            }
        };
        if stamp == cached.stamp && (stamp.is_some() || cached.entries.is_ok()) {
            return;
        }
        cached.stamp = stamp;
        cached.entries = match load(&self.file) {
            Ok(entries) => {
                if stamp.is_some() {
                    tracing::info!(file = %self.file.display(), revoked = entries.len(), "read the certificate deny list");
                }
                Ok(entries
                    .into_iter()
                    .map(|entry| (entry.serial.clone(), entry))
                    .collect())
            }
            Err(error) => {
                tracing::error!(%error, "the certificate deny list is unusable; refusing every client certificate until it is fixed");
                Err(error.to_string())
            }
        };
    }

    /// Whether a certificate with `serial` may connect, by the file as it is now.
    pub fn check(&self, serial: &Serial) -> Verdict {
        let mut cached = self.lock();
        self.refresh(&mut cached);
        match &cached.entries {
            Ok(entries) => match entries.get(serial) {
                Some(entry) => Verdict::Revoked(entry.clone()),
                None => Verdict::Allowed,
            },
            Err(message) => Verdict::Unusable(message.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};

    #[test]
    fn serials_parse_as_openssl_prints_them() {
        let plain: Serial = "7C5A01FF".parse().unwrap();
        for text in [
            "7c5a01ff",
            "7C:5A:01:FF",
            "7c:5a:01:ff",
            "serial=7C5A01FF",
            "SERIAL=7C5A01FF",
            " 007C5A01FF\n",
        ] {
            assert_eq!(text.parse::<Serial>().unwrap(), plain, "{text}");
        }
        assert_eq!(plain.to_string(), "7C5A01FF");
        assert_eq!("abc".parse::<Serial>().unwrap().to_string(), "0ABC");
        assert_eq!("00".parse::<Serial>().unwrap().to_string(), "00");
        for bad in ["", "serial=", "xyz", "12 34", "0x12", &"ab".repeat(22)] {
            let error = bad.parse::<Serial>().unwrap_err().to_string();
            assert!(error.contains("malformed serial"), "{bad}: {error}");
        }
        assert_eq!(Serial::from_bytes(&[0, 0x80, 1]).to_string(), "8001");
    }

    #[test]
    fn revoking_by_name_or_serial_writes_the_list_once() {
        let dir = tempfile::tempdir().unwrap();
        issue::init(dir.path(), &[], false).unwrap();
        issue::issue(dir.path(), "alice", DEFAULT_TRUST_DOMAIN, 1, false).unwrap();
        issue::issue(dir.path(), "bob", DEFAULT_TRUST_DOMAIN, 1, false).unwrap();
        let certs = CertDir(dir.path().to_path_buf());
        let alice = serial_of_file(&certs.client_cert("alice")).unwrap();
        let bob = serial_of_file(&certs.client_cert("bob")).unwrap();
        let at = Timestamp::from_unix_millis(1_800_000_000_000);

        let Revoked::Added(entry) =
            revoke(dir.path(), &Target::Name("alice".into()), "laptop lost", at).unwrap()
        else {
            panic!("not added");
        };
        assert_eq!(
            (entry.serial.clone(), entry.name.as_str()),
            (alice.clone(), "alice")
        );
        // By serial, in openssl's colon form: the name is found in the directory.
        let colons = bob
            .to_string()
            .as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8_lossy(pair).to_lowercase())
            .collect::<Vec<_>>()
            .join(":");
        let target = Target::Serial(colons.parse().unwrap());
        let Revoked::Added(entry) = revoke(dir.path(), &target, "", at).unwrap() else {
            panic!("not added");
        };
        assert_eq!(entry.name, "bob");
        assert!(matches!(
            revoke(dir.path(), &target, "again", at).unwrap(),
            Revoked::Already(_)
        ));
        let listed = load(&dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].reason, "laptop lost");
        assert_eq!(listed[1].serial, bob);
    }

    #[test]
    fn bad_input_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        issue::init(dir.path(), &[], false).unwrap();
        let at = Timestamp::from_unix_millis(0);
        let error = revoke(dir.path(), &Target::Name("nobody".into()), "", at).unwrap_err();
        assert!(error.to_string().contains("nobody.crt"), "{error}");
        for name in ["server", "ca", "../etc/passwd"] {
            assert!(matches!(
                revoke(dir.path(), &Target::Name(name.into()), "", at),
                Err(RevokedError::Name(_))
            ));
        }
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn the_deny_list_follows_the_file_and_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        let list = DenyList::open(file.clone()).unwrap();
        let serial: Serial = "0102".parse().unwrap();
        assert_eq!(list.check(&serial), Verdict::Allowed);

        std::fs::write(
            &file,
            "[[revoked]]\nserial = \"01:02\"\nrevoked_at = \"2026-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        assert!(matches!(list.check(&serial), Verdict::Revoked(_)));
        assert_eq!(list.check(&"0103".parse().unwrap()), Verdict::Allowed);

        std::fs::write(&file, "[[revoked]]\nserial = \"nope\"\n").unwrap();
        let Verdict::Unusable(why) = list.check(&"0103".parse().unwrap()) else {
            panic!("a corrupt list let a certificate in");
        };
        assert!(why.contains("malformed serial"), "{why}");
        assert!(DenyList::open(file.clone()).is_err(), "refused at startup");

        std::fs::remove_file(&file).unwrap();
        assert_eq!(list.check(&serial), Verdict::Allowed);
    }
}
