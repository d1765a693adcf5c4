//! `elevated store`: create or check the store a configuration names.

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
