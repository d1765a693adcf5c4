//! Certificate revocation lists. Operators with a PKI of their own revoke client certificates by
//! publishing a CRL signed by the client CA (`[tls] crls`, PEM or DER, `openssl ca -gencrl` or
//! `elevated certs revoke --crl`). A [`CrlSet`] reads them, checks that each is issued and
//! signed by a CA of the `ca` file, and builds rustls' own client-certificate verifier over
//! them; whether a client is revoked is that verifier's answer, not a lookup of ours.
//!
//! Like the deny list, the files are looked at on every check (`stat`) and read again when one
//! of them or the CA file changed. A CRL that cannot be read, parsed, or was not signed by the
//! CA refuses every client until it is fixed (a revocation someone published must never be
//! ignored). A CRL past its `nextUpdate` is still used, logged at error level and exposed as a
//! metric, unless `crl_expired = "refuse"` says to refuse everyone until a fresh one is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, RootCertStore};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::model::Timestamp;
use crate::tls::load_certs;
use crate::tls::revoked::{Revocation, Serial, Stamp, Verdict};

/// What a CRL past its `nextUpdate` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrlExpired {
    /// It is still used; the daemon logs it at error level and reports it as a metric.
    #[default]
    Use,
    /// Every client is refused until a CRL that is current replaces it.
    Refuse,
}

/// One CRL as last read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlInfo {
    /// The file it came from.
    pub file: PathBuf,
    /// Its `nextUpdate`, when it has one.
    pub next_update: Option<Timestamp>,
    /// How many certificates it lists.
    pub revoked: usize,
}

impl CrlInfo {
    /// Whether it is past its `nextUpdate` at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.next_update.is_some_and(|next| next < now)
    }
}

/// The CRLs read and the verifier built over them.
struct Loaded {
    verifier: Arc<dyn ClientCertVerifier>,
    lists: Vec<CrlInfo>,
    /// What each listed serial's entry says, for messages and logs.
    entries: BTreeMap<Serial, Revocation>,
}

/// The files as last read. `generation` grows with every read, so a connection verified under
/// one generation need not be verified again until the files change.
struct Cache {
    stamps: Vec<Option<Stamp>>,
    loaded: Result<Arc<Loaded>, String>,
    generation: u64,
    /// The generation whose expired CRL was last logged.
    warned: u64,
}

/// The configured CRLs. Cloning shares them; the cache sits behind a short `std::sync::Mutex`
/// (held for the `stat`s, and to read the files when they changed; nothing awaits under it).
#[derive(Clone)]
pub struct CrlSet {
    ca: Arc<PathBuf>,
    files: Arc<[PathBuf]>,
    expired: CrlExpired,
    cache: Arc<Mutex<Cache>>,
}

impl std::fmt::Debug for CrlSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlSet")
            .field("ca", &self.ca)
            .field("files", &self.files)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

impl CrlSet {
    /// The CRLs in `files`, issued by a CA of `ca`, read now: an unusable one is an error here,
    /// so that the daemon does not start with it.
    pub fn open(ca: &Path, files: &[PathBuf], expired: CrlExpired) -> Result<Self, String> {
        let set = Self {
            ca: Arc::new(ca.to_path_buf()),
            files: files.into(),
            expired,
            cache: Arc::new(Mutex::new(Cache {
                stamps: Vec::new(),
                loaded: Err("not read yet".to_owned()),
                generation: 0,
                warned: 0,
            })),
        };
        let mut cache = set.lock();
        set.refresh(&mut cache);
        if let Err(message) = &cache.loaded {
            return Err(message.clone());
        }
        drop(cache);
        Ok(set)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        match self.cache.lock() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Every file the verdicts depend on: the CA, then the CRLs.
    fn watched(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.ca.as_path()).chain(self.files.iter().map(PathBuf::as_path))
    }

    /// Reads the files again when any of them is not the version cached.
    fn refresh(&self, cache: &mut Cache) {
        let stamps: Vec<Option<Stamp>> = self
            .watched()
            .map(|file| std::fs::metadata(file).ok().map(|m| Stamp::of(&m)))
            .collect();
        if stamps == cache.stamps && cache.generation > 0 {
            return;
        }
        cache.stamps = stamps;
        cache.generation += 1;
        cache.loaded = match load(&self.ca, &self.files) {
            Ok(loaded) => {
                tracing::info!(
                    files = self.files.len(),
                    revoked = loaded.entries.len(),
                    "read the certificate revocation lists"
                );
                Ok(Arc::new(loaded))
            }
            Err(message) => {
                tracing::error!(%message, "a certificate revocation list is unusable; refusing every client certificate until it is fixed");
                Err(message)
            }
        };
    }

    /// Whether the client certificate chain `chain` (leaf first) is not revoked by the CRLs as
    /// they are now. `verified` remembers the generation it was last found good under, so the
    /// chain is verified again only after the files changed.
    pub fn check(&self, chain: &[CertificateDer<'_>], verified: &AtomicU64) -> Verdict {
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        let mut cache = self.lock();
        self.refresh(&mut cache);
        let loaded = match &cache.loaded {
            Ok(loaded) => loaded.clone(),
            Err(message) => return Verdict::Unusable(message.clone()),
        };
        let generation = cache.generation;
        if let Some(stale) = loaded.lists.iter().find(|list| list.expired(now)) {
            let next = stale
                .next_update
                .map(Timestamp::rfc3339)
                .unwrap_or_default();
            match self.expired {
                CrlExpired::Refuse => {
                    if cache.warned != generation {
                        cache.warned = generation;
                        tracing::error!(file = %stale.file.display(), next_update = %next, "a certificate revocation list is past its nextUpdate; refusing every client certificate (crl_expired = \"refuse\") until a current one is published");
                    }
                    return Verdict::Unusable(format!(
                        "{}: the revocation list expired at {next}",
                        stale.file.display()
                    ));
                }
                CrlExpired::Use => {
                    if cache.warned != generation {
                        cache.warned = generation;
                        tracing::error!(file = %stale.file.display(), next_update = %next, "a certificate revocation list is past its nextUpdate and still used; publish a current one (or set crl_expired = \"refuse\")");
                    }
                }
            }
        }
        drop(cache);
        if verified.load(Ordering::Acquire) == generation {
            return Verdict::Allowed;
        }
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Verdict::Unusable("no client certificate".to_owned());
        };
        match loaded
            .verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
        {
            Ok(_) => {
                verified.store(generation, Ordering::Release);
                Verdict::Allowed
            }
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => {
                let serial = Serial::of_certificate(leaf);
                let entry = serial
                    .as_ref()
                    .and_then(|serial| loaded.entries.get(serial).cloned());
                Verdict::Revoked(entry.unwrap_or_else(|| Revocation {
                    serial: serial.unwrap_or_else(|| Serial::from_bytes(&[])),
                    name: String::new(),
                    revoked_at: String::new(),
                    reason: "listed in a certificate revocation list".to_owned(),
                }))
            }
            Err(error) => Verdict::Unusable(format!(
                "the certificate revocation lists refuse it: {error}"
            )),
        }
    }

    /// The CRLs as last read (none while they are unusable).
    pub fn lists(&self) -> Vec<CrlInfo> {
        let mut cache = self.lock();
        self.refresh(&mut cache);
        match &cache.loaded {
            Ok(loaded) => loaded.lists.clone(),
            Err(_) => Vec::new(),
        }
    }

    /// Whether the CRLs are usable now (the error says why not).
    pub fn usable(&self) -> Result<(), String> {
        let mut cache = self.lock();
        self.refresh(&mut cache);
        cache.loaded.as_ref().map(|_| ()).map_err(Clone::clone)
    }
}

/// Reads the CA certificates and every CRL, checks each CRL against the CA that issued it, and
/// builds the verifier.
fn load(ca: &Path, files: &[PathBuf]) -> Result<Loaded, String> {
    let cas = load_certs(ca).map_err(|error| error.to_string())?;
    let mut roots = RootCertStore::empty();
    for cert in &cas {
        roots
            .add(cert.clone())
            .map_err(|error| format!("{}: not a usable CA certificate: {error}", ca.display()))?;
    }
    let mut ders = Vec::new();
    let mut lists = Vec::new();
    let mut entries = BTreeMap::new();
    for file in files {
        let bytes = std::fs::read(file)
            .map_err(|error| format!("{}: cannot read: {error}", file.display()))?;
        for der in decode(file, &bytes)? {
            let info = check_issuer(file, &der, &cas, &mut entries)?;
            lists.push(info);
            ders.push(der);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(ders)
        .only_check_end_entity_revocation()
        .build()
        .map_err(|error| format!("certificate revocation lists: {error}"))?;
    Ok(Loaded {
        verifier,
        lists,
        entries,
    })
}

/// The CRLs in one file: PEM (one or more `X509 CRL` blocks) or a single DER CRL.
fn decode(file: &Path, bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let crls = CertificateRevocationListDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("{}: invalid PEM: {error}", file.display()))?;
        if crls.is_empty() {
            return Err(format!("{}: holds no X509 CRL block", file.display()));
        }
        Ok(crls)
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes.to_vec())])
    }
}

/// Parses `der`, finds the CA certificate that issued it and verifies its signature with that
/// CA's key; records its entries.
fn check_issuer(
    file: &Path,
    der: &[u8],
    cas: &[CertificateDer<'static>],
    entries: &mut BTreeMap<Serial, Revocation>,
) -> Result<CrlInfo, String> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|error| {
        format!(
            "{}: not a certificate revocation list: {error}",
            file.display()
        )
    })?;
    let issuer = cas
        .iter()
        .filter_map(|ca| X509Certificate::from_der(ca).ok().map(|(_, ca)| ca))
        .find(|ca| ca.subject().as_raw() == crl.issuer().as_raw())
        .ok_or_else(|| {
            format!(
                "{}: issued by '{}', which is not the client CA",
                file.display(),
                crl.issuer()
            )
        })?;
    crl.verify_signature(issuer.public_key()).map_err(|error| {
        format!(
            "{}: its signature does not verify with the client CA's key ({error})",
            file.display()
        )
    })?;
    let mut revoked = 0;
    for entry in crl.iter_revoked_certificates() {
        revoked += 1;
        let serial = Serial::from_bytes(entry.raw_serial());
        entries.insert(
            serial.clone(),
            Revocation {
                serial,
                name: String::new(),
                revoked_at: asn1_time(entry.revocation_date).rfc3339(),
                reason: format!("listed in {}", file.display()),
            },
        );
    }
    Ok(CrlInfo {
        file: file.to_path_buf(),
        next_update: crl.next_update().map(asn1_time),
        revoked,
    })
}

fn asn1_time(time: x509_parser::time::ASN1Time) -> Timestamp {
    let seconds = u64::try_from(time.timestamp()).unwrap_or(0);
    Timestamp::from_unix_millis(seconds.saturating_mul(1000))
}
