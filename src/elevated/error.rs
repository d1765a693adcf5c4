//! What can make an `elevated` subcommand fail. Each error says what was being done; its
//! sources say why (the binary prints the chain on one line).

use std::net::SocketAddr;
use std::path::PathBuf;

/// A failed subcommand.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// Something was checked and found wanting (a configuration, a store, a witness).
    #[error("{0}")]
    Failed(String),
    /// A file could not be read.
    #[error("cannot read {}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen{} on {address}", if *metrics { " for metrics" } else { "" })]
    Listen {
        /// Where.
        address: SocketAddr,
        /// The metrics listener, not the gRPC one.
        metrics: bool,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be watched.
    #[error("cannot watch {signal}")]
    Signal {
        /// Which.
        signal: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The dev-mode state directory could not be prepared.
    #[error("preparing the dev-mode state directory")]
    Dev(#[source] crate::dev::DevError),
    /// Running as root without being allowed to.
    #[error(transparent)]
    Root(#[from] crate::service::preflight::RootRefused),
    /// Keys or passwords readable by others.
    #[error(transparent)]
    Exposed(#[from] crate::service::preflight::ExposedFiles),
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Building the daemon from its configuration.
    #[error(transparent)]
    Build(#[from] crate::server::BuildError),
    /// Serving.
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
    /// Certificates.
    #[error(transparent)]
    Issue(#[from] crate::tls::issue::IssueError),
    /// The certificate deny list.
    #[error(transparent)]
    Revoked(#[from] crate::tls::revoked::RevokedError),
    /// The audit key.
    #[error(transparent)]
    Key(#[from] crate::audit::key::KeyError),
    /// A public audit key given on the command line.
    #[error(transparent)]
    PublicKey(#[from] crate::audit::key::BadPublicKey),
    /// The store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Any other I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `error` and its sources on one line, each after a colon; a source whose text the line
/// already ends with (an error that repeats its cause) is not repeated.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let listen = CommandError::Listen {
            address: "127.0.0.1:7443".parse().unwrap(),
            metrics: true,
            source: io(),
        };
        assert_eq!(
            chain(&listen),
            "cannot listen for metrics on 127.0.0.1:7443: gone"
        );
        let config = CommandError::Config(crate::config::ConfigError::Read {
            file: "/etc/elevate.toml".into(),
            source: io(),
        });
        assert_eq!(chain(&config), "/etc/elevate.toml: cannot read: gone");
    }
}
