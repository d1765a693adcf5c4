//! What `SIGHUP` re-reads while the daemon serves. Each part is reloaded on its own and keeps
//! what it had when its new files are unusable; the caller logs the outcome.

use crate::audit::Actor;
use crate::broker::{Broker, BrokerError, Reloaded};
use crate::tls::{LiveTls, TlsError};

/// A cheap handle to the reloadable parts of a running daemon, from [`crate::server::Server::reloader`].
#[derive(Clone, Debug)]
pub struct Reloader {
    tls: LiveTls,
    broker: Broker,
}

impl Reloader {
    /// A reloader of `tls` and of `broker`'s policy and directory.
    pub fn new(tls: LiveTls, broker: Broker) -> Self {
        Self { tls, broker }
    }

    /// Re-reads the policy and directory (see [`Broker::reload`]): audited either way; on
    /// failure the files in force stay.
    pub async fn reload_rules(&self) -> Result<Reloaded, BrokerError> {
        self.broker.reload(Actor::System).await
    }

    /// Re-reads the server certificate, its key and the CA. New connections use them from now
    /// on; on failure (unreadable, mismatched, a key open to others) nothing changes.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.tls.reload()
    }
}
