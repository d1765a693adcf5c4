//! The directory of record pushed over SCIM. A change is put in force inside the write
//! transaction that stores it with its audit entries, so every request or decision committed
//! after it was checked against it (as a reload's is); then the open requests are held against
//! it — a leaver loses every lease, a mover those they are no longer eligible for — before the
//! caller hears back.

use super::sweep::Enforcement;
use super::{Broker, BrokerError};
use crate::audit::{Actor, entry};
use crate::model::{Happened, Principal};
use crate::policy::{Directory, Snapshot};
use crate::store::{Changes, DirectoryWrite};

/// A change to the directory of record.
#[derive(Debug)]
pub struct DirectoryUpdate {
    /// The directory it makes.
    pub directory: Directory,
    /// What to store.
    pub writes: Vec<DirectoryWrite>,
    /// What happened, for the audit trail.
    pub events: Vec<Happened>,
    /// Who made it (`scim`, or the daemon for an import).
    pub actor: Actor,
    /// The one principal whose standing it can change, when it is one (else every open
    /// request is held against the new directory).
    pub only: Option<Principal>,
}

impl Broker {
    /// Stores `update`, puts its directory in force and holds the open requests against it;
    /// answers once all of that is committed. An error means nothing was stored; once stored,
    /// a sweep that fails is reported in the enforcement's `failed`. On a tracked task: a caller giving up never
    /// cuts the sweep short.
    pub async fn put_directory(&self, update: DirectoryUpdate) -> Result<Enforcement, BrokerError> {
        let broker = self.clone();
        self.inner
            .effects
            .tasks
            .spawn(async move { broker.put_directory_now(update).await })
            .await
            .map_err(|_| BrokerError::ShuttingDown)?
    }

    async fn put_directory_now(&self, update: DirectoryUpdate) -> Result<Enforcement, BrokerError> {
        let DirectoryUpdate {
            directory,
            writes,
            events,
            actor,
            only,
        } = update;
        let _one = self.inner.reloading.lock().await;
        let old = self.inner.rules.current();
        let snapshot = Snapshot {
            policy: old.policy.clone(),
            directory,
        };
        let now = self.inner.clock.now();
        let drafts = events
            .into_iter()
            .map(|happened| entry::of(now, actor.clone(), happened))
            .collect();
        let rules = self.inner.rules.clone();
        let written = self
            .inner
            .store
            .write(move |_| -> Result<_, BrokerError> {
                rules.replace(snapshot);
                Ok((
                    Changes {
                        events: drafts,
                        directory: writes,
                        ..Changes::default()
                    },
                    (),
                ))
            })
            .await;
        if let Err(error) = written {
            // Not stored: not in force either.
            self.inner.rules.restore(old);
            return Err(error);
        }
        // Stored and in force: whatever the sweep meets, the change is made (what failed is
        // retried at the next change, reload or start, as after a reload).
        match self.enforce_locked(actor, only.as_ref()).await {
            Ok(enforced) => Ok(enforced),
            Err(error) => {
                tracing::error!(%error, "the sweep after a directory change failed");
                Ok(Enforcement {
                    failed: vec![format!("the sweep after the change: {error}")],
                    ..Enforcement::default()
                })
            }
        }
    }

    /// Puts `directory` in force without storing anything (at start, the directory of record
    /// read from the store).
    pub fn use_directory(&self, directory: Directory) {
        let old = self.inner.rules.current();
        self.inner.rules.replace(Snapshot {
            policy: old.policy.clone(),
            directory,
        });
    }
}

/// Where the directory in force comes from.
pub const SCIM_SOURCE: &str = "scim";

impl Broker {
    /// The directory in force and where it comes from (`scim`, or its file), for `caller`,
    /// an administrator.
    pub fn directory_in_force(
        &self,
        caller: &super::Caller,
    ) -> Result<(std::sync::Arc<Snapshot>, String), BrokerError> {
        caller.require_admin("reading the directory")?;
        let source = match self
            .inner
            .settings
            .rule_files
            .as_ref()
            .and_then(|files| files.directory.as_ref())
        {
            Some(file) => file.display().to_string(),
            None => SCIM_SOURCE.to_owned(),
        };
        Ok((self.inner.rules.current(), source))
    }
}
