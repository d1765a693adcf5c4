//! The daemon's configuration file (TOML). Unknown fields are errors; relative paths are
//! resolved against the file's directory; every error names the file and the field. The
//! `postgres` provisioner's section lives with its provisioner ([`crate::provision::postgres::config`]).
//!
//! Longer than most files: one struct per section of the file, each with its defaults (taken
//! from the types they fill) and its validation, so that the file's whole vocabulary is here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::model::{Rate, humantime};
use crate::notify::Priority;
use crate::tls::TlsFiles;

pub use crate::provision::postgres::config::{
    DEFAULT_ROLE_PREFIX, PostgresConfig, PostgresMode, PostgresTls,
};

/// The configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("{}: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What is wrong, with the field (and line, from the TOML parser).
        message: String,
    },
}

/// The daemon configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on for gRPC over mTLS.
    pub listen: SocketAddr,
    /// Address to serve Prometheus metrics on, over plain HTTP (`GET /metrics`); none when
    /// absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Trust domain of client SPIFFE ids (`spiffe://<trust_domain>/user/<name>`).
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// CA, certificate and key files.
    pub tls: TlsFiles,
    /// The store.
    pub store: StoreConfig,
    /// Several daemons on one PostgreSQL store: this node, one leader at a time.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Policy and directory files.
    pub policy: PolicyFiles,
    /// Retry and grant settings.
    #[serde(default)]
    pub workflow: WorkflowConfig,
    /// How long SIGTERM waits for in-flight work.
    #[serde(default = "default_grace", deserialize_with = "humantime")]
    pub shutdown_grace: Duration,
    /// Provisioners by name; resources of the policy name one of these.
    pub provisioners: BTreeMap<String, ProvisionerConfig>,
    /// Notifiers by name.
    #[serde(default)]
    pub notifiers: BTreeMap<String, NotifierConfig>,
    /// Which events go to which notifiers, and when reminders fall due.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// The audit key and how often the chain's head is signed.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Per-principal rates of submissions and extensions (a resource's policy may set its own).
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    /// Let the daemon run as root (effective uid 0); it refuses to otherwise.
    #[serde(default)]
    pub allow_root: bool,
    /// The SCIM 2.0 endpoint the identity provider pushes the directory of record to.
    #[serde(default)]
    pub scim: Option<ScimConfig>,
}

/// `[scim]`: where the SCIM endpoint listens (HTTPS with the daemon's server certificate) and
/// the bearer token the identity provider must send.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The address of the SCIM listener.
    pub listen: SocketAddr,
    /// The file holding the bearer token (mode 0600; surrounding whitespace ignored).
    pub token_file: PathBuf,
}

/// `[rate_limits]`: token buckets per principal, `COUNT/DURATION`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Submissions (default `20/1m`).
    #[serde(default = "default_submit_rate")]
    pub submit: Rate,
    /// Extension requests (default `10/1m`).
    #[serde(default = "default_extend_rate")]
    pub extend: Rate,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            submit: default_submit_rate(),
            extend: default_extend_rate(),
        }
    }
}

fn default_submit_rate() -> Rate {
    crate::broker::RateLimits::default().submit
}

fn default_extend_rate() -> Rate {
    crate::broker::RateLimits::default().extend
}

/// The audit key and checkpoints.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The Ed25519 key that signs checkpoints (PKCS#8 PEM, mode 0600), generated on first start
    /// when missing. Default: `audit.key` next to the store file.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Sign a checkpoint once this many events are not covered by one.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Sign a checkpoint this often when events were added since the last one.
    #[serde(
        default = "default_checkpoint_interval",
        deserialize_with = "humantime"
    )]
    pub checkpoint_interval: Duration,
    /// A notifier (of `[notifiers]`) that receives every signed checkpoint, through the
    /// outbox: a copy of the chain's heads outside the store, for `audit verify --witness`.
    #[serde(default)]
    pub witness: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            key: None,
            checkpoint_every: default_checkpoint_every(),
            checkpoint_interval: default_checkpoint_interval(),
            witness: None,
        }
    }
}

/// Sign a checkpoint once this many events are not covered by one, unless configured.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;

/// How long a stopping daemon lets calls, grants and revokes finish, unless configured.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

// The defaults of the workflow, the outbox and the timer are those of their own types: one
// source for every default, whichever way the daemon is built.

fn default_checkpoint_every() -> u64 {
    DEFAULT_CHECKPOINT_EVERY
}

fn default_checkpoint_interval() -> Duration {
    crate::broker::Settings::default().checkpoint_interval
}

/// One notifier.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotifierConfig {
    /// HTTP POST of each event.
    Webhook {
        /// `https://…` (or `http://…`), without credentials (`user:password@` is refused: put
        /// them in `headers_file`).
        url: String,
        /// `json` (the event) or `slack` (`{"text": …}`).
        #[serde(default)]
        format: WebhookFormat,
        /// Extra headers (for example a token); never logged.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// A file of more headers, one `Name: value` a line (mode 0600): where secrets such as
        /// `Authorization` belong, out of the configuration file.
        #[serde(default)]
        headers_file: Option<PathBuf>,
        /// Extra CA certificates to trust, besides the public web roots.
        ca: Option<PathBuf>,
        /// Longest attempt.
        #[serde(default = "default_webhook_timeout", deserialize_with = "humantime")]
        timeout: Duration,
    },
    /// A program given each event as JSON on stdin.
    Exec {
        /// The program (no shell).
        program: PathBuf,
        /// Leading arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Extra environment variables.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Longest run.
        #[serde(default = "default_webhook_timeout", deserialize_with = "humantime")]
        timeout: Duration,
        /// Working directory (default: the configuration file's directory).
        #[serde(default)]
        working_dir: PathBuf,
    },
    /// A JSON-lines file that each event is appended to.
    File {
        /// The file.
        path: PathBuf,
    },
}

/// The body a webhook posts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The event as JSON.
    #[default]
    Json,
    /// `{"text": …}`.
    Slack,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Routing and timing of notifications.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Rules: events of these kinds (and at least this priority) go to this notifier.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Remind the approvers of a stage still waiting after this long (off when absent).
    #[serde(default, deserialize_with = "optional_humantime")]
    pub approval_reminder: Option<Duration>,
    /// Tell holders this long before their lease ends (off when absent).
    #[serde(default, deserialize_with = "optional_humantime")]
    pub expiring_soon: Option<Duration>,
    /// Tell reviewers this long before a review is due (off when absent).
    #[serde(default, deserialize_with = "optional_humantime")]
    pub review_due_soon: Option<Duration>,
    /// First retry delay of a failed delivery.
    #[serde(
        default = "default_delivery_retry_initial",
        deserialize_with = "humantime"
    )]
    pub retry_initial: Duration,
    /// Longest retry delay.
    #[serde(default = "default_delivery_retry_max", deserialize_with = "humantime")]
    pub retry_max: Duration,
    /// Drop (and audit) a notification not delivered after this long.
    #[serde(default = "default_give_up", deserialize_with = "humantime")]
    pub give_up_after: Duration,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            approval_reminder: None,
            expiring_soon: None,
            review_due_soon: None,
            retry_initial: default_delivery_retry_initial(),
            retry_max: default_delivery_retry_max(),
            give_up_after: default_give_up(),
        }
    }
}

fn default_delivery_retry_initial() -> Duration {
    crate::notify::outbox::Delivery::default().backoff.initial
}

fn default_delivery_retry_max() -> Duration {
    crate::notify::outbox::Delivery::default().backoff.max
}

fn default_give_up() -> Duration {
    crate::notify::outbox::Delivery::default().give_up_after
}

/// One routing rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Event kinds: exact (`review.overdue`), a family (`review.*`) or `*`.
    pub events: Vec<String>,
    /// The notifier (a key of `[notifiers]`).
    pub notifier: String,
    /// Lowest priority routed: `normal` (default) or `high`.
    #[serde(default = "normal")]
    pub min_priority: Priority,
}

fn normal() -> Priority {
    Priority::Normal
}

fn optional_humantime<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    humantime(deserializer).map(Some)
}

fn default_trust_domain() -> String {
    crate::tls::issue::DEFAULT_TRUST_DOMAIN.to_owned()
}

fn default_grace() -> Duration {
    DEFAULT_SHUTDOWN_GRACE
}

/// Where state lives and how it is written: one redb file (`kind = "redb"`, the default) or
/// a PostgreSQL database shared by several daemons (`kind = "postgres"`, with the connection
/// keys of a `postgres` provisioner, the role named `user`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Which backend.
    #[serde(default)]
    pub kind: StoreKind,
    /// The store's file (`redb`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Batch concurrent transitions into one transaction and one fsync (default on).
    #[serde(default = "yes")]
    pub group_commit: bool,
    /// `postgres`: a host name, an IP address, or a Unix-socket directory.
    #[serde(default)]
    pub host: Option<String>,
    /// `postgres`: the port.
    #[serde(default)]
    pub port: Option<u16>,
    /// `postgres`: the database.
    #[serde(default)]
    pub database: Option<String>,
    /// `postgres`: the role elevated logs in as.
    #[serde(default)]
    pub user: Option<String>,
    /// `postgres`: a file holding the role's password (mode 0600).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `postgres`: `disable`, `require` or `verify-full` (the default over TCP).
    #[serde(default)]
    pub tls: Option<PostgresTls>,
    /// `postgres`: CA certificates the server's certificate must chain to.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `postgres`: a client certificate chain, for certificate authentication.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// `postgres`: the key of `client_cert` (mode 0600).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// `postgres`: longest connect, and longest single statement (default 10s).
    #[serde(default, deserialize_with = "optional_humantime")]
    pub timeout: Option<Duration>,
}

/// This node of several daemons sharing one PostgreSQL store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The node's name, unique among the nodes.
    pub node: String,
    /// Where clients reach this node (`https://host:port`), told to clients of standbys.
    pub advertise: String,
    /// The leadership lease: a leader that cannot renew it stops acting within it, and a
    /// standby takes over after it ran out (default 5s).
    #[serde(default = "default_cluster_lease", deserialize_with = "humantime")]
    pub lease: Duration,
}

/// The default leadership lease.
pub const DEFAULT_CLUSTER_LEASE: Duration = Duration::from_secs(5);

fn default_cluster_lease() -> Duration {
    DEFAULT_CLUSTER_LEASE
}

impl ClusterConfig {
    /// Every mistake that can be found without connecting, as `key: problem`.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = !self.node.is_empty()
            && self.node.len() <= 64
            && self
                .node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(format!(
                "node: '{}' must be 1-64 letters, digits, '-', '_' or '.'",
                self.node
            ));
        }
        let address = self
            .advertise
            .strip_prefix("https://")
            .ok_or_else(|| format!("advertise: '{}' must start with https://", self.advertise))?;
        if address.is_empty() || address.contains(['/', ' ', ',']) || !address.contains(':') {
            return Err(format!(
                "advertise: '{}' must be https://HOST:PORT",
                self.advertise
            ));
        }
        if self.lease < Duration::from_secs(1) || self.lease > Duration::from_secs(300) {
            return Err("lease: must be between 1s and 5m".to_owned());
        }
        Ok(())
    }
}

/// The store's backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One redb file, for one daemon.
    #[default]
    Redb,
    /// A PostgreSQL database, for one or several daemons.
    Postgres,
}

/// The default longest connect and statement of the PostgreSQL store.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

impl StoreConfig {
    /// A redb store in `path`.
    pub fn redb(path: PathBuf) -> Self {
        Self {
            kind: StoreKind::Redb,
            path: Some(path),
            group_commit: true,
            host: None,
            port: None,
            database: None,
            user: None,
            password_file: None,
            tls: None,
            ca: None,
            client_cert: None,
            client_key: None,
            timeout: None,
        }
    }

    /// How the PostgreSQL store logs in (`kind = "postgres"` and the keys checked).
    pub(crate) fn login(&self) -> Option<crate::pg::Login<'_>> {
        Some(crate::pg::Login {
            host: self.host.as_deref()?,
            port: self.port.unwrap_or(5432),
            database: self.database.as_deref()?,
            user: ("user", self.user.as_deref()?),
            password_file: self.password_file.as_deref(),
            tls: self.tls,
            ca: self.ca.as_deref(),
            client_cert: self.client_cert.as_deref(),
            client_key: self.client_key.as_deref(),
            timeout: self.timeout.unwrap_or(DEFAULT_STORE_TIMEOUT),
        })
    }

    /// Every mistake that can be found without connecting, as `key: problem`.
    pub fn check(&self) -> Result<(), String> {
        let postgres_keys = [
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("database", self.database.is_some()),
            ("user", self.user.is_some()),
            ("password_file", self.password_file.is_some()),
            ("tls", self.tls.is_some()),
            ("ca", self.ca.is_some()),
            ("client_cert", self.client_cert.is_some()),
            ("client_key", self.client_key.is_some()),
            ("timeout", self.timeout.is_some()),
        ];
        match self.kind {
            StoreKind::Redb => {
                if self.path.is_none() {
                    return Err("path: required (the store's redb file)".to_owned());
                }
                if let Some((key, _)) = postgres_keys.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "{key}: only used with kind = \"postgres\" (this store is a redb file)"
                    ));
                }
                Ok(())
            }
            StoreKind::Postgres => {
                if self.path.is_some() {
                    return Err("path: a PostgreSQL store has no file; leave path out".to_owned());
                }
                for (key, set) in &postgres_keys[..4] {
                    if !set && *key != "port" {
                        return Err(format!("{key}: required with kind = \"postgres\""));
                    }
                }
                self.login().map_or(Ok(()), |login| login.check())
            }
        }
    }
}

fn yes() -> bool {
    true
}

/// The policy and directory files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFiles {
    /// Resources and routes.
    pub policy: PathBuf,
    /// Principals, groups, managers: a file, or `"scim"` for the directory of record the
    /// identity provider pushes to the SCIM endpoint (kept in the store).
    pub directory: PathBuf,
}

/// The value of `policy.directory` that makes the SCIM directory the directory of record.
pub const SCIM_DIRECTORY: &str = "scim";

impl PolicyFiles {
    /// The directory file, or `None` when the directory of record is the SCIM one.
    pub fn directory_file(&self) -> Option<&Path> {
        (self.directory != Path::new(SCIM_DIRECTORY)).then_some(self.directory.as_path())
    }
}

/// Grant and revoke retries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    /// Grant attempts before a request ends as failed.
    #[serde(default = "default_grant_attempts")]
    pub grant_attempts: u32,
    /// First retry delay.
    #[serde(default = "default_retry_initial", deserialize_with = "humantime")]
    pub retry_initial: Duration,
    /// Longest retry delay (revokes retry at this interval forever).
    #[serde(default = "default_retry_max", deserialize_with = "humantime")]
    pub retry_max: Duration,
    /// How often targets are compared with the leases and drift corrected; `0s` turns the
    /// periodic run off (`elevate admin reconcile` still works).
    #[serde(default = "default_reconcile_every", deserialize_with = "humantime")]
    pub reconcile_every: Duration,
}

fn default_reconcile_every() -> Duration {
    crate::broker::Settings::default()
        .reconcile_every
        .unwrap_or_default()
}

impl Default for WorkflowConfig {
    fn default() -> Self {
        Self {
            grant_attempts: default_grant_attempts(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            reconcile_every: default_reconcile_every(),
        }
    }
}

/// The shortest reminder or warning lead time.
const MIN_NOTICE: Duration = Duration::from_secs(60);

/// The longest allowed retry delay.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);

fn default_grant_attempts() -> u32 {
    crate::broker::Settings::default().grant_attempts
}

fn default_retry_initial() -> Duration {
    crate::expiry::Backoff::default().initial
}

fn default_retry_max() -> Duration {
    crate::expiry::Backoff::default().max
}

/// One provisioner.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProvisionerConfig {
    /// Holders files in a directory.
    File {
        /// The directory.
        dir: PathBuf,
    },
    /// A program run per grant and revoke.
    Exec {
        /// The program (no shell).
        program: PathBuf,
        /// Leading arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Extra environment variables.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Longest run before it is killed.
        #[serde(default = "default_exec_timeout", deserialize_with = "humantime")]
        timeout: Duration,
        /// Working directory of the program; the configuration file's directory by default,
        /// so relative paths in `args` and `env` mean what they say in this file.
        #[serde(default)]
        working_dir: PathBuf,
    },
    /// Roles on a PostgreSQL server.
    Postgres(PostgresConfig),
    /// Short-lived OpenSSH user certificates, and a KRL for early ends.
    Ssh(SshConfig),
}

/// `kind = "ssh"`: the CA, what certificates say, and the KRL hosts read.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// The CA's OpenSSH private key (Ed25519, mode 0600), from `elevated ssh init-ca`.
    pub ca_key: PathBuf,
    /// The logins certificates are valid for; `{account}` (the directory's account for this
    /// provisioner, else the principal) and `{principal}` are replaced. Never empty.
    #[serde(default = "default_ssh_principals")]
    pub principals: Vec<String>,
    /// Certificate extensions (default `permit-pty` only).
    #[serde(default = "default_ssh_extensions")]
    pub extensions: Vec<String>,
    /// The `force-command` critical option.
    #[serde(default)]
    pub force_command: Option<String>,
    /// The `source-address` critical option: CIDR blocks.
    #[serde(default)]
    pub source_address: Vec<String>,
    /// How long before the grant a certificate becomes valid (clock skew; default 1m).
    #[serde(default = "default_ssh_backdate", deserialize_with = "humantime")]
    pub backdate: Duration,
    /// The KRL hosts name in sshd's `RevokedKeys`.
    pub krl: PathBuf,
    /// A program run after each change of the KRL (with its path as argument and in
    /// `ELEVATE_KRL`) to ship it to the hosts; a failure keeps the revoke retried.
    #[serde(default)]
    pub on_krl_change: Option<HookConfig>,
}

/// A program and its leading arguments.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The program (no shell).
    pub program: PathBuf,
    /// Leading arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

fn default_ssh_principals() -> Vec<String> {
    vec!["{account}".to_owned()]
}

fn default_ssh_extensions() -> Vec<String> {
    vec!["permit-pty".to_owned()]
}

fn default_ssh_backdate() -> Duration {
    Duration::from_secs(60)
}

impl SshConfig {
    /// Checks what a certificate would say; the message names the field.
    fn check(&self) -> Result<(), String> {
        if self.principals.is_empty() {
            return Err("principals: at least one login is needed (an empty list would make certificates valid for every login)".into());
        }
        let plain = |text: &str| {
            !text.is_empty()
                && !text
                    .chars()
                    .any(|c| c.is_whitespace() || c == ',' || c.is_control())
        };
        if let Some(bad) = self.principals.iter().find(|p| !plain(p)) {
            return Err(format!(
                "principals: {bad:?} is not a login (no spaces, commas or control characters)"
            ));
        }
        if let Some(bad) = self.extensions.iter().find(|e| !plain(e)) {
            return Err(format!("extensions: {bad:?} is not an extension name"));
        }
        for block in &self.source_address {
            let (address, prefix) = block.split_once('/').unwrap_or((block, ""));
            let parsed: Option<std::net::IpAddr> = address.parse().ok();
            let limit = match parsed {
                Some(std::net::IpAddr::V4(_)) => 32,
                Some(std::net::IpAddr::V6(_)) => 128,
                None => {
                    return Err(format!(
                        "source_address: {block:?} is not an address or CIDR block"
                    ));
                }
            };
            if !prefix.is_empty() && prefix.parse::<u8>().map_or(true, |bits| bits > limit) {
                return Err(format!("source_address: {block:?} has a bad prefix length"));
            }
        }
        if self
            .force_command
            .as_deref()
            .is_some_and(|c| c.trim().is_empty() || c.contains('\n'))
        {
            return Err("force_command: must be one non-empty line".into());
        }
        Ok(())
    }
}

fn default_exec_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|error| ConfigError::Invalid {
            file: file.to_path_buf(),
            message: error.to_string(),
        })?;
        // Made absolute: a hook runs in its working directory (by default this file's), where
        // a relative program path would be looked up anew (and a bare name, as from
        // `--config elevated.toml`, in PATH), so no resolved path may stay relative.
        let base = std::path::absolute(file)
            .ok()
            .and_then(|file| file.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        config.resolve(&base);
        config.check(file)?;
        Ok(config)
    }

    fn resolve(&mut self, base: &Path) {
        let join = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        join(&mut self.tls.ca);
        join(&mut self.tls.cert);
        join(&mut self.tls.key);
        if let Some(revoked) = &mut self.tls.revoked {
            join(revoked);
        }
        for crl in &mut self.tls.crls {
            join(crl);
        }
        for file in [
            &mut self.store.path,
            &mut self.store.password_file,
            &mut self.store.ca,
            &mut self.store.client_cert,
            &mut self.store.client_key,
        ]
        .into_iter()
        .flatten()
        {
            join(file);
        }
        match &mut self.audit.key {
            Some(key) => join(key),
            None => {
                // Beside the redb file, else beside this file.
                let dir = self
                    .store
                    .path
                    .as_deref()
                    .and_then(Path::parent)
                    .unwrap_or(base);
                self.audit.key = Some(dir.join("audit.key"));
            }
        }
        join(&mut self.policy.policy);
        if self.policy.directory_file().is_some() {
            join(&mut self.policy.directory);
        }
        if let Some(scim) = &mut self.scim {
            join(&mut scim.token_file);
        }
        for notifier in self.notifiers.values_mut() {
            match notifier {
                NotifierConfig::Webhook {
                    ca, headers_file, ..
                } => {
                    if let Some(ca) = ca {
                        join(ca);
                    }
                    if let Some(file) = headers_file {
                        join(file);
                    }
                }
                NotifierConfig::Exec {
                    program,
                    working_dir,
                    ..
                } => {
                    join(program);
                    join(working_dir);
                }
                NotifierConfig::File { path } => join(path),
            }
        }
        for provisioner in self.provisioners.values_mut() {
            match provisioner {
                ProvisionerConfig::File { dir } => join(dir),
                ProvisionerConfig::Ssh(ssh) => {
                    join(&mut ssh.ca_key);
                    join(&mut ssh.krl);
                    if let Some(hook) = &mut ssh.on_krl_change {
                        join(&mut hook.program);
                    }
                }
                ProvisionerConfig::Exec {
                    program,
                    working_dir,
                    ..
                } => {
                    join(program);
                    join(working_dir);
                }
                ProvisionerConfig::Postgres(postgres) => {
                    for file in [
                        &mut postgres.password_file,
                        &mut postgres.ca,
                        &mut postgres.client_cert,
                        &mut postgres.client_key,
                    ]
                    .into_iter()
                    .flatten()
                    {
                        join(file);
                    }
                }
            }
        }
    }

    fn check(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            message,
        };
        if self.trust_domain.is_empty() || self.trust_domain.contains(['/', ':', ' ']) {
            return Err(invalid(format!(
                "trust_domain: invalid trust domain '{}'",
                self.trust_domain
            )));
        }
        if self.metrics_listen == Some(self.listen) {
            return Err(invalid(format!(
                "metrics_listen: {} is the gRPC address (listen); metrics need an address of their own",
                self.listen
            )));
        }
        if let Err(message) = self.tls.check() {
            return Err(invalid(format!("tls.{message}")));
        }
        match (&self.scim, self.policy.directory_file()) {
            (Some(scim), None) => {
                let taken = scim.listen == self.listen || Some(scim.listen) == self.metrics_listen;
                if taken && scim.listen.port() != 0 {
                    return Err(invalid(format!(
                        "scim.listen: {} is already the gRPC or metrics address; SCIM needs an address of its own",
                        scim.listen
                    )));
                }
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "scim: the SCIM endpoint writes the directory of record; set policy.directory = \"scim\" (and seed it with `elevated directory import`)"
                        .to_owned(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "policy.directory = \"scim\" needs a [scim] section (listen, token_file) for the identity provider to push to"
                        .to_owned(),
                ));
            }
            (None, Some(_)) => {}
        }
        if let Err(message) = self.store.check() {
            return Err(invalid(format!("store.{message}")));
        }
        if let Some(cluster) = &self.cluster {
            if self.store.kind != StoreKind::Postgres {
                return Err(invalid(
                    "cluster: several nodes share a PostgreSQL store; set store.kind = \"postgres\""
                        .to_owned(),
                ));
            }
            if let Err(message) = cluster.check() {
                return Err(invalid(format!("cluster.{message}")));
            }
            if let Some((name, _)) = self
                .provisioners
                .iter()
                .find(|(_, provisioner)| matches!(provisioner, ProvisionerConfig::Ssh(_)))
            {
                return Err(invalid(format!(
                    "provisioners.{name}: an ssh provisioner keeps the certificates it issued on this node's disk, so with several nodes a new leader could not revoke the old one's; run it on a daemon of its own (not yet supported in a cluster)"
                )));
            }
        }
        if self.workflow.grant_attempts == 0 {
            return Err(invalid(
                "workflow.grant_attempts: must be at least 1".to_owned(),
            ));
        }
        if self.workflow.retry_initial.is_zero()
            || self.workflow.retry_initial > self.workflow.retry_max
        {
            return Err(invalid(
                "workflow.retry_initial: must be above zero and at most retry_max".to_owned(),
            ));
        }
        if self.workflow.retry_max > MAX_RETRY_DELAY {
            return Err(invalid(
                "workflow.retry_max: at most 1 day, so that a failing revoke is retried daily at least"
                    .to_owned(),
            ));
        }
        if self.audit.checkpoint_every == 0 || self.audit.checkpoint_every > 1_000_000 {
            return Err(invalid(
                "audit.checkpoint_every: must be between 1 and 1000000 events".to_owned(),
            ));
        }
        if self.audit.checkpoint_interval < Duration::from_secs(1)
            || self.audit.checkpoint_interval > Duration::from_secs(3600)
        {
            return Err(invalid(
                "audit.checkpoint_interval: must be between 1s and 1h".to_owned(),
            ));
        }
        if let Some(witness) = &self.audit.witness
            && !self.notifiers.contains_key(witness)
        {
            return Err(invalid(format!(
                "audit.witness: '{witness}' is not a notifier of [notifiers] (configured: {})",
                if self.notifiers.is_empty() {
                    "none".to_owned()
                } else {
                    self.notifiers
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        let every = self.workflow.reconcile_every;
        if !every.is_zero() && every < Duration::from_secs(10) {
            return Err(invalid(format!(
                "workflow.reconcile_every: {} is too often; at least 10s, or 0s to turn it off",
                humantime::format_duration(every)
            )));
        }
        if self.provisioners.is_empty() {
            return Err(invalid("provisioners: configure at least one".to_owned()));
        }
        for (name, provisioner) in &self.provisioners {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(format!(
                    "provisioners.{name}: names are letters, digits, '-' and '_'"
                )));
            }
            match provisioner {
                ProvisionerConfig::Exec {
                    program, timeout, ..
                } => {
                    if !program.is_file() {
                        return Err(invalid(format!(
                            "provisioners.{name}.program: {} does not exist",
                            program.display()
                        )));
                    }
                    if timeout.is_zero() {
                        return Err(invalid(format!(
                            "provisioners.{name}.timeout: must be above zero"
                        )));
                    }
                }
                ProvisionerConfig::Postgres(postgres) => postgres
                    .check()
                    .map_err(|message| invalid(format!("provisioners.{name}.{message}")))?,
                ProvisionerConfig::File { .. } => {}
                ProvisionerConfig::Ssh(ssh) => ssh
                    .check()
                    .map_err(|message| invalid(format!("provisioners.{name}.{message}")))?,
            }
        }
        // Two ssh provisioners on one KRL or one CA would hand out the same serials and miss
        // each other's revocations.
        let mut ssh_files: BTreeMap<&PathBuf, &String> = BTreeMap::new();
        for (name, provisioner) in &self.provisioners {
            if let ProvisionerConfig::Ssh(ssh) = provisioner {
                for (field, file) in [("krl", &ssh.krl), ("ca_key", &ssh.ca_key)] {
                    if let Some(first) = ssh_files.insert(file, name) {
                        return Err(invalid(format!(
                            "provisioners.{name}.{field}: {} is also provisioner '{first}'s; each ssh provisioner needs its own CA and KRL",
                            file.display()
                        )));
                    }
                }
            }
        }
        let mut target_roles = BTreeMap::new();
        for (name, provisioner) in &self.provisioners {
            if let ProvisionerConfig::Postgres(postgres) = provisioner {
                let key = (&postgres.host, postgres.port, &postgres.target_role);
                if let Some(first) = target_roles.insert(key, name) {
                    return Err(invalid(format!(
                        "provisioners.{name}.target_role: provisioner '{first}' already grants role '{}' on {}:{}; one provisioner per role, or each would remove the other's grants",
                        postgres.target_role, postgres.host, postgres.port
                    )));
                }
            }
        }
        for (name, notifier) in &self.notifiers {
            match notifier {
                NotifierConfig::Webhook {
                    url, ca, timeout, ..
                } => {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return Err(invalid(format!(
                            "notifiers.{name}.url: not an http:// or https:// URL"
                        )));
                    }
                    if crate::notify::has_userinfo(url) {
                        // The URL itself is not repeated: it holds a secret.
                        return Err(invalid(format!(
                            "notifiers.{name}.url: holds credentials (user:password@), which would be shown and stored wherever the webhook is named; remove them and send them as a header from a file instead: headers_file = \"secrets/{name}.headers\" (mode 0600) with a line such as `Authorization: Basic <base64 of user:password>`"
                        )));
                    }
                    if let Some(ca) = ca.as_ref().filter(|ca| !ca.is_file()) {
                        return Err(invalid(format!(
                            "notifiers.{name}.ca: {} does not exist",
                            ca.display()
                        )));
                    }
                    if timeout.is_zero() {
                        return Err(invalid(format!(
                            "notifiers.{name}.timeout: must be above zero"
                        )));
                    }
                }
                NotifierConfig::Exec { program, .. } if !program.is_file() => {
                    return Err(invalid(format!(
                        "notifiers.{name}.program: {} does not exist",
                        program.display()
                    )));
                }
                NotifierConfig::Exec { timeout, .. } if timeout.is_zero() => {
                    return Err(invalid(format!(
                        "notifiers.{name}.timeout: must be above zero"
                    )));
                }
                NotifierConfig::Exec { .. } | NotifierConfig::File { .. } => {}
            }
        }
        let notifications = &self.notifications;
        for (field, value) in [
            ("approval_reminder", notifications.approval_reminder),
            ("expiring_soon", notifications.expiring_soon),
            ("review_due_soon", notifications.review_due_soon),
        ] {
            if value.is_some_and(|value| value < MIN_NOTICE) {
                return Err(invalid(format!(
                    "notifications.{field}: at least 1 minute (leave it out to turn it off)"
                )));
            }
        }
        if notifications.retry_initial.is_zero()
            || notifications.retry_initial > notifications.retry_max
        {
            return Err(invalid(
                "notifications.retry_initial: must be above zero and at most retry_max".to_owned(),
            ));
        }
        if notifications.give_up_after.is_zero() {
            return Err(invalid(
                "notifications.give_up_after: must be above zero".to_owned(),
            ));
        }
        for (index, route) in self.notifications.routes.iter().enumerate() {
            if !self.notifiers.contains_key(&route.notifier) {
                return Err(invalid(format!(
                    "notifications.routes[{index}].notifier: '{}' is not a configured notifier",
                    route.notifier
                )));
            }
            for event in &route.events {
                if !crate::notify::known_pattern(event) {
                    return Err(invalid(format!(
                        "notifications.routes[{index}].events: unknown event '{event}' (expected one of {}, a family like review.*, or *)",
                        crate::notify::KINDS.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("elevated.toml");
        std::fs::write(&file, text).unwrap();
        Config::load(&file)
    }

    const MINIMAL: &str = r#"
        listen = "127.0.0.1:7443"
        [tls]
        ca = "ca.crt"
        cert = "server.crt"
        key = "server.key"
        [store]
        path = "elevate.store"
        [policy]
        policy = "policy.toml"
        directory = "directory.toml"
        [provisioners.files]
        kind = "file"
        dir = "targets"
    "#;

    #[test]
    fn a_postgres_store_and_a_cluster_are_checked_key_by_key() {
        let postgres = MINIMAL.replace(
            "path = \"elevate.store\"",
            "kind = \"postgres\"\nhost = \"db.internal\"\ndatabase = \"elevate\"\nuser = \"elevated\"",
        );
        let config = load(&postgres).unwrap();
        assert_eq!(config.store.kind, StoreKind::Postgres);
        assert!(config.cluster.is_none());
        let cases = [
            (
                MINIMAL.replace(
                    "path = \"elevate.store\"",
                    "kind = \"postgres\"\nhost = \"db\"",
                ),
                "store.database: required with kind = \"postgres\"",
            ),
            (
                MINIMAL.replace("path = \"elevate.store\"", "path = \"x\"\nhost = \"db\""),
                "store.host: only used with kind = \"postgres\"",
            ),
            (
                postgres.replace("user = \"elevated\"", "user = \"elevated\"\npath = \"x\""),
                "store.path: a PostgreSQL store has no file",
            ),
            (
                format!("{MINIMAL}\n[cluster]\nnode = \"a\"\nadvertise = \"https://h:1\"\n"),
                "cluster: several nodes share a PostgreSQL store",
            ),
            (
                format!("{postgres}\n[cluster]\nnode = \"a b\"\nadvertise = \"https://h:1\"\n"),
                "cluster.node: 'a b' must be",
            ),
            (
                format!("{postgres}\n[cluster]\nnode = \"a\"\nadvertise = \"http://h:1\"\n"),
                "cluster.advertise: 'http://h:1' must start with https://",
            ),
            (
                format!(
                    "{postgres}\n[cluster]\nnode = \"a\"\nadvertise = \"https://h:1\"\nlease = \"100ms\"\n"
                ),
                "cluster.lease: must be between 1s and 5m",
            ),
            (
                format!(
                    "{postgres}\n[cluster]\nnode = \"a\"\nadvertise = \"https://h:1\"\n[provisioners.prod-ssh]\nkind = \"ssh\"\nca_key = \"ca\"\nkrl = \"k.krl\"\n"
                ),
                "provisioners.prod-ssh: an ssh provisioner keeps the certificates it issued on this node's disk",
            ),
            (
                format!(
                    "{MINIMAL}\n[provisioners.a-ssh]\nkind = \"ssh\"\nca_key = \"ca1\"\nkrl = \"k.krl\"\n[provisioners.b-ssh]\nkind = \"ssh\"\nca_key = \"ca2\"\nkrl = \"k.krl\"\n"
                ),
                "provisioners.b-ssh.krl:",
            ),
        ];
        for (text, wanted) in cases {
            let error = load(&text).unwrap_err().to_string();
            assert!(error.contains(wanted), "wanted {wanted:?} in {error}");
        }
        let cluster = load(&format!(
            "{postgres}\n[cluster]\nnode = \"a\"\nadvertise = \"https://10.0.0.1:7443\"\n"
        ))
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(cluster.lease, DEFAULT_CLUSTER_LEASE);
    }

    #[test]
    fn loads_with_defaults_and_resolves_paths() {
        let config = load(MINIMAL).unwrap();
        assert!(config.store.path.as_ref().unwrap().is_absolute());
        assert!(config.store.group_commit);
        assert_eq!(config.trust_domain, "elevate.local");
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.metrics_listen, None, "metrics are off by default");
    }

    #[test]
    fn a_relative_configuration_path_resolves_to_absolute_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook.sh"), "#!/bin/sh\n").unwrap();
        let text =
            format!("{MINIMAL}\n[provisioners.hook]\nkind = \"exec\"\nprogram = \"hook.sh\"\n");
        std::fs::write(dir.path().join("elevated.toml"), text).unwrap();
        // The same file named relative to the working directory, as `--config` may name it.
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count() - 1);
        let relative =
            PathBuf::from(up).join(dir.path().join("elevated.toml").strip_prefix("/").unwrap());
        let config = Config::load(&relative).unwrap();
        assert!(config.tls.key.is_absolute(), "{}", config.tls.key.display());
        let Some(ProvisionerConfig::Exec {
            program,
            working_dir,
            ..
        }) = config.provisioners.get("hook")
        else {
            panic!("no exec provisioner");
        };
        assert!(program.is_absolute(), "{}", program.display());
        assert!(working_dir.is_absolute(), "{}", working_dir.display());
        assert_eq!(
            program.canonicalize().unwrap(),
            dir.path().join("hook.sh").canonicalize().unwrap()
        );
    }

    #[test]
    fn metrics_listen_is_an_address_of_its_own() {
        let config = load(&format!("metrics_listen = \"127.0.0.1:9464\"\n{MINIMAL}")).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let error = load(&format!("metrics_listen = \"127.0.0.1:7443\"\n{MINIMAL}")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("metrics_listen: 127.0.0.1:7443 is the gRPC address"),
            "{error}"
        );
        let error = load(&format!("metrics_listen = \"localhost\"\n{MINIMAL}")).unwrap_err();
        assert!(error.to_string().contains("metrics_listen"), "{error}");
    }

    #[test]
    fn errors_name_the_field() {
        let error = load(&MINIMAL.replace("kind = \"file\"", "kind = \"ftp\"")).unwrap_err();
        assert!(
            error.to_string().contains("unknown variant `ftp`"),
            "{error}"
        );
        let error = load(&format!(
            "{MINIMAL}\n[provisioners.hook]\nkind = \"exec\"\nprogram = \"/nope\"\n"
        ))
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("provisioners.hook.program: /nope does not exist"),
            "{error}"
        );
        let error = load(&MINIMAL.replace("listen = \"127.0.0.1:7443\"", "listen = \"nowhere\""))
            .unwrap_err();
        assert!(error.to_string().contains("listen"), "{error}");
        let error = load(&format!("shutdown_grace = \"soon\"\n{MINIMAL}")).unwrap_err();
        assert!(
            error.to_string().contains("invalid duration 'soon'"),
            "{error}"
        );
        for (extra, expected) in [
            (
                "[notifiers.ops]\nkind = \"webhook\"\nurl = \"ftp://x\"\n",
                "notifiers.ops.url",
            ),
            (
                "[[notifications.routes]]\nevents = [\"*\"]\nnotifier = \"nobody\"\n",
                "routes[0].notifier: 'nobody'",
            ),
            (
                "[notifiers.log]\nkind = \"file\"\npath = \"n.jsonl\"\n[[notifications.routes]]\nevents = [\"review.overdu\"]\nnotifier = \"log\"\n",
                "unknown event 'review.overdu'",
            ),
            (
                "[notifications]\napproval_reminder = \"0s\"\n",
                "notifications.approval_reminder: at least 1 minute",
            ),
            (
                "[notifications]\nretry_initial = \"0s\"\n",
                "notifications.retry_initial",
            ),
            (
                "[provisioners.pg]\nkind = \"postgres\"\nhost = \"db\"\ndatabase = \"app\"\nadmin_role = \"elevate\"\nmode = \"membership\"\ntarget_role = \"rw\"\n[provisioners.pg2]\nkind = \"postgres\"\nhost = \"db\"\ndatabase = \"other\"\nadmin_role = \"elevate\"\nmode = \"ephemeral\"\ntarget_role = \"rw\"\n",
                "provisioners.pg2.target_role: provisioner 'pg' already grants role 'rw' on db:5432",
            ),
            (
                "[provisioners.pg]\nkind = \"postgres\"\nhost = \"db\"\ndatabase = \"app\"\nadmin_role = \"elevate\"\nmode = \"membership\"\ntarget_role = \"\"\n",
                "provisioners.pg.target_role: must not be empty",
            ),
            (
                "[provisioners.pg]\nkind = \"postgres\"\nhost = \"db\"\ndatabase = \"app\"\nadmin_role = \"elevate\"\nmode = \"membership\"\ntarget_role = \"rw\"\npassword_file = \"pg.password\"\n",
                "provisioners.pg.password_file: /",
            ),
        ] {
            let error = load(&format!("{MINIMAL}\n{extra}")).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }
}
