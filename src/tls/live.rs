//! The server's TLS configuration in force. The accept loop takes the current one for each new
//! connection; [`LiveTls::reload`] re-reads the CA, certificate and key and swaps the whole
//! configuration in only when the new files make a valid one, so connections never see a
//! half-changed set and a broken file never replaces a working configuration.

use std::sync::{Arc, RwLock};

use crate::tls::{TlsError, TlsFiles, public_server_config, server_config};

/// A cheap handle to the configuration in force. Cloning shares it; the configuration sits
/// behind a `std::sync::RwLock` held only to copy or replace an `Arc`.
#[derive(Clone, Debug)]
pub struct LiveTls {
    files: Arc<TlsFiles>,
    current: Arc<RwLock<Configs>>,
}

/// The configurations made from one reading of the files.
#[derive(Clone, Debug)]
struct Configs {
    /// Mutual TLS, for gRPC.
    mutual: Arc<rustls::ServerConfig>,
    /// No client certificate, for the SCIM endpoint.
    public: Arc<rustls::ServerConfig>,
}

impl Configs {
    fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            mutual: server_config(files)?,
            public: public_server_config(files)?,
        })
    }
}

impl LiveTls {
    /// Loads the configuration from `files`.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let configs = Configs::load(&files)?;
        Ok(Self {
            files: Arc::new(files),
            current: Arc::new(RwLock::new(configs)),
        })
    }

    /// The files this configuration is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.configs().mutual
    }

    /// The configuration for a new connection to the SCIM endpoint (no client certificate).
    pub fn public(&self) -> Arc<rustls::ServerConfig> {
        self.configs().public
    }

    fn configs(&self) -> Configs {
        match self.current.read() {
            Ok(configs) => configs.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the files. On success new connections use the new configuration (connections
    /// already open keep theirs); on failure the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = Configs::load(&self.files)?;
        match self.current.write() {
            Ok(mut current) => *current = configs,
            Err(poisoned) => *poisoned.into_inner() = configs,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::issue::{self, CertDir};

    #[test]
    fn a_failed_reload_keeps_the_configuration_in_force() {
        let dir = tempfile::tempdir().unwrap();
        issue::init(dir.path(), &[], false).unwrap();
        let certs = CertDir(dir.path().to_path_buf());
        let live = LiveTls::load(TlsFiles::new(
            certs.ca_cert(),
            certs.server_cert(),
            certs.server_key(),
        ))
        .unwrap();
        let first = live.current();
        live.reload().unwrap();
        assert!(!Arc::ptr_eq(&first, &live.current()), "swapped");
        let good = live.current();
        std::fs::write(certs.server_cert(), "not a certificate").unwrap();
        let error = live.reload().unwrap_err();
        assert!(error.to_string().contains("server.crt"), "{error}");
        assert!(Arc::ptr_eq(&good, &live.current()), "kept");
    }
}
