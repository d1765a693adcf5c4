//! Mutual TLS. Client certificates are mandatory and verified against the configured CA; the
//! caller's principal comes only from its verified certificate ([`identity`]), and certificates
//! on the deny list are refused ([`revoked`]). Certificates for the daemon and its users are
//! made by the daemon itself with rcgen ([`issue`]). The configuration in force is swapped
//! whole when the files are re-read ([`live`]).

pub mod crl;
pub mod identity;
pub mod issue;
pub mod live;
pub mod revocation;
pub mod revoked;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

pub use crl::CrlExpired;
pub use identity::{IdentitySource, PeerIdentity, identify};
pub use live::LiveTls;

use crate::model::humantime;
use crate::private_file::{self, PrivateFileError};

/// A certificate or key file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable PEM content of the expected kind.
    #[error("{}: {message}", file.display())]
    Content {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A private key file is open to other users (see [`crate::private_file`]).
    #[error(transparent)]
    KeyPermissions(#[from] PrivateFileError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| TlsError::Read {
            file: file.to_path_buf(),
            source,
        })?;
    Ok(bytes)
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Content {
            file: file.to_path_buf(),
            message: format!("invalid PEM: {error}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Content {
            file: file.to_path_buf(),
            message: "contains no certificate".to_owned(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file, refusing files open to others ([`crate::private_file`]).
pub fn load_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    private_file::check(file, "private key").map_err(|error| match error {
        PrivateFileError::Read { file, source } => TlsError::Read { file, source },
        exposed => TlsError::KeyPermissions(exposed),
    })?;
    let bytes = read(file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| TlsError::Content {
        file: file.to_path_buf(),
        message: format!("no usable private key: {error}"),
    })
}

/// The daemon's `[tls]` section: its TLS files, how clients are identified and revoked, and
/// how long connections may live.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate(s) that client certificates must chain to.
    pub ca: PathBuf,
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's private key (mode 0600, or 0640 for the daemon's group).
    pub key: PathBuf,
    /// The deny list of client certificates (default: `revoked.toml` beside `ca`).
    #[serde(default)]
    pub revoked: Option<PathBuf>,
    /// Certificate revocation lists (PEM or DER) issued by the client CA, checked with the
    /// deny list on every call and re-read when they change.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// What a CRL past its `nextUpdate` does: `use` it (logged and exposed as a metric) or
    /// `refuse` every client until a fresh one is published.
    #[serde(default)]
    pub crl_expired: CrlExpired,
    /// Where a client's principal comes from: `spiffe_or_cn` (a SPIFFE URI SAN, else the
    /// common name) or `spiffe` (a SPIFFE URI SAN only).
    #[serde(default)]
    pub identity: IdentitySource,
    /// HTTP/2 pings are sent this often on an idle connection.
    #[serde(default = "default_keepalive_interval", deserialize_with = "humantime")]
    pub keepalive_interval: Duration,
    /// A connection whose ping is not answered within this is closed.
    #[serde(default = "default_keepalive_timeout", deserialize_with = "humantime")]
    pub keepalive_timeout: Duration,
    /// No connection lives longer than this: the client is asked to reconnect (and present
    /// its certificate again).
    #[serde(default = "default_max_connection_age", deserialize_with = "humantime")]
    pub max_connection_age: Duration,
    /// How long calls still running when a connection reaches its age may take to finish.
    #[serde(
        default = "default_max_connection_age_grace",
        deserialize_with = "humantime"
    )]
    pub max_connection_age_grace: Duration,
    /// TLS handshakes in progress at once; past this the oldest is dropped.
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one IP address; past this that address's
    /// oldest is dropped.
    #[serde(default = "default_max_handshakes_per_address")]
    pub max_handshakes_per_address: usize,
}

impl TlsFiles {
    /// The given files, with every other setting at its default.
    pub fn new(ca: PathBuf, cert: PathBuf, key: PathBuf) -> Self {
        Self {
            ca,
            cert,
            key,
            revoked: None,
            crls: Vec::new(),
            crl_expired: CrlExpired::default(),
            identity: IdentitySource::default(),
            keepalive_interval: default_keepalive_interval(),
            keepalive_timeout: default_keepalive_timeout(),
            max_connection_age: default_max_connection_age(),
            max_connection_age_grace: default_max_connection_age_grace(),
            max_handshakes: default_max_handshakes(),
            max_handshakes_per_address: default_max_handshakes_per_address(),
        }
    }

    /// Checks the connection settings; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.keepalive_interval < Duration::from_secs(1) {
            return Err("keepalive_interval: must be at least 1s".to_owned());
        }
        if self.keepalive_timeout < Duration::from_secs(1) {
            return Err("keepalive_timeout: must be at least 1s".to_owned());
        }
        if self.max_connection_age < Duration::from_secs(10) {
            return Err("max_connection_age: must be at least 10s".to_owned());
        }
        if self.max_handshakes == 0 {
            return Err("max_handshakes: must be at least 1".to_owned());
        }
        if self.max_handshakes_per_address == 0
            || self.max_handshakes_per_address > self.max_handshakes
        {
            return Err(
                "max_handshakes_per_address: must be at least 1 and at most max_handshakes"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The deny list in force: `revoked`, else `revoked.toml` beside the CA file.
    pub fn revoked_list(&self) -> PathBuf {
        self.revoked
            .clone()
            .unwrap_or_else(|| self.ca.with_file_name(revoked::FILE_NAME))
    }
}

fn default_keepalive_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(20)
}

fn default_max_connection_age() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_connection_age_grace() -> Duration {
    Duration::from_secs(300)
}

fn default_max_handshakes() -> usize {
    256
}

fn default_max_handshakes_per_address() -> usize {
    32
}

/// A rustls server configuration: TLS 1.3 and 1.2, client certificates required and verified
/// against `files.ca`, HTTP/2 only.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in load_certs(&files.ca)? {
        roots.add(cert).map_err(|error| TlsError::Content {
            file: files.ca.clone(),
            message: format!("not a usable CA certificate: {error}"),
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| TlsError::Config(error.to_string()))?;
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsError::Config(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Content {
            file: files.key.clone(),
            message: format!("does not match {}: {error}", files.cert.display()),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A rustls server configuration for listeners that identity providers and other HTTPS
/// clients reach (the SCIM endpoint): the daemon's certificate, TLS 1.3 and 1.2, HTTP/1.1, and
/// no client certificate (those clients authenticate otherwise).
pub fn public_server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsError::Config(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Content {
            file: files.key.clone(),
            message: format!("does not match {}: {error}", files.cert.display()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
