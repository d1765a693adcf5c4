//! Checks made before the daemon serves, so that a service that should not run does not start:
//! every private file a configuration names follows the rule of [`crate::private_file`], and
//! the daemon does not run as root unless told to.

use std::path::PathBuf;

use crate::config::{Config, NotifierConfig, ProvisionerConfig};
use crate::private_file;

/// The private files of `config`: `(field, file, what it holds)`. The audit key is listed only
/// when it exists (the daemon generates it, mode 0600, on its first start).
pub fn private_files(config: &Config) -> Vec<(String, PathBuf, &'static str)> {
    let mut files = vec![("tls.key".to_owned(), config.tls.key.clone(), "private key")];
    if let Some(key) = config.audit.key.as_ref().filter(|key| key.exists()) {
        files.push(("audit.key".to_owned(), key.clone(), "private key"));
    }
    for (name, notifier) in &config.notifiers {
        if let NotifierConfig::Webhook {
            headers_file: Some(file),
            ..
        } = notifier
        {
            files.push((
                format!("notifiers.{name}.headers_file"),
                file.clone(),
                "header file",
            ));
        }
    }
    if let Some(scim) = &config.scim {
        files.push((
            "scim.token_file".to_owned(),
            scim.token_file.clone(),
            "token file",
        ));
    }
    for (name, provisioner) in &config.provisioners {
        if let ProvisionerConfig::Ssh(ssh) = provisioner {
            files.push((
                format!("provisioners.{name}.ca_key"),
                ssh.ca_key.clone(),
                "private key",
            ));
        }
        if let ProvisionerConfig::Postgres(postgres) = provisioner {
            if let Some(file) = &postgres.password_file {
                files.push((
                    format!("provisioners.{name}.password_file"),
                    file.clone(),
                    "password file",
                ));
            }
            if let Some(file) = &postgres.client_key {
                files.push((
                    format!("provisioners.{name}.client_key"),
                    file.clone(),
                    "private key",
                ));
            }
        }
    }
    files
}

/// Private files that are missing, unreadable or open to others, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ExposedFiles(pub Vec<String>);

/// Checks every private file of `config`, reporting all problems at once.
pub fn check_private_files(config: &Config) -> Result<(), ExposedFiles> {
    let problems: Vec<String> = private_files(config)
        .into_iter()
        .filter_map(|(field, file, what)| {
            private_file::check(&file, what)
                .err()
                .map(|error| format!("{field}: {error}"))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ExposedFiles(problems))
    }
}

/// How the daemon was started, for the root rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// From a configuration file: a real deployment.
    Config,
    /// Dev mode: a local trial in a directory of its own.
    Dev,
}

/// The daemon runs as root without being allowed to.
#[derive(Debug, thiserror::Error)]
#[error(
    "elevated is running as root (effective uid 0) and refuses to: it holds private keys and runs hooks and notifiers, which should not run with every privilege. Run it as a user of its own (see systemd/elevated.service), or pass --allow-root (or set allow_root = true in the configuration) to run as root anyway"
)]
pub struct RootRefused;

/// Whether this process runs with effective uid 0.
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The root rule: as root, a configured daemon refuses to start unless `allowed`; dev mode only
/// warns (it is a local trial, and tests and CI run as root). Returns the warning to log.
pub fn check_root(
    as_root: bool,
    mode: Mode,
    allowed: bool,
) -> Result<Option<&'static str>, RootRefused> {
    match (as_root, mode, allowed) {
        (false, _, _) => Ok(None),
        (true, _, true) => Ok(Some("running as root, as allowed")),
        (true, Mode::Dev, false) => Ok(Some(
            "running as root; dev mode allows it, but a configured daemon would refuse without --allow-root",
        )),
        (true, Mode::Config, false) => Err(RootRefused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused_in_config_mode_only_unless_allowed() {
        assert!(check_root(true, Mode::Config, false).is_err());
        assert!(check_root(true, Mode::Config, true).unwrap().is_some());
        assert!(check_root(true, Mode::Dev, false).unwrap().is_some());
        assert_eq!(check_root(false, Mode::Config, false).unwrap(), None);
        let message = RootRefused.to_string();
        assert!(message.contains("--allow-root"), "{message}");
        assert!(message.contains("allow_root = true"), "{message}");
    }
}
