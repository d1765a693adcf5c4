//! Making certificates with rcgen: a CA, a server certificate, and client certificates whose
//! identity is `spiffe://<trust-domain>/user/<name>` (and CN `<name>`). Keys are ECDSA P-256 and
//! are written with mode 0600; existing files are never overwritten unless asked.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::model::Principal;
use crate::private_file::WriteError;

/// Default trust domain of client identities.
pub const DEFAULT_TRUST_DOMAIN: &str = "elevate.local";

/// Making or writing a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// rcgen refused.
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file exists and replacing it was not asked for, or a file could not be written or
    /// read.
    #[error(transparent)]
    File(#[from] WriteError),
    /// A name is not usable.
    #[error("{0}")]
    Name(String),
}

fn io(file: &Path) -> impl FnOnce(std::io::Error) -> IssueError + '_ {
    move |source| {
        IssueError::File(WriteError::Io {
            file: file.to_path_buf(),
            source,
        })
    }
}

/// Writes a certificate, key or list with `mode` ([`crate::private_file::write`]).
pub(crate) fn write_file(
    file: &Path,
    contents: &str,
    mode: u32,
    force: bool,
) -> Result<(), IssueError> {
    Ok(crate::private_file::write(file, contents, mode, force)?)
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // An all-zero serial is still valid if the system RNG fails; it never does on Linux.
    let _ = SystemRandom::new().fill(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Paths of the files in a certificate directory.
#[derive(Clone, Debug)]
pub struct CertDir(pub PathBuf);

impl CertDir {
    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.crt")
    }
    /// The CA key.
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca.key")
    }
    /// The server certificate.
    pub fn server_cert(&self) -> PathBuf {
        self.0.join("server.crt")
    }
    /// The server key.
    pub fn server_key(&self) -> PathBuf {
        self.0.join("server.key")
    }
    /// `NAME.crt`.
    pub fn client_cert(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.crt"))
    }
    /// `NAME.key`.
    pub fn client_key(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.key"))
    }
}

/// Writes `ca.crt`, `ca.key`, `server.crt` and `server.key` into `dir`. The server certificate
/// is valid for `localhost`, `127.0.0.1` and `extra_names`.
pub fn init(dir: &Path, extra_names: &[String], force: bool) -> Result<Vec<PathBuf>, IssueError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = CertDir(dir.to_path_buf());
    for file in [files.ca_key(), files.server_key()] {
        if !force && file.exists() {
            return Err(WriteError::Exists(file).into());
        }
    }
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "elevate CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.serial_number = Some(random_serial());
    validity(&mut ca, 3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let (server_cert, server_key) = server_certificate(&issuer, extra_names)?;

    write_file(&files.ca_key(), &issuer.key().serialize_pem(), 0o600, force)?;
    write_file(&files.ca_cert(), &ca_cert.pem(), 0o644, force)?;
    write_file(&files.server_key(), &server_key, 0o600, force)?;
    write_file(&files.server_cert(), &server_cert, 0o644, force)?;
    Ok(vec![
        files.ca_cert(),
        files.ca_key(),
        files.server_cert(),
        files.server_key(),
    ])
}

/// A server certificate (PEM) valid for `localhost`, `127.0.0.1` and `extra_names`, signed by
/// `issuer`, and its key (PEM).
fn server_certificate(
    issuer: &Issuer<'_, KeyPair>,
    extra_names: &[String],
) -> Result<(String, String), IssueError> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(extra_names.iter().cloned());
    let key = KeyPair::generate()?;
    let mut server = CertificateParams::new(names)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "elevated");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.serial_number = Some(random_serial());
    validity(&mut server, 825);
    let cert = server.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The CA of `dir`, to sign with.
pub(crate) fn issuer(files: &CertDir) -> Result<Issuer<'static, KeyPair>, IssueError> {
    let ca_key_pem = std::fs::read_to_string(files.ca_key()).map_err(io(&files.ca_key()))?;
    let ca_cert_pem = std::fs::read_to_string(files.ca_cert()).map_err(io(&files.ca_cert()))?;
    Ok(Issuer::from_ca_cert_pem(
        &ca_cert_pem,
        KeyPair::from_pem(&ca_key_pem)?,
    )?)
}

/// Replaces `server.crt` and `server.key` in `dir` with a new pair signed by the CA there, valid
/// for `localhost`, `127.0.0.1` and `extra_names`: rotation of the server certificate, which a
/// running daemon picks up on `SIGHUP`. The key is written first, then the certificate, each
/// atomically.
pub fn renew_server(dir: &Path, extra_names: &[String]) -> Result<Vec<PathBuf>, IssueError> {
    let files = CertDir(dir.to_path_buf());
    let (cert, key) = server_certificate(&issuer(&files)?, extra_names)?;
    write_file(&files.server_key(), &key, 0o600, true)?;
    write_file(&files.server_cert(), &cert, 0o644, true)?;
    Ok(vec![files.server_cert(), files.server_key()])
}

/// Writes `NAME.crt` and `NAME.key` into `dir`, signed by the CA there, for principal `name`.
pub fn issue(
    dir: &Path,
    name: &str,
    trust_domain: &str,
    days: u32,
    force: bool,
) -> Result<Vec<PathBuf>, IssueError> {
    let principal = Principal::parse(name).map_err(|e| IssueError::Name(e.to_string()))?;
    if matches!(name, "ca" | "server") {
        return Err(IssueError::Name(format!(
            "'{name}' would replace the {name} certificate and key; choose another principal name"
        )));
    }
    if trust_domain.is_empty() || trust_domain.contains(['/', ':', ' ']) {
        return Err(IssueError::Name(format!(
            "invalid trust domain '{trust_domain}'"
        )));
    }
    let files = CertDir(dir.to_path_buf());
    let (cert_file, key_file) = (files.client_cert(name), files.client_key(name));
    for file in [&cert_file, &key_file] {
        if !force && file.exists() {
            return Err(WriteError::Exists(file.clone()).into());
        }
    }
    let issuer = issuer(&files)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, principal.as_str());
    let uri = format!("spiffe://{trust_domain}/user/{principal}");
    params.subject_alt_names = vec![SanType::URI(
        uri.try_into()
            .map_err(|e: rcgen::Error| IssueError::Name(e.to_string()))?,
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(random_serial());
    validity(&mut params, days);
    let cert = params.signed_by(&key, &issuer)?;
    write_file(&key_file, &key.serialize_pem(), 0o600, force)?;
    write_file(&cert_file, &cert.pem(), 0o644, force)?;
    Ok(vec![cert_file, key_file])
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::tls::{identify, load_certs, load_key};

    #[test]
    fn issues_a_pki_whose_client_identity_is_the_name() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &["elevate.example.com".into()], false).unwrap();
        issue(dir.path(), "alice", DEFAULT_TRUST_DOMAIN, 30, false).unwrap();
        let files = CertDir(dir.path().to_path_buf());
        let mode = std::fs::metadata(files.client_key("alice"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        load_key(&files.server_key()).unwrap();
        let cert = &load_certs(&files.client_cert("alice")).unwrap()[0];
        let identity = identify(cert, DEFAULT_TRUST_DOMAIN, Default::default());
        assert_eq!(identity.principal.unwrap().as_str(), "alice");
        assert_eq!(identity.serial.len(), 32);
        let foreign = identify(cert, "other.domain", Default::default());
        assert!(
            foreign
                .principal
                .unwrap_err()
                .contains("not in trust domain other.domain")
        );
    }

    #[test]
    fn never_overwrites_without_force() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[], false).unwrap();
        assert!(matches!(
            init(dir.path(), &[], false),
            Err(IssueError::File(WriteError::Exists(_)))
        ));
        issue(dir.path(), "bob", DEFAULT_TRUST_DOMAIN, 30, false).unwrap();
        assert!(matches!(
            issue(dir.path(), "bob", DEFAULT_TRUST_DOMAIN, 30, false),
            Err(IssueError::File(WriteError::Exists(_)))
        ));
        assert!(matches!(
            issue(dir.path(), "bad name", DEFAULT_TRUST_DOMAIN, 30, false),
            Err(IssueError::Name(_))
        ));
        for reserved in ["ca", "server"] {
            assert!(matches!(
                issue(dir.path(), reserved, DEFAULT_TRUST_DOMAIN, 30, true),
                Err(IssueError::Name(_))
            ));
        }
    }

    #[test]
    fn refuses_readable_keys() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[], false).unwrap();
        let key = CertDir(dir.path().to_path_buf()).server_key();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_key(&key).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}
