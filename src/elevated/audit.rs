//! `elevated audit`: the public audit key, and offline verification of a store's trail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CommandError;
use crate::audit::key::{AuditKey, PublicKey};
use crate::audit::witness;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::dev;
use crate::server::Options;
use crate::store::{Location, offline};

/// Prints the public half of the audit key of a configuration, of dev mode, or of a key file.
pub(super) fn pubkey(
    config: Option<PathBuf>,
    dev_mode: bool,
    state_dir: &Path,
    key: Option<PathBuf>,
) -> Result<(), CommandError> {
    let file = match (config, key) {
        (_, Some(key)) => key,
        (Some(config), None) => {
            let config = Config::load(&config)?;
            Options::from_config(&config, Arc::new(SystemClock))?
                .audit
                .key
        }
        (None, None) if dev_mode => dev::Layout::new(state_dir).audit_key,
        (None, None) => {
            return Err(CommandError::Usage(
                "name the key: --config FILE, --dev or --key FILE".into(),
            ));
        }
    };
    if !file.exists() {
        return Err(CommandError::Failed(format!(
            "no audit key at {} yet: the daemon generates it on its first start",
            file.display()
        )));
    }
    let key = AuditKey::load(&file)?;
    println!("{}", key.public());
    Ok(())
}

/// Exit status 1 on any damage, with one line saying where and what.
pub(super) async fn verify(
    store: &Location,
    pubkey: Option<String>,
    witness: Option<&Path>,
) -> Result<(), CommandError> {
    let key = match pubkey {
        None => None,
        Some(text) => {
            let text = if Path::new(&text).is_file() {
                std::fs::read_to_string(&text).map_err(|source| CommandError::Read {
                    file: PathBuf::from(&text),
                    source,
                })?
            } else {
                text
            };
            Some(text.parse::<PublicKey>()?)
        }
    };
    let witnessed = witness
        .map(|witness| {
            let text = std::fs::read(witness).map_err(|source| CommandError::Read {
                file: witness.to_owned(),
                source,
            })?;
            witness::read(&text)
                .map_err(|error| CommandError::Failed(format!("{}: {error}", witness.display())))
        })
        .transpose()?;
    let wanted = witnessed.as_ref().map(witness::entries).unwrap_or_default();
    let (verified, db) = match store {
        Location::Embedded(path) => (
            offline::verify_store_keeping(path, key, &wanted),
            path.display().to_string(),
        ),
        Location::Postgres(target) => (
            crate::store::postgres::verify(target, key, wanted).await,
            target.shown().to_owned(),
        ),
    };
    let verified = verified
        .map_err(|error| CommandError::Failed(format!("{db}: verification failed: {error}")))?;
    let agreement = witnessed
        .map(|witnessed| {
            witness::compare(
                &witnessed,
                &verified.key,
                &verified.hashes,
                verified.summary.last,
                true,
            )
            .map_err(|disagreement| {
                CommandError::Failed(format!("{db}: verification failed: {disagreement}"))
            })
        })
        .transpose()?;
    println!("{db}: intact");
    if let Some(agreed) = &agreement {
        println!("  witness: {agreed}");
    }
    println!("  {}", verified.summary);
    if verified.repaired {
        println!(
            "  the file was not closed cleanly (the daemon crashed or was killed): a repaired copy was verified; the file is unchanged"
        );
    }
    println!(
        "  signatures checked with {}{}",
        verified.key,
        if verified.recorded_key {
            " (the key the store recorded)"
        } else {
            " (given; the store recorded another or none)"
        }
    );
    Ok(())
}
