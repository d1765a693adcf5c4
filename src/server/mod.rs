//! Build, then run. [`Server::build`] surfaces every failure that can be found before serving
//! (unreadable certificates, a broken policy, a resource naming an unknown provisioner, a store
//! that will not open) and recovers the timer wheel, revoking leases that expired while the
//! daemon was down. [`Server::run`] serves on an already-bound listener until the shutdown
//! future completes, then drains in-flight calls and effects within the grace period and
//! closes the store. Metrics are served on a second listener when one is given
//! ([`Server::with_metrics`]). What it is built from, and how a configuration becomes that, is
//! [`options`].

pub mod node;
mod options;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audit::Actor;
use crate::audit::key::{AuditKey, KeyError};
use crate::broker::{Broker, BrokerError, CommitFanout, Gate, Parts, Recovery, RuleFiles, Trail};
use crate::expiry::Expiry;
use crate::grpc;
use crate::metrics::Metrics;
use crate::metrics::rpc::RpcLayer;
use crate::notify::outbox::{self, Wake};
use crate::policy::{Live, LoadError, Snapshot};
use crate::reload::Reloader;
use crate::store::{Signing, Store, Witness};
use crate::tls::revocation::{RevocationError, Revocations};
use crate::tls::{LiveTls, TlsError};

pub use options::{AuditOptions, Options};

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
    /// This node's leadership, when it is one of several.
    cluster: Option<crate::cluster::Leadership>,
    /// The SCIM operations and the token they need, when the directory of record is SCIM's.
    scim: Option<(crate::scim::Scim, Arc<crate::scim::Token>)>,
    /// Where SCIM is served, if anywhere.
    scim_listener: Option<TcpListener>,
}

impl Server {
    /// Loads and checks everything, opens the store and recovers the timer wheel.
    pub async fn build(options: Options) -> Result<Self, BuildError> {
        let tls = LiveTls::load(options.tls.clone())?;
        let revocations = Revocations::open(&options.tls)?;
        let snapshot = match &options.directory {
            Some(directory) => Snapshot::load(&options.policy, directory)?,
            // The directory of record is read from the store once it is open.
            None => Snapshot {
                policy: crate::policy::Policy::load(&options.policy)?,
                directory: crate::policy::Directory::empty(""),
            },
        };
        let scim_token = match &options.scim_token {
            Some(file) => Some(Arc::new(crate::scim::Token::load(file).map_err(
                |error| BuildError::Config(format!("scim.token_file: {error}")),
            )?)),
            None => None,
        };
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
        let store = Store::open_at(
            &options.store,
            store_options,
            Arc::new(CommitFanout {
                expiry: expiry.clone(),
                changes: changes.clone(),
                outbox: wake.clone(),
                observer: Arc::new(metrics.clone()),
            }),
        )
        .await
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
        let scim = match options.directory {
            Some(_) => None,
            None => {
                let records = store
                    .read(|reader| reader.directory())
                    .await
                    .map_err(BrokerError::from)?;
                let registry = crate::scim::Registry::load(records).map_err(BuildError::Config)?;
                let directory = registry.directory().map_err(|error| {
                    BuildError::Config(format!("directory of record: {}", error.detail))
                })?;
                tracing::info!(
                    users = registry.all(crate::store::DirectoryKind::User).len(),
                    groups = registry.all(crate::store::DirectoryKind::Group).len(),
                    version = %directory.version(),
                    "the directory of record is the SCIM one"
                );
                broker.use_directory(directory);
                Some(crate::scim::Scim::new(broker.clone(), registry))
            }
        };
        let recovery = broker.recover().await?;
        trail
            .record_start(&recovery, &broker.rules().current())
            .await?;
        // The directory may have changed while the daemon was down: leavers and movers lose
        // their access now, not at the next reload.
        broker.enforce(Actor::System).await?.log("at start");
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
            cluster: None,
            scim: scim.zip(scim_token),
            scim_listener: None,
        })
    }

    /// Also serves Prometheus metrics on `listener` (plain HTTP, `GET /metrics`), from when
    /// [`Server::run`] starts until shutdown begins.
    pub fn with_metrics(mut self, listener: TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// Also serves the SCIM endpoint on `listener` (HTTPS, the server certificate), from when
    /// [`Server::run`] starts until shutdown begins. Fails unless the directory of record is
    /// the SCIM one.
    pub fn with_scim(mut self, listener: TcpListener) -> Result<Self, BuildError> {
        if self.scim.is_none() {
            return Err(BuildError::Config(
                "the SCIM endpoint needs policy.directory = \"scim\" and scim.token_file".into(),
            ));
        }
        self.scim_listener = Some(listener);
        Ok(self)
    }

    /// The SCIM operations, when the directory of record is SCIM's.
    pub fn scim(&self) -> Option<&crate::scim::Scim> {
        self.scim.as_ref().map(|(scim, _)| scim)
    }

    /// Serves as the leader of a cluster: `elevate admin cluster` shows its nodes.
    pub fn in_cluster(mut self, leadership: crate::cluster::Leadership) -> Self {
        self.metrics.watch_cluster(leadership.clone());
        self.cluster = Some(leadership);
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
                Some(self.store.clone()),
                metrics_stop.clone(),
            ))
        });
        let scim = match (self.scim_listener.take(), &self.scim) {
            (Some(listener), Some((scim, token))) => Some(tokio::spawn(crate::scim::http::serve(
                listener,
                self.tls.clone(),
                token.clone(),
                crate::scim::http::Role::Serving {
                    scim: scim.clone(),
                    trail: self.trail.clone(),
                },
                metrics_stop.clone(),
            ))),
            _ => None,
        };
        let files = self.tls.files();
        let admission = grpc::transport::Admission {
            tls: self.tls.clone(),
            trust_domain: self.trust_domain.clone(),
            identity: files.identity,
            revocations: self.revocations.clone(),
            gate: Some(self.gate.clone()),
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
        let admit = grpc::admit::layer(admission.clone());
        let incoming = grpc::transport::incoming(listener, admission, accepting.clone());
        let (routes, health) =
            grpc::routes(&self.broker, &self.gate, &self.trail, self.cluster.as_ref());
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
        if let Some(scim) = scim {
            let _ = scim.await;
        }
        let left = deadline.get().map_or(grace, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        self.broker.shutdown(left).await;
        tracing::info!("stopped");
        served
    }
}
