//! One node of several on a PostgreSQL store: it stands by until it takes the leadership,
//! then builds and runs the whole daemon (recovery first: the wheel rebuilt from the deadlines,
//! overdue leases revoked, recorded grants, revokes and notifications resumed) with its store
//! and provisioners fenced by that leadership, until it is deposed or asked to stop — and
//! then stands by again. The gRPC address stays the same socket throughout.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{BuildError, Options, ServeError, Server};
use crate::clock::SharedClock;
use crate::cluster::{Fenced, Leadership};
use crate::config::Config;
use crate::grpc;
use crate::metrics::Metrics;
use crate::provision::Provisioner;
use crate::tls::LiveTls;
use crate::tls::revocation::Revocations;

/// One node: its configuration, its part in the leadership, its clock and its listeners (the
/// same sockets whether it leads or stands by).
#[derive(Debug)]
pub struct Node<'a> {
    /// The configuration (with a `[cluster]` section).
    pub config: &'a Config,
    /// This node's leadership.
    pub leadership: Leadership,
    /// The clock.
    pub clock: SharedClock,
    /// Where gRPC is served.
    pub listener: std::net::TcpListener,
    /// Where metrics are served, if anywhere.
    pub metrics: Option<std::net::TcpListener>,
    /// Where SCIM is served, if anywhere (a standby answers 503 naming the leader).
    pub scim: Option<std::net::TcpListener>,
}

/// Why a node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The daemon could not be built from the configuration.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The listener could not be shared between the standby and the leader.
    #[error("the gRPC listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// Runs a node of `config` (which has a `[cluster]` section) on `listener` until `shutdown`
/// completes. `ready` is told each time the node starts leading or standing by, and
/// `reloader` holds what `SIGHUP` reloads while it leads (nothing while it stands by: a node
/// reads the files afresh when it takes over).
pub async fn run(
    node: Node<'_>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl Fn(&str) + Send + Sync,
    reloader: &tokio::sync::watch::Sender<Option<crate::Reloader>>,
) -> Result<(), NodeError> {
    let Node {
        config,
        leadership,
        clock,
        listener,
        metrics,
        scim,
    } = node;
    listener.set_nonblocking(true)?;
    if let Some(metrics) = &metrics {
        metrics.set_nonblocking(true)?;
    }
    if let Some(scim) = &scim {
        scim.set_nonblocking(true)?;
    }
    let stopping = CancellationToken::new();
    tokio::spawn({
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.cancel();
        }
    });
    // Checked once, so that a broken file stops the node before it stands by.
    Options::from_config(config, clock.clone())?;
    // What a standby reports: its part in the cluster (the leader reports everything).
    let standby_metrics = Metrics::new();
    standby_metrics.watch_cluster(leadership.clone());
    loop {
        // Standing by.
        let admission = standby_admission(config)?;
        let stop_standby = CancellationToken::new();
        let standby = tokio::spawn(grpc::standby::serve(
            tokio::net::TcpListener::from_std(listener.try_clone()?)?,
            admission,
            leadership.leader(),
            stop_standby.clone(),
        ));
        let standby_scrapes = match &metrics {
            Some(metrics) => Some(tokio::spawn(crate::metrics::http::serve(
                tokio::net::TcpListener::from_std(metrics.try_clone()?)?,
                standby_metrics.clone(),
                None,
                stop_standby.clone(),
            ))),
            None => None,
        };
        let standby_scim = match &scim {
            Some(scim) => {
                let tls = LiveTls::load(config.tls.clone()).map_err(BuildError::from)?;
                let file = config.scim.as_ref().map(|scim| scim.token_file.clone());
                let token = crate::scim::Token::load(&file.unwrap_or_default())
                    .map_err(|error| BuildError::Config(format!("scim.token_file: {error}")))?;
                Some(tokio::spawn(crate::scim::http::serve(
                    tokio::net::TcpListener::from_std(scim.try_clone()?)?,
                    tls,
                    Arc::new(token),
                    crate::scim::http::Role::Standby(leadership.leader()),
                    stop_standby.clone(),
                )))
            }
            None => None,
        };
        ready(&format!("standing by as node {}", leadership.node()));
        let epoch = tokio::select! {
            epoch = leadership.campaign() => Some(epoch),
            () = stopping.cancelled() => None,
        };
        stop_standby.cancel();
        if let Ok(Err(error)) = standby.await {
            tracing::error!(%error, "the standby listener failed");
        }
        if let Some(scrapes) = standby_scrapes {
            let _ = scrapes.await;
        }
        if let Some(standby_scim) = standby_scim {
            let _ = standby_scim.await;
        }
        let Some(epoch) = epoch else {
            return Ok(());
        };

        // Leading.
        let holding = tokio::spawn({
            let leadership = leadership.clone();
            async move { leadership.hold(epoch).await }
        });
        let mut options = Options::from_config(config, clock.clone())?;
        if let crate::store::Location::Postgres(target) = options.store {
            // The store's sessions are named after the node.
            options.store = crate::store::Location::Postgres(Box::new(
                target.named(&format!("elevated-{}", leadership.node())),
            ));
        }
        options.store_options.fence = Some(Arc::new(leadership.clone()));
        options.provisioners = options
            .provisioners
            .map(|inner| Arc::new(Fenced::new(inner, leadership.clone())) as Arc<dyn Provisioner>);
        let server = match Server::build(options).await {
            Ok(server) => server.in_cluster(leadership.clone()),
            Err(error) => {
                tracing::error!(%error, epoch, "taking over failed; standing by again");
                leadership.stand_down();
                let _ = holding.await;
                continue;
            }
        };
        let server = match &metrics {
            Some(metrics) => {
                server.with_metrics(tokio::net::TcpListener::from_std(metrics.try_clone()?)?)
            }
            None => server,
        };
        let server = match &scim {
            Some(scim) => {
                server.with_scim(tokio::net::TcpListener::from_std(scim.try_clone()?)?)?
            }
            None => server,
        };
        let recovery = server.recovery();
        reloader.send_replace(Some(server.reloader()));
        tracing::info!(
            epoch,
            overdue = recovery.overdue,
            scheduled = recovery.scheduled,
            "took over: serving as the leader"
        );
        ready(&format!(
            "leading in epoch {epoch}; recovery revoked or retried {} overdue, scheduled {}",
            recovery.overdue, recovery.scheduled
        ));
        let ended = {
            let (leadership, stopping) = (leadership.clone(), stopping.clone());
            async move {
                tokio::select! {
                    () = leadership.deposed_from(epoch) => {}
                    () = stopping.cancelled() => {}
                }
            }
        };
        let served = server
            .run(
                tokio::net::TcpListener::from_std(listener.try_clone()?)?,
                ended,
            )
            .await;
        reloader.send_replace(None);
        if stopping.is_cancelled() {
            // Stepping down at once: a standby takes over without waiting for the lease.
            leadership.release(epoch).await;
            holding.abort();
            served?;
            return Ok(());
        }
        leadership.stand_down();
        let _ = holding.await;
        if let Err(error) = served {
            tracing::error!(%error, "serving as the leader failed");
        }
    }
}

/// The mutual TLS admission of a standby: the same certificates, CRLs and caps as the
/// leader's; refusals are logged (a standby writes nothing to the audit trail).
fn standby_admission(config: &Config) -> Result<grpc::transport::Admission, BuildError> {
    let tls = LiveTls::load(config.tls.clone())?;
    let revocations = Revocations::open(&config.tls)?;
    let files = tls.files();
    Ok(grpc::transport::Admission {
        trust_domain: config.trust_domain.clone(),
        identity: files.identity,
        revocations,
        gate: None,
        metrics: Metrics::new(),
        handshakes: crate::crowd::Caps {
            total: files.max_handshakes,
            per_address: files.max_handshakes_per_address,
        },
        tls,
    })
}
