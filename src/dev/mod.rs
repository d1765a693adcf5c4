//! Dev mode, the embedded default: everything needed to try elevate in one directory.
//!
//! ```text
//! DIR/certs/        ca, server and one client certificate per demo identity
//! DIR/policy.toml   demo policy (written once; edit freely)
//! DIR/directory.toml demo directory
//! DIR/elevate.redb  the store
//! DIR/targets/      holders files of the `file` provisioner, one per resource
//! DIR/notifications.jsonl  every notification, as the `file` notifier writes them
//! ```
//!
//! Files that exist are left alone, so a restart keeps certificates, edits and state.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::broker::Settings;
use crate::clock::SharedClock;
use crate::notify::{FileNotifier, Notices, Notifiers, Priority, Route, Routing};
use crate::provision::{FileProvisioner, Provisioners};
use crate::server::{AuditOptions, Options};
use crate::store::StoreOptions;
use crate::tls::TlsFiles;
use crate::tls::issue::{self, CertDir, DEFAULT_TRUST_DOMAIN, IssueError};

/// The demo identities, each with a client certificate.
pub const IDENTITIES: [&str; 6] = [
    "engineer", "manager", "security", "auditor", "oncall", "admin",
];

/// Where dev mode listens unless told otherwise.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7443));

/// Where dev mode serves Prometheus metrics unless told otherwise.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7444));

pub use crate::policy::demo::{DIRECTORY, POLICY};

/// The files of a dev-mode state directory.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The state directory.
    pub root: PathBuf,
    /// Certificates.
    pub certs: CertDir,
    /// Policy file.
    pub policy: PathBuf,
    /// Directory file.
    pub directory: PathBuf,
    /// The store.
    pub store: PathBuf,
    /// Holders files.
    pub targets: PathBuf,
    /// Every notification, one JSON line each.
    pub notifications: PathBuf,
    /// The audit key, generated on first start.
    pub audit_key: PathBuf,
    /// The SSH user CA of the `prod-ssh` provisioner (its public line beside it, `.pub`).
    pub ssh_ca: PathBuf,
    /// The KRL hosts trusting that CA read (sshd's `RevokedKeys`).
    pub ssh_krl: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            certs: CertDir(root.join("certs")),
            policy: root.join("policy.toml"),
            directory: root.join("directory.toml"),
            store: root.join(crate::store::EMBEDDED_FILE_NAME),
            targets: root.join("targets"),
            notifications: root.join("notifications.jsonl"),
            audit_key: root.join("audit.key"),
            ssh_ca: root.join("ssh/user_ca"),
            ssh_krl: root.join("ssh/revoked.krl"),
        }
    }
}

/// Dev mode could not set up its directory.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Making certificates failed.
    #[error(transparent)]
    Certificates(#[from] IssueError),
    /// The SSH user CA could not be made.
    #[error(transparent)]
    Ssh(#[from] crate::provision::ssh::ca::CaError),
    /// A file or directory could not be written.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn create_private_dir(dir: &Path) -> Result<(), DevError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DevError::Io {
            file: dir.to_path_buf(),
            source,
        })
}

fn write_once(file: &Path, contents: &str) -> Result<(), DevError> {
    if file.exists() {
        return Ok(());
    }
    std::fs::write(file, contents).map_err(|source| DevError::Io {
        file: file.to_path_buf(),
        source,
    })
}

/// Creates whatever is missing under `root`: certificates, demo policy and directory.
pub fn prepare(root: &Path) -> Result<Layout, DevError> {
    let layout = Layout::new(root);
    create_private_dir(&layout.root)?;
    create_private_dir(&layout.certs.0)?;
    if !layout.certs.ca_cert().exists() {
        issue::init(&layout.certs.0, &[], false)?;
    }
    for name in IDENTITIES {
        if !layout.certs.client_cert(name).exists() {
            issue::issue(&layout.certs.0, name, DEFAULT_TRUST_DOMAIN, 365, true)?;
        }
    }
    if let Some(ssh) = layout.ssh_ca.parent() {
        create_private_dir(ssh)?;
    }
    if !layout.ssh_ca.exists() {
        let ca = crate::provision::ssh::ca::UserCa::generate(&layout.ssh_ca)?;
        let public = layout.ssh_ca.with_extension("pub");
        std::fs::write(&public, format!("{}\n", ca.public_line())).map_err(|source| {
            DevError::Io {
                file: public.clone(),
                source,
            }
        })?;
    }
    write_once(&layout.policy, POLICY)?;
    write_once(&layout.directory, DIRECTORY)?;
    Ok(layout)
}

/// Daemon options for a prepared dev layout: every notification is appended to
/// `notifications.jsonl` in the state directory.
pub fn options(layout: &Layout, clock: SharedClock) -> Options {
    let mut provisioners = Provisioners::default();
    provisioners.insert(
        "files",
        Arc::new(FileProvisioner::new(layout.targets.clone())),
    );
    // Made by `prepare`; were it unusable, the demo policy's prod-ssh names an unknown
    // provisioner and the daemon refuses to start, saying so.
    match ssh_provisioner(layout, clock.clone()) {
        Ok(ssh) => provisioners.insert("prod-ssh", Arc::new(ssh)),
        Err(error) => tracing::error!(%error, "the demo SSH provisioner is unusable"),
    }
    let mut notifiers = Notifiers::default();
    notifiers.insert(
        "log",
        Arc::new(FileNotifier::new(layout.notifications.clone())),
    );
    Options {
        trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
        tls: TlsFiles::new(
            layout.certs.ca_cert(),
            layout.certs.server_cert(),
            layout.certs.server_key(),
        ),
        store: crate::store::Location::Embedded(layout.store.clone()),
        store_options: StoreOptions::default(),
        policy: layout.policy.clone(),
        directory: Some(layout.directory.clone()),
        scim_token: None,
        provisioners,
        notifiers,
        settings: Settings {
            routing: Routing {
                routes: vec![Route {
                    events: vec!["*".to_owned()],
                    min_priority: Priority::Normal,
                    notifier: "log".to_owned(),
                }],
                notices: Notices {
                    approval_reminder: Some(Duration::from_secs(30 * 60)),
                    expiring_soon: Some(Duration::from_secs(5 * 60)),
                    review_due_soon: Some(Duration::from_secs(2 * 3600)),
                },
            },
            ..Settings::default()
        },
        shutdown_grace: crate::config::DEFAULT_SHUTDOWN_GRACE,
        audit: AuditOptions::with_key(layout.audit_key.clone()),
        clock,
    }
}

/// The demo's `prod-ssh` provisioner: certificates for `{account}` with `permit-pty`, the KRL
/// under the state directory.
fn ssh_provisioner(
    layout: &Layout,
    clock: SharedClock,
) -> Result<crate::provision::ssh::SshProvisioner, String> {
    let ca = crate::provision::ssh::ca::UserCa::load(&layout.ssh_ca).map_err(|e| e.to_string())?;
    crate::provision::ssh::SshProvisioner::new(
        crate::provision::ssh::SshSettings {
            ca,
            principals: vec!["{account}".to_owned()],
            extensions: vec!["permit-pty".to_owned()],
            force_command: None,
            source_address: Vec::new(),
            backdate: Duration::from_secs(60),
            krl: layout.ssh_krl.clone(),
            on_krl_change: None,
        },
        clock,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Directory, Policy};

    #[test]
    fn the_cli_looks_where_dev_mode_listens() {
        assert_eq!(
            crate::cli::DEFAULT_ENDPOINT,
            format!("https://{DEFAULT_LISTEN}")
        );
    }

    #[test]
    fn demo_files_are_valid_and_consistent() {
        let policy = Policy::parse(POLICY, Path::new("policy.toml")).unwrap();
        let directory = Directory::parse(DIRECTORY, Path::new("directory.toml")).unwrap();
        assert_eq!(policy.resources().count(), 4);
        for name in IDENTITIES {
            let principal = crate::model::Principal::parse(name).unwrap();
            assert!(directory.person(&principal).is_some(), "{name} missing");
        }
    }

    #[test]
    fn prepare_is_idempotent_and_keeps_edits() {
        let dir = tempfile::tempdir().unwrap();
        let layout = prepare(dir.path()).unwrap();
        std::fs::write(&layout.policy, "# edited").unwrap();
        let ca = std::fs::read(layout.certs.ca_cert()).unwrap();
        prepare(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&layout.policy).unwrap(), "# edited");
        assert_eq!(std::fs::read(layout.certs.ca_cert()).unwrap(), ca);
        assert!(layout.certs.client_key("oncall").exists());
    }
}
