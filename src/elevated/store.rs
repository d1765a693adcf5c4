//! `elevated store` and `elevated cluster`: create, migrate or check the store a configuration
//! names, and list the nodes of a cluster on it.

use std::path::Path;
use std::sync::Arc;

use super::CommandError;
use crate::audit::key::AuditKey;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::server::Options;
use crate::store::{Location, Store, StoreOptions};

/// The store a configuration names.
pub(super) fn location(config: &Path) -> Result<Location, CommandError> {
    let loaded = Config::load(config)?;
    Location::from_config(&loaded.store)
        .map_err(|error| CommandError::Failed(format!("{}: store.{error}", config.display())))
}

/// Creates the schema (or file) when missing, checks its version and records the audit key,
/// generating the key file when there is none yet.
pub(super) async fn init(config: &Path) -> Result<(), CommandError> {
    let loaded = Config::load(config)?;
    let options = Options::from_config(&loaded, Arc::new(SystemClock))?;
    let (key, generated) = AuditKey::load_or_generate(&options.audit.key)?;
    if generated {
        println!(
            "generated the audit key {} (share this file with every node)",
            options.audit.key.display()
        );
    }
    let public = key.public();
    match &options.store {
        Location::Embedded(path) => {
            let store = Store::open(
                path,
                StoreOptions {
                    signing: Some(crate::store::Signing {
                        key: Arc::new(key),
                        every: u64::MAX,
                        witness: None,
                    }),
                    ..StoreOptions::default()
                },
                Arc::new(crate::store::Unheard),
            )?;
            store.close(std::time::Duration::from_secs(5)).await;
            println!(
                "{}: ready (schema current, audit key {public})",
                path.display()
            );
        }
        Location::Postgres(target) => {
            crate::store::postgres::initialize(target, Some(public)).await?;
            println!(
                "{}: ready (schema current, audit key {public})",
                target.shown()
            );
        }
    }
    Ok(())
}

/// Upgrades the store `config` names to this release's layout, saying what was rewritten.
pub(super) async fn upgrade(config: &Path) -> Result<(), CommandError> {
    let location = location(config)?;
    let shown = match &location {
        Location::Embedded(path) => {
            if !path.is_file() {
                return Err(CommandError::Failed(format!(
                    "{}: no such store file",
                    path.display()
                )));
            }
            path.display().to_string()
        }
        Location::Postgres(target) => target.shown().to_owned(),
    };
    match Store::upgrade(&location)
        .await
        .map_err(|error| CommandError::Failed(format!("upgrading {shown}: {error}")))?
    {
        Some(upgraded) => println!("{shown}: {upgraded}"),
        None => println!("{shown}: already in this release's layout; nothing to upgrade"),
    }
    Ok(())
}

/// Copies the redb file `from` into the empty PostgreSQL store of `config`.
pub(super) async fn migrate(config: &Path, from: &Path) -> Result<(), CommandError> {
    let Location::Postgres(target) = location(config)? else {
        return Err(CommandError::Usage(format!(
            "{}: the store is not a PostgreSQL store (kind = \"postgres\"); migrate copies a redb file into one",
            config.display()
        )));
    };
    if !from.is_file() {
        return Err(CommandError::Failed(format!(
            "{}: no such store file",
            from.display()
        )));
    }
    let imported = crate::store::postgres::migrate(&target, from)
        .await
        .map_err(|error| {
            CommandError::Failed(format!(
                "migrating {} into {}: {error}",
                from.display(),
                target.shown()
            ))
        })?;
    println!(
        "{} → {}: {} requests, {} audit entries, {} checkpoints, {} queued notifications, {} offboarded principals, {} idempotency keys, {} directory resources",
        from.display(),
        target.shown(),
        imported.requests,
        imported.entries,
        imported.checkpoints,
        imported.queued,
        imported.offboarded,
        imported.claims,
        imported.directory
    );
    Ok(())
}

/// Prints the nodes of the cluster whose store `config` names.
pub(super) async fn cluster_status(config: &Path, json: bool) -> Result<(), CommandError> {
    let Location::Postgres(target) = location(config)? else {
        return Err(CommandError::Usage(format!(
            "{}: a cluster keeps its store in PostgreSQL (kind = \"postgres\")",
            config.display()
        )));
    };
    let status = crate::cluster::status(&target).await?;
    if json {
        println!("{}", crate::cli::output::cluster_json(&status));
    } else {
        print!("{}", crate::cli::output::cluster_table(&status));
    }
    Ok(())
}
