//! Who a verified client certificate names. The principal is the URI SAN
//! `spiffe://<trust-domain>/user/<name>` when present, otherwise (unless `[tls] identity =
//! "spiffe"`) the subject's common name. A SPIFFE id of another trust domain, and a subject
//! alternative name extension that cannot be parsed, are refused rather than falling back to
//! the CN.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::hash::hex;
use crate::model::Principal;

/// Where a client's principal may come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// The SPIFFE URI SAN, or the common name of a certificate that has none.
    #[default]
    SpiffeOrCn,
    /// The SPIFFE URI SAN only: a certificate without one names nobody.
    Spiffe,
}

/// What the TLS layer learned about a connection's peer, attached to every request on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The principal, or why the certificate names none.
    pub principal: Result<Principal, String>,
    /// Hex serial number of the client certificate.
    pub serial: String,
}

/// Reads the principal out of a client certificate that rustls has already verified.
pub fn identify(der: &[u8], trust_domain: &str, source: IdentitySource) -> PeerIdentity {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return PeerIdentity {
            principal: Err("the client certificate cannot be parsed".to_owned()),
            serial: String::new(),
        };
    };
    PeerIdentity {
        principal: principal_of(&cert, trust_domain, source),
        serial: hex(cert.raw_serial()),
    }
}

fn principal_of(
    cert: &X509Certificate<'_>,
    trust_domain: &str,
    source: IdentitySource,
) -> Result<Principal, String> {
    let names = cert.subject_alternative_name().map_err(|error| {
        format!("the client certificate's subject alternative names cannot be parsed: {error}")
    })?;
    for name in names.iter().flat_map(|names| &names.value.general_names) {
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
    if source == IdentitySource::Spiffe {
        return Err(format!(
            "the client certificate has no SPIFFE id (spiffe://{trust_domain}/user/NAME), and [tls] identity = \"spiffe\" accepts no other"
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate with common name `engineer`, and, when `san` is given, a
    /// subject alternative name extension with that content.
    fn certificate(san: Option<Vec<u8>>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "engineer");
        if let Some(content) = san {
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[2, 5, 29, 17],
                    content,
                ));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_san_that_cannot_be_parsed_never_falls_back_to_the_common_name() {
        let plain = certificate(None);
        let named = identify(&plain, "elevate.local", IdentitySource::SpiffeOrCn);
        assert_eq!(named.principal.unwrap().as_str(), "engineer");

        // A SEQUENCE that claims more bytes than it holds.
        let broken = certificate(Some(vec![0x30, 0x05, 0x86, 0x09, 0x73]));
        let refused = identify(&broken, "elevate.local", IdentitySource::SpiffeOrCn);
        let why = refused.principal.unwrap_err();
        assert!(
            why.contains("subject alternative names cannot be parsed"),
            "{why}"
        );
    }

    #[test]
    fn spiffe_only_refuses_a_common_name() {
        let plain = certificate(None);
        let why = identify(&plain, "elevate.local", IdentitySource::Spiffe)
            .principal
            .unwrap_err();
        assert!(why.contains("no SPIFFE id"), "{why}");
        // A DNS name is no SPIFFE id either.
        let dns = certificate(Some(vec![0x30, 0x06, 0x82, 0x04, b'h', b'o', b's', b't']));
        let why = identify(&dns, "elevate.local", IdentitySource::Spiffe)
            .principal
            .unwrap_err();
        assert!(why.contains("no SPIFFE id"), "{why}");
    }
}
