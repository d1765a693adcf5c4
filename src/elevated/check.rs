//! `elevated check-config`: everything that can be checked without serving.

use std::path::Path;
use std::sync::Arc;

use super::CommandError;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::policy;
use crate::server::Options;
use crate::service::preflight;

/// Everything that can be checked without serving, every problem reported.
pub(super) fn check_config(file: &Path) -> Result<(), CommandError> {
    let config = Config::load(file)?;
    let mut problems = Vec::new();
    let private = preflight::check_private_files(&config);
    if let Err(exposed) = &private {
        problems.extend(exposed.0.iter().cloned());
    }
    if let Err(error) = crate::tls::revocation::Revocations::open(&config.tls) {
        problems.push(format!("tls: {error}"));
    }
    // These read the private files again; their permission problems are reported above.
    if private.is_ok() {
        if let Err(error) = crate::tls::server_config(&config.tls) {
            problems.push(format!("tls: {error}"));
        }
        if let Err(error) = Options::from_config(&config, Arc::new(SystemClock)) {
            problems.push(error.to_string());
        }
    }
    if private.is_ok()
        && let Some(scim) = &config.scim
        && let Err(error) = crate::scim::Token::load(&scim.token_file)
    {
        problems.push(format!("scim.token_file: {error}"));
    }
    let loaded = match config.policy.directory_file() {
        Some(directory) => policy::Snapshot::load(&config.policy.policy, directory),
        // The directory of record is in the store, pushed over SCIM.
        None => policy::Policy::load(&config.policy.policy).map(|policy| policy::Snapshot {
            policy,
            directory: policy::Directory::empty("scim (the directory of record in the store)"),
        }),
    };
    let snapshot = match loaded {
        Ok(snapshot) => Some(snapshot),
        Err(error) => {
            problems.push(error.to_string());
            None
        }
    };
    if let Some(snapshot) = &snapshot {
        let configured = config.provisioners.keys().map(String::as_str).collect();
        if let Err(invalid) = snapshot.check_provisioners(&config.policy.policy, &configured) {
            problems.push(invalid.to_string());
        }
    }
    if preflight::running_as_root() && !config.allow_root {
        eprintln!(
            "note: running as root; `elevated serve` refuses to unless allow_root = true or --allow-root"
        );
    }
    match (problems.as_slice(), snapshot) {
        ([], Some(snapshot)) => {
            println!(
                "{}: ok ({} resources, policy {}, directory {})",
                file.display(),
                snapshot.policy.resources().count(),
                snapshot.policy.version(),
                snapshot.directory.version()
            );
            Ok(())
        }
        ([one], _) => Err(CommandError::Failed(one.clone())),
        (many, _) => Err(CommandError::Failed(format!(
            "{}: {} problems:\n  {}",
            file.display(),
            many.len(),
            many.join("\n  ")
        ))),
    }
}
