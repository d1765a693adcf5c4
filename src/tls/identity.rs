//! Who a verified client certificate names. The principal is the URI SAN
//! `spiffe://<trust-domain>/user/<name>` when present, otherwise the subject's common name.
//! A SPIFFE id of another trust domain is refused rather than falling back to the CN.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::hash::hex;
use crate::model::Principal;

/// What the TLS layer learned about a connection's peer, attached to every request on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The principal, or why the certificate names none.
    pub principal: Result<Principal, String>,
    /// Hex serial number of the client certificate.
    pub serial: String,
}

/// Reads the principal out of a client certificate that rustls has already verified.
pub fn identify(der: &[u8], trust_domain: &str) -> PeerIdentity {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return PeerIdentity {
            principal: Err("the client certificate cannot be parsed".to_owned()),
            serial: String::new(),
        };
    };
    PeerIdentity {
        principal: principal_of(&cert, trust_domain),
        serial: hex(cert.raw_serial()),
    }
}

fn principal_of(cert: &X509Certificate<'_>, trust_domain: &str) -> Result<Principal, String> {
    if let Ok(Some(names)) = cert.subject_alternative_name() {
        for name in &names.value.general_names {
            let GeneralName::URI(uri) = name else {
                continue;
            };
            let Some(rest) = uri.strip_prefix("spiffe://") else {
                continue;
            };
            let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
            if domain != trust_domain {
                return Err(format!(
                    "the client certificate's SPIFFE id {uri} is not in trust domain {trust_domain}"
                ));
            }
            let Some(name) = path.strip_prefix("user/") else {
                return Err(format!(
                    "the client certificate's SPIFFE id {uri} names no user"
                ));
            };
            return Principal::parse(name)
                .map_err(|e| format!("the client certificate's SPIFFE id: {e}"));
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| {
            "the client certificate has neither a SPIFFE id nor a common name".to_owned()
        })?;
    Principal::parse(common_name).map_err(|e| format!("the client certificate's common name: {e}"))
}
