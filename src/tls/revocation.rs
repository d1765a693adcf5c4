//! Every source of client-certificate revocation in force: the deny list
//! ([`crate::tls::revoked`]) and the CRLs ([`crate::tls::crl`]). The accept loop checks a
//! connection's certificate when it is established, and every call checks it again, so a
//! revocation takes effect on the very next call of a connection that was open before it.

use std::sync::atomic::AtomicU64;

use rustls::pki_types::CertificateDer;

use crate::tls::TlsFiles;
use crate::tls::crl::{CrlInfo, CrlSet};
use crate::tls::revoked::{DenyList, Serial, Verdict};

/// A verified client certificate as the revocation checks need it.
#[derive(Debug)]
pub struct ClientCert {
    /// Its serial number (`None`: it has none that parses, and is refused).
    pub serial: Option<Serial>,
    /// The chain the client presented, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The CRL generation it was last found good under (0: never).
    crl_verified: AtomicU64,
}

impl ClientCert {
    /// The certificate whose chain is `chain`, leaf first.
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Self {
        Self {
            serial: chain.first().and_then(|leaf| Serial::of_certificate(leaf)),
            chain,
            crl_verified: AtomicU64::new(0),
        }
    }
}

/// The deny list and the CRLs. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Revocations {
    deny: DenyList,
    crls: Option<CrlSet>,
}

/// A revocation source could not be read at start.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The deny list.
    #[error("certificate deny list: {0}")]
    DenyList(#[from] crate::tls::revoked::RevokedError),
    /// A CRL.
    #[error("tls.crls: {0}")]
    Crl(String),
}

impl Revocations {
    /// The sources `files` names, read now; an unusable one is an error.
    pub fn open(files: &TlsFiles) -> Result<Self, RevocationError> {
        let deny = DenyList::open(files.revoked_list())?;
        let crls = if files.crls.is_empty() {
            None
        } else {
            Some(
                CrlSet::open(&files.ca, &files.crls, files.crl_expired)
                    .map_err(RevocationError::Crl)?,
            )
        };
        Ok(Self { deny, crls })
    }

    /// Whether `cert` may be used now: not on the deny list, not revoked by a CRL, and every
    /// source readable.
    pub fn check(&self, cert: &ClientCert) -> Verdict {
        let Some(serial) = &cert.serial else {
            return Verdict::Unusable("the certificate has no serial number".to_owned());
        };
        match self.deny.check(serial) {
            Verdict::Allowed => {}
            refused => return refused,
        }
        match &self.crls {
            Some(crls) => crls.check(&cert.chain, &cert.crl_verified),
            None => Verdict::Allowed,
        }
    }

    /// The CRLs as last read.
    pub fn crl_lists(&self) -> Vec<CrlInfo> {
        self.crls.as_ref().map(CrlSet::lists).unwrap_or_default()
    }

    /// Whether the CRLs configured, if any, are usable now.
    pub fn crls_usable(&self) -> Option<Result<(), String>> {
        self.crls.as_ref().map(CrlSet::usable)
    }
}
