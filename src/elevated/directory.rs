//! `elevated directory import`: seeds the SCIM directory of record from a directory file.

use std::path::Path;
use std::sync::Arc;

use super::CommandError;
use crate::audit::key::AuditKey;
use crate::audit::{Actor, entry};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::policy::Directory;
use crate::server::Options;
use crate::store::{Changes, Location, Store, StoreError, StoreOptions};

/// Imports `from` into the empty directory of record of `config`'s store, in one transaction
/// with an audit entry per user and group (by the daemon, detail `imported`).
pub(super) async fn import(config: &Path, from: &Path) -> Result<(), CommandError> {
    let loaded = Config::load(config)?;
    if loaded.policy.directory_file().is_some() {
        return Err(CommandError::Usage(format!(
            "{}: policy.directory is a file; set policy.directory = \"scim\" (with a [scim] section) to make the SCIM directory the directory of record, then import",
            config.display()
        )));
    }
    let directory =
        Directory::load(from).map_err(|error| CommandError::Failed(error.to_string()))?;
    let options = Options::from_config(&loaded, Arc::new(SystemClock))?;
    if let Location::Postgres(target) = &options.store {
        let status = crate::cluster::status(target)
            .await
            .map_err(|error| CommandError::Failed(error.to_string()))?;
        if !status.leader.is_empty() {
            return Err(CommandError::Failed(format!(
                "node {} leads the cluster on this store: stop every node before importing",
                status.leader
            )));
        }
    }
    let (key, _) = AuditKey::load_or_generate(&options.audit.key)?;
    let store = Store::open_at(
        &options.store,
        StoreOptions {
            signing: Some(crate::store::Signing {
                key: Arc::new(key),
                every: u64::MAX,
                witness: None,
            }),
            ..StoreOptions::default()
        },
        Arc::new(crate::store::Unheard),
    )
    .await?;
    let existing = store.read(|reader| reader.directory()).await?;
    if !existing.is_empty() {
        store.close(std::time::Duration::from_secs(5)).await;
        return Err(CommandError::Failed(format!(
            "the directory of record already holds {} users and groups; import seeds an empty one (the identity provider keeps it from there)",
            existing.len()
        )));
    }
    let now = SystemClock.now();
    let seed = crate::scim::import::seed(&directory, &now.rfc3339());
    seed.registry
        .directory()
        .map_err(|error| CommandError::Failed(error.detail))?;
    let users = seed.registry.all(crate::store::DirectoryKind::User).len();
    let groups = seed.registry.all(crate::store::DirectoryKind::Group).len();
    let drafts = seed
        .events
        .into_iter()
        .map(|happened| entry::of(now, Actor::System, happened))
        .collect();
    let writes = seed.writes;
    let written = store
        .write(move |_| {
            Ok::<_, StoreError>((
                Changes {
                    events: drafts,
                    directory: writes,
                    ..Changes::default()
                },
                (),
            ))
        })
        .await;
    store.close(std::time::Duration::from_secs(5)).await;
    written?;
    println!(
        "{} → the directory of record: {users} users, {groups} groups",
        from.display()
    );
    Ok(())
}
