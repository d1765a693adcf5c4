//! Build, then run. [`Server::build`] surfaces every failure that can be found before serving
//! (unreadable certificates, a broken policy, a resource naming an unknown provisioner, a store
//! that will not open) and recovers the timer wheel, revoking leases that expired while the
//! daemon was down. [`Server::run`] serves on an already-bound listener until the shutdown
//! future completes, then drains in-flight calls and effects within the grace period and
//! closes the store. Metrics are served on a second listener when one is given
//! ([`Server::with_metrics`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audit::Actor;
use crate::audit::key::{AuditKey, KeyError};
use crate::broker::{
    Broker, BrokerError, CommitFanout, Gate, Parts, Recovery, RuleFiles, Settings, Trail,
};
use crate::clock::SharedClock;
use crate::config::{Config, NotifierConfig, ProvisionerConfig, WebhookFormat};
use crate::expiry::{Backoff, Expiry};
use crate::grpc;
use crate::metrics::Metrics;
use crate::metrics::rpc::RpcLayer;
use crate::notify::outbox::{self, Delivery, Wake};
use crate::notify::{
    ExecNotifier, FileNotifier, Format, Notices, Notifier, Notifiers, Route, Routing,
    WebhookNotifier,
};
use crate::policy::{Live, LoadError, Snapshot};
use crate::process::Program;
use crate::provision::{ExecProvisioner, FileProvisioner, PostgresProvisioner, Provisioners};
use crate::reload::Reloader;
use crate::store::{Signing, Store, StoreOptions, Witness};
use crate::tls::revocation::{RevocationError, Revocations};
use crate::tls::{LiveTls, TlsError, TlsFiles};

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
    /// The store's file.
    pub store: PathBuf,
    /// Writer batching.
    pub store_options: StoreOptions,
    /// Policy file.
    pub policy: PathBuf,
    /// Directory file.
    pub directory: PathBuf,
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
            store: config.store.path.clone(),
            store_options: StoreOptions {
                max_batch: if config.store.group_commit {
                    StoreOptions::default().max_batch
                } else {
                    1
                },
                signing: None,
            },
            policy: config.policy.policy.clone(),
            directory: config.policy.directory.clone(),
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
                    .unwrap_or_else(|| config.store.path.with_file_name("audit.key")),
                checkpoint_every: config.audit.checkpoint_every,
                checkpoint_interval: config.audit.checkpoint_interval,
                witness: config.audit.witness.clone(),
            },
            clock,
        })
    }
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

/// The daemon could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The policy or directory is invalid.
    #[error(transparent)]
    Policy(#[from] LoadError),
    /// The store would not open or recovery failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A part of the configuration cannot be set up.
    #[error("{0}")]
    Config(String),
    /// The audit key cannot be loaded or made.
    #[error("audit key: {0}")]
    AuditKey(#[from] KeyError),
    /// The deny list or a CRL is unusable.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
}

/// Serving failed.
#[derive(Debug, thiserror::Error)]
#[error("serving failed: {0}")]
pub struct ServeError(#[from] tonic::transport::Error);

/// A built daemon, ready to run: the composition root. It opens the store, starts the timer
/// wheel, the outbox and the workflow's workers, and hands each part what it needs.
pub struct Server {
    /// The workflow (the access, approval, break-glass and admin services hold it).
    broker: Broker,
    /// Who may call (every service and the transport hold it).
    gate: Gate,
    /// The audit trail (the audit service holds only this).
    trail: Trail,
    /// The store (the metrics read its census).
    store: Store,
    /// The timer wheel (the watchdog asks whether it runs).
    expiry: Expiry,
    tls: LiveTls,
    revocations: Revocations,
    trust_domain: String,
    grace: Duration,
    stop: CancellationToken,
    recovery: Recovery,
    metrics: Metrics,
    /// Where metrics are served, if anywhere.
    metrics_listener: Option<TcpListener>,
}

impl Server {
    /// Loads and checks everything, opens the store and recovers the timer wheel.
    pub async fn build(options: Options) -> Result<Self, BuildError> {
        let tls = LiveTls::load(options.tls.clone())?;
        let revocations = Revocations::open(&options.tls)?;
        let snapshot = Snapshot::load(&options.policy, &options.directory)?;
        snapshot
            .check_provisioners(&options.policy, &options.provisioners.names().collect())
            .map_err(LoadError::Invalid)?;
        let (key, generated) = AuditKey::load_or_generate(&options.audit.key)?;
        if generated {
            tracing::info!(file = %options.audit.key.display(), key = %key.public(), "generated the audit key");
        }
        let mut store_options = options.store_options;
        if let Some(witness) = &options.audit.witness
            && !options.notifiers.contains(witness)
        {
            return Err(BuildError::Config(format!(
                "audit.witness: no notifier '{witness}' is configured"
            )));
        }
        store_options.signing = Some(Signing {
            witness: options.audit.witness.clone().map(|notifier| Witness {
                notifier,
                event: crate::notify::Event::witnessing,
            }),
            key: Arc::new(key),
            every: options.audit.checkpoint_every,
        });
        let mut settings = options.settings;
        settings.checkpoint_interval = options.audit.checkpoint_interval;
        settings.rule_files = Some(RuleFiles {
            policy: options.policy.clone(),
            directory: options.directory.clone(),
        });
        let stop = CancellationToken::new();
        let metrics = Metrics::new();
        metrics.watch_revocations(revocations.clone());
        let clock = options.clock;
        let rules = Live::new(snapshot);
        let (expiry, due) = Expiry::spawn(clock.clone(), stop.clone());
        let (changes, _) = tokio::sync::broadcast::channel(4096);
        let wake = Wake::default();
        let audit_key = store_options
            .signing
            .as_ref()
            .map(|signing| signing.key.clone());
        let store = Store::open(
            &options.store,
            store_options,
            Arc::new(CommitFanout {
                expiry: expiry.clone(),
                changes: changes.clone(),
                outbox: wake.clone(),
                observer: Arc::new(metrics.clone()),
            }),
        )
        .map_err(BrokerError::from)?;
        let effects = tokio_util::task::TaskTracker::new();
        outbox::spawn(
            store.clone(),
            options.notifiers,
            clock.clone(),
            settings.delivery,
            wake,
            &effects,
            stop.clone(),
        );
        let closing = CancellationToken::new();
        let trail = Trail::new(store.clone(), clock.clone(), audit_key, closing.clone());
        trail.spawn_checkpoints(settings.checkpoint_interval, stop.clone());
        let reconcile_every = settings.reconcile_every;
        let broker = Broker::new(Parts {
            store: store.clone(),
            trail: trail.clone(),
            rules,
            clock,
            provisioners: options.provisioners,
            expiry: expiry.clone(),
            changes,
            effects,
            closing,
            settings,
        });
        broker.run_timers(due);
        if let Some(every) = reconcile_every {
            broker.spawn_reconciliation(every, stop.clone());
        }
        metrics.watch_rate_limits(broker.rate_refusals());
        let recovery = broker.recover().await?;
        trail
            .record_start(&recovery, &broker.rules().current())
            .await?;
        // The directory may have changed while the daemon was down: leavers and movers lose
        // their access now, not at the next reload.
        let enforced = broker.enforce(Actor::System).await?;
        if enforced != Default::default() {
            tracing::warn!(
                revoked = enforced.revoked.len(),
                cancelled = enforced.cancelled.len(),
                flagged = enforced.flagged.len(),
                voided = enforced.voided.len(),
                failed = enforced.failed.len(),
                "leavers and movers lost their access at start"
            );
            for failure in &enforced.failed {
                tracing::error!(%failure, "a leaver's or mover's request could not be acted on; retried at the next reload or start");
            }
        }
        Ok(Self {
            gate: broker.gate(),
            broker,
            trail,
            store,
            expiry,
            tls,
            revocations,
            trust_domain: options.trust_domain,
            grace: options.shutdown_grace,
            stop,
            recovery,
            metrics,
            metrics_listener: None,
        })
    }

    /// Also serves Prometheus metrics on `listener` (plain HTTP, `GET /metrics`), from when
    /// [`Server::run`] starts until shutdown begins.
    pub fn with_metrics(mut self, listener: TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The workflow behind the server.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The store (for inspection by tools and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The timer wheel (for the watchdog, and inspection by tests).
    pub fn expiry(&self) -> &Expiry {
        &self.expiry
    }

    /// What startup recovery did.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// A handle that re-reads what can change while the daemon serves (for `SIGHUP`).
    pub fn reloader(&self) -> Reloader {
        Reloader::new(self.tls.clone(), self.broker.clone())
    }

    /// Serves on `listener` until `shutdown` completes; then stops accepting, reports not
    /// serving, ends watch streams, lets in-flight calls and grants/revokes finish, stops the
    /// timer and closes the store — all within one grace period.
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let accepting = CancellationToken::new();
        // Stops with the gRPC listener, or when serving failed.
        let metrics_stop = accepting.child_token();
        let metrics = self.metrics_listener.take().map(|metrics_listener| {
            tokio::spawn(crate::metrics::http::serve(
                metrics_listener,
                self.metrics.clone(),
                self.store.clone(),
                metrics_stop.clone(),
            ))
        });
        let files = self.tls.files();
        let admission = grpc::transport::Admission {
            tls: self.tls.clone(),
            trust_domain: self.trust_domain.clone(),
            identity: files.identity,
            revocations: self.revocations.clone(),
            gate: self.gate.clone(),
            metrics: self.metrics.clone(),
            handshakes: crate::crowd::Caps {
                total: files.max_handshakes,
                per_address: files.max_handshakes_per_address,
            },
        };
        let connections = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(files.keepalive_interval))
            .http2_keepalive_timeout(Some(files.keepalive_timeout))
            .max_connection_age(files.max_connection_age)
            .max_connection_age_grace(files.max_connection_age_grace);
        let admit = grpc::admit::AdmitLayer::new(admission.clone());
        let incoming = grpc::transport::incoming(listener, admission, accepting.clone());
        let (routes, health) = grpc::routes(&self.broker, &self.gate, &self.trail);
        let grace = self.grace;
        let deadline = Arc::new(OnceLock::new());
        let stopping = Arc::new(Notify::new());
        let signal = {
            let (stopping, deadline, broker) =
                (stopping.clone(), deadline.clone(), self.broker.clone());
            async move {
                shutdown.await;
                let _ = deadline.set(Instant::now() + grace);
                tracing::info!("shutting down: no new connections");
                accepting.cancel();
                broker.begin_shutdown();
                health.not_serving();
                stopping.notify_one();
            }
        };
        let serve = connections
            .layer(RpcLayer::new(self.metrics.clone()))
            .layer(admit)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(serve);
        let served = tokio::select! {
            served = &mut serve => served.map_err(ServeError::from),
            () = async {
                stopping.notified().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("calls still open after the grace period were dropped");
                Ok(())
            }
        };
        self.stop.cancel();
        metrics_stop.cancel();
        if let Some(metrics) = metrics {
            // It closes its connections within moments.
            let _ = metrics.await;
        }
        let left = deadline.get().map_or(grace, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        self.broker.shutdown(left).await;
        tracing::info!("stopped");
        served
    }
}
