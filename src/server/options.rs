//! What the daemon is built from ([`Options`]), and how a configuration file becomes it: the
//! provisioners and notifiers it names, made; the files it names, resolved.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::BuildError;
use crate::broker::Settings;
use crate::clock::SharedClock;
use crate::config::{Config, NotifierConfig, ProvisionerConfig, WebhookFormat};
use crate::expiry::Backoff;
use crate::notify::outbox::Delivery;
use crate::notify::{
    ExecNotifier, FileNotifier, Format, Notices, Notifier, Notifiers, Route, Routing,
    WebhookNotifier,
};
use crate::process::Program;
use crate::provision::{ExecProvisioner, FileProvisioner, PostgresProvisioner, Provisioners};
use crate::store::StoreOptions;
use crate::tls::TlsFiles;

/// The audit key and how often checkpoints are signed.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// The key file, generated on first start.
    pub key: PathBuf,
    /// Sign once this many events are not covered by a checkpoint.
    pub checkpoint_every: u64,
    /// Sign this often when events were added.
    pub checkpoint_interval: Duration,
    /// The notifier every checkpoint also goes to (`[audit] witness`).
    pub witness: Option<String>,
}

impl AuditOptions {
    /// The defaults, with the key at `key`.
    pub fn with_key(key: PathBuf) -> Self {
        Self {
            key,
            checkpoint_every: crate::config::DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval: Settings::default().checkpoint_interval,
            witness: None,
        }
    }
}

/// Everything the daemon needs, from a configuration file or dev mode.
#[derive(Debug)]
pub struct Options {
    /// Trust domain of client SPIFFE ids.
    pub trust_domain: String,
    /// Server TLS files and the certificate deny list.
    pub tls: TlsFiles,
    /// Where the store lives.
    pub store: crate::store::Location,
    /// Writer batching.
    pub store_options: StoreOptions,
    /// Policy file.
    pub policy: PathBuf,
    /// Directory file; `None` when the directory of record is the SCIM one, kept in the store.
    pub directory: Option<PathBuf>,
    /// The SCIM endpoint's bearer token file, when the directory of record is the SCIM one.
    pub scim_token: Option<PathBuf>,
    /// Provisioners by name.
    pub provisioners: Provisioners,
    /// Notifiers by name (routing is in `settings`).
    pub notifiers: Notifiers,
    /// Workflow tunables.
    pub settings: Settings,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// The audit key and checkpoints.
    pub audit: AuditOptions,
    /// The clock (the system clock, or a manual one in tests).
    pub clock: SharedClock,
}

impl Options {
    /// Options from a loaded configuration file. Fails when a notifier or provisioner cannot be
    /// set up (an unreadable CA or password file, an invalid header).
    pub fn from_config(config: &Config, clock: SharedClock) -> Result<Self, BuildError> {
        let mut provisioners = Provisioners::default();
        for (name, provisioner) in &config.provisioners {
            match provisioner {
                ProvisionerConfig::File { dir } => {
                    provisioners.insert(name.clone(), Arc::new(FileProvisioner::new(dir.clone())));
                }
                ProvisionerConfig::Exec {
                    program,
                    args,
                    env,
                    timeout,
                    working_dir,
                } => provisioners.insert(
                    name.clone(),
                    Arc::new(
                        ExecProvisioner::new(program.clone(), args.clone(), env.clone(), *timeout)
                            .in_dir(working_dir.clone()),
                    ),
                ),
                ProvisionerConfig::Ssh(ssh) => provisioners.insert(
                    name.clone(),
                    Arc::new(ssh_provisioner(ssh, clock.clone()).map_err(|error| {
                        BuildError::Config(format!("provisioners.{name}: {error}"))
                    })?),
                ),
                ProvisionerConfig::Postgres(postgres) => provisioners.insert(
                    name.clone(),
                    Arc::new(PostgresProvisioner::new(postgres).map_err(|error| {
                        BuildError::Config(format!("provisioners.{name}: {error}"))
                    })?),
                ),
            }
        }
        let notifiers = notifiers(config)?;
        let notifications = &config.notifications;
        Ok(Self {
            trust_domain: config.trust_domain.clone(),
            tls: config.tls.clone(),
            store: crate::store::Location::from_config(&config.store)
                .map_err(|error| BuildError::Config(format!("store.{error}")))?,
            store_options: StoreOptions {
                max_batch: if config.store.group_commit {
                    StoreOptions::default().max_batch
                } else {
                    1
                },
                ..StoreOptions::default()
            },
            policy: config.policy.policy.clone(),
            directory: config.policy.directory_file().map(PathBuf::from),
            scim_token: config.scim.as_ref().map(|scim| scim.token_file.clone()),
            provisioners,
            notifiers,
            settings: Settings {
                grant_attempts: config.workflow.grant_attempts,
                reconcile_every: Some(config.workflow.reconcile_every)
                    .filter(|every| !every.is_zero()),
                backoff: Backoff {
                    initial: config.workflow.retry_initial,
                    max: config.workflow.retry_max,
                },
                routing: Routing {
                    routes: notifications
                        .routes
                        .iter()
                        .map(|route| Route {
                            events: route.events.clone(),
                            min_priority: route.min_priority,
                            notifier: route.notifier.clone(),
                        })
                        .collect(),
                    notices: Notices {
                        approval_reminder: notifications.approval_reminder,
                        expiring_soon: notifications.expiring_soon,
                        review_due_soon: notifications.review_due_soon,
                    },
                },
                delivery: Delivery {
                    backoff: Backoff {
                        initial: notifications.retry_initial,
                        max: notifications.retry_max,
                    },
                    give_up_after: notifications.give_up_after,
                },
                rate_limits: crate::broker::RateLimits {
                    submit: config.rate_limits.submit,
                    extend: config.rate_limits.extend,
                },
                ..Settings::default()
            },
            shutdown_grace: config.shutdown_grace,
            audit: AuditOptions {
                key: config
                    .audit
                    .key
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("audit.key")),
                checkpoint_every: config.audit.checkpoint_every,
                checkpoint_interval: config.audit.checkpoint_interval,
                witness: config.audit.witness.clone(),
            },
            clock,
        })
    }
}

/// The `ssh` provisioner `config` describes: its CA loaded (refused when open to others).
fn ssh_provisioner(
    config: &crate::config::SshConfig,
    clock: SharedClock,
) -> Result<crate::provision::ssh::SshProvisioner, String> {
    let ca = crate::provision::ssh::ca::UserCa::load(&config.ca_key).map_err(|e| e.to_string())?;
    crate::provision::ssh::SshProvisioner::new(
        crate::provision::ssh::SshSettings {
            ca,
            principals: config.principals.clone(),
            extensions: config.extensions.clone(),
            force_command: config.force_command.clone(),
            source_address: config.source_address.clone(),
            backdate: config.backdate,
            krl: config.krl.clone(),
            on_krl_change: config.on_krl_change.as_ref().map(|hook| Program {
                path: hook.program.clone(),
                args: hook.args.clone(),
                env: Default::default(),
                timeout: std::time::Duration::from_secs(30),
                working_dir: hook.program.parent().map(std::path::Path::to_path_buf),
            }),
        },
        clock,
    )
}

/// The notifiers a configuration names.
fn notifiers(config: &Config) -> Result<Notifiers, BuildError> {
    let mut notifiers = Notifiers::default();
    for (name, notifier) in &config.notifiers {
        let built: Arc<dyn Notifier> = match notifier {
            NotifierConfig::Webhook {
                url,
                format,
                headers,
                headers_file,
                ca,
                timeout,
            } => {
                let mut headers = headers.clone();
                if let Some(file) = headers_file {
                    headers.extend(crate::notify::read_headers_file(file).map_err(|error| {
                        BuildError::Config(format!("notifiers.{name}.headers_file: {error}"))
                    })?);
                }
                let headers = &headers;
                let format = match format {
                    WebhookFormat::Json => Format::Json,
                    WebhookFormat::Slack => Format::Slack,
                };
                Arc::new(
                    WebhookNotifier::new(url, format, headers, ca.as_deref(), *timeout).map_err(
                        |error| BuildError::Config(format!("notifiers.{name}: {error}")),
                    )?,
                )
            }
            NotifierConfig::Exec {
                program,
                args,
                env,
                timeout,
                working_dir,
            } => Arc::new(ExecNotifier::new(Program {
                path: program.clone(),
                args: args.clone(),
                env: env.clone(),
                timeout: *timeout,
                working_dir: Some(working_dir.clone()),
            })),
            NotifierConfig::File { path } => Arc::new(FileNotifier::new(path.clone())),
        };
        notifiers.insert(name.clone(), built);
    }
    Ok(notifiers)
}
