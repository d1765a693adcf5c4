//! `elevated serve`: build the daemon from dev mode or a configuration, bind, recover, report
//! ready to the service manager, then serve until SIGTERM, reloading at SIGHUP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind};

use super::CommandError;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::dev;
use crate::reload::Reloader;
use crate::server::{Options, Server};
use crate::service::preflight::{self, Mode};
use crate::service::{Notifier, watchdog};

/// Completes at SIGTERM (registered before the daemon reports ready, so that the default
/// action never kills it) or SIGINT.
async fn shutdown_signal(mut terminate: Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Re-reads everything `SIGHUP` reloads. Returns what could not be reloaded (the old stays in
/// force), one line each.
async fn on_reload(reloader: &Reloader) -> Vec<String> {
    let mut problems = Vec::new();
    match reloader.reload_tls() {
        Ok(()) => tracing::info!("reloaded the TLS certificate, key and CA"),
        Err(error) => {
            tracing::error!(%error, "TLS reload failed; the previous certificate, key and CA stay in force");
            problems.push(format!("TLS: {error}"));
        }
    }
    // Refusals are logged and audited by the broker.
    match reloader.reload_rules().await {
        Ok(reloaded) => tracing::info!(
            policy = %reloaded.policy_version,
            directory = %reloaded.directory_version,
            changed = reloaded.changed,
            revoked = reloaded.enforced.revoked.len(),
            cancelled = reloaded.enforced.cancelled.len(),
            flagged = reloaded.enforced.flagged.len(),
            "reloaded the policy and directory"
        ),
        Err(error) => problems.push(format!("policy and directory: {error}")),
    }
    problems
}

/// Runs [`on_reload`] at every `SIGHUP`, telling the service manager.
async fn reload_on_hangup(
    mut hangup: Signal,
    reloader: Reloader,
    notifier: Notifier,
    serving: String,
) {
    while hangup.recv().await.is_some() {
        notifier.reloading("reloading");
        let problems = on_reload(&reloader).await;
        let status = if problems.is_empty() {
            format!("{serving}; reloaded")
        } else {
            format!(
                "{serving}; reload failed, previous files in force: {}",
                problems.join("; ")
            )
        };
        notifier.ready(&status);
    }
}

/// Tells the operator where the daemon listens. Written to stdout without panicking: a closed
/// stdout (a supervisor that stopped reading) must not take the daemon down.
fn announce(address: SocketAddr, metrics: Option<SocketAddr>, state_dir: Option<&Path>) {
    use std::io::Write;
    let endpoint = format!("https://{address}");
    let metrics = metrics.map_or(String::new(), |metrics| {
        format!("metrics on http://{metrics}/metrics\n")
    });
    let text = match state_dir {
        None if metrics.is_empty() => format!("elevated: listening on {endpoint}\n"),
        None => format!("elevated: listening on {endpoint}\nelevated: {metrics}"),
        Some(state_dir) => {
            let certs = state_dir.join("certs");
            format!(
                "elevated dev mode: listening on {endpoint}\n\
                 {metrics}\
                 state, certificates, policy and directory are in {state}\n\n\
                 Point the CLI at it (demo identities: {identities}):\n  \
                 export ELEVATE_ENDPOINT={endpoint} ELEVATE_CERT_DIR={certs}\n  \
                 elevate --as engineer request staging-db --for 30m --reason 'check replication'\n  \
                 elevate --as engineer request prod-db-read --for 45m --reason 'INC-4411 slow queries' --wait\n  \
                 elevate --as manager pending\n  \
                 elevate --as manager approve req-2\n  \
                 cat {state}/targets/prod-db-read\n  \
                 elevate --as oncall request prod-ssh --for 30m --reason 'INC-4412 disk full' --ssh-key ~/.ssh/id_ed25519.pub\n  \
                 ssh -i ~/.ssh/id_ed25519 oncall@HOST   # a host whose sshd trusts {state}/ssh/user_ca.pub, RevokedKeys {state}/ssh/revoked.krl\n",
                state = state_dir.display(),
                identities = dev::IDENTITIES.join(", "),
                certs = certs.display(),
            )
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

pub(super) async fn serve(
    dev_mode: bool,
    state_dir: PathBuf,
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    allow_root: bool,
) -> Result<(), CommandError> {
    let notifier = Notifier::from_env().unwrap_or_else(|error| {
        tracing::warn!(%error, "not notifying the service manager");
        Notifier::disabled()
    });
    // Before anything can report ready: these signals must never meet their default action.
    let watch = |kind, signal| {
        tokio::signal::unix::signal(kind).map_err(|source| CommandError::Signal { signal, source })
    };
    let terminate = watch(SignalKind::terminate(), "SIGTERM")?;
    let hangup = watch(SignalKind::hangup(), "SIGHUP")?;
    let clock = Arc::new(SystemClock);
    let as_root = preflight::running_as_root();
    let (options, address, metrics_address, state_dir, scim_address) = if dev_mode {
        if let Some(warning) = preflight::check_root(as_root, Mode::Dev, allow_root)? {
            tracing::warn!("{warning}");
        }
        let layout = dev::prepare(&state_dir).map_err(CommandError::Dev)?;
        let address = listen.unwrap_or(dev::DEFAULT_LISTEN);
        let metrics = metrics_listen.unwrap_or(dev::DEFAULT_METRICS_LISTEN);
        let root = std::fs::canonicalize(&layout.root).unwrap_or(layout.root.clone());
        (
            dev::options(&layout, clock),
            address,
            Some(metrics),
            Some(root),
            None,
        )
    } else {
        let file = config
            .ok_or_else(|| CommandError::Usage("--config is required without --dev".into()))?;
        let config = Config::load(&file)?;
        let allowed = allow_root || config.allow_root;
        if let Some(warning) = preflight::check_root(as_root, Mode::Config, allowed)? {
            tracing::warn!("{warning}");
        }
        preflight::check_private_files(&config)?;
        let address = listen.unwrap_or(config.listen);
        let metrics = metrics_listen.or(config.metrics_listen);
        if let Some(cluster) = config.cluster.clone() {
            return serve_node(
                &config,
                cluster,
                clock,
                (address, metrics),
                (terminate, hangup),
                notifier,
            )
            .await;
        }
        (
            Options::from_config(&config, clock)?,
            address,
            metrics,
            None,
            config.scim.as_ref().map(|scim| scim.listen),
        )
    };
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| CommandError::Listen {
            address,
            metrics: false,
            source,
        })?;
    let address = listener.local_addr()?;
    let metrics_listener = match metrics_address {
        Some(metrics) => {
            Some(
                TcpListener::bind(metrics)
                    .await
                    .map_err(|source| CommandError::Listen {
                        address: metrics,
                        metrics: true,
                        source,
                    })?,
            )
        }
        None => None,
    };
    let metrics_address = match &metrics_listener {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    let scim_listener = match scim_address {
        Some(scim) => Some(TcpListener::bind(scim).await.map_err(|source| {
            CommandError::Failed(format!("scim.listen: cannot listen on {scim}: {source}"))
        })?),
        None => None,
    };
    let scim_address = match &scim_listener {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    let mut server = Server::build(options).await?;
    if let Some(metrics_listener) = metrics_listener {
        server = server.with_metrics(metrics_listener);
    }
    if let Some(scim_listener) = scim_listener {
        server = server.with_scim(scim_listener)?;
    }
    if let Some(scim) = scim_address {
        println!(
            "elevated: SCIM on https://{scim}{}",
            crate::scim::http::PREFIX
        );
    }
    let recovery = server.recovery();
    if let Some(interval) = watchdog::interval_from_env() {
        let expiry = server.expiry().clone();
        watchdog::spawn(notifier.clone(), interval, move || {
            let expiry = expiry.clone();
            async move { expiry.is_running().await }
        });
    }
    tracing::info!(
        overdue = recovery.overdue,
        scheduled = recovery.scheduled,
        %address,
        "ready"
    );
    announce(address, metrics_address, state_dir.as_deref());
    let serving = format!("serving on {address}");
    notifier.ready(&format!(
        "{serving}; recovery revoked or retried {} overdue, scheduled {}",
        recovery.overdue, recovery.scheduled
    ));
    tokio::spawn(reload_on_hangup(
        hangup,
        server.reloader(),
        notifier.clone(),
        serving,
    ));
    let shutdown = async move {
        shutdown_signal(terminate).await;
        notifier.stopping("stopping: draining calls, grants and revokes");
    };
    server.run(listener, shutdown).await?;
    Ok(())
}

/// Serves as one node of several on a PostgreSQL store ([`crate::server::node`]).
async fn serve_node(
    config: &Config,
    cluster: crate::config::ClusterConfig,
    clock: Arc<SystemClock>,
    (address, metrics): (SocketAddr, Option<SocketAddr>),
    (terminate, mut hangup): (Signal, Signal),
    notifier: Notifier,
) -> Result<(), CommandError> {
    let crate::store::Location::Postgres(target) =
        crate::store::Location::from_config(&config.store)
            .map_err(|error| CommandError::Failed(format!("store.{error}")))?
    else {
        return Err(CommandError::Failed(
            "cluster: several nodes share a PostgreSQL store".into(),
        ));
    };
    let bind = |address: SocketAddr, metrics: bool| {
        std::net::TcpListener::bind(address).map_err(|source| CommandError::Listen {
            address,
            metrics,
            source,
        })
    };
    let listener = bind(address, false)?;
    let address = listener.local_addr()?;
    let metrics_listener = metrics.map(|metrics| bind(metrics, true)).transpose()?;
    let scim_listener = match &config.scim {
        Some(scim) => Some(std::net::TcpListener::bind(scim.listen).map_err(|source| {
            CommandError::Failed(format!(
                "scim.listen: cannot listen on {}: {source}",
                scim.listen
            ))
        })?),
        None => None,
    };
    let leadership = crate::cluster::Leadership::new(
        cluster.node.clone(),
        cluster.advertise.clone(),
        cluster.lease,
        *target,
    );
    announce(
        address,
        metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
        None,
    );
    let stopping = {
        let notifier = notifier.clone();
        async move {
            shutdown_signal(terminate).await;
            notifier.stopping("stopping: draining calls, grants and revokes");
        }
    };
    // SIGHUP reloads what the leader runs with; a standby reads the files when it takes over.
    let (reloader, leading) = tokio::sync::watch::channel(None::<Reloader>);
    tokio::spawn({
        let notifier = notifier.clone();
        async move {
            while hangup.recv().await.is_some() {
                let current = leading.borrow().clone();
                let Some(reloader) = current else {
                    tracing::info!(
                        "standing by: the files are read again when this node takes over"
                    );
                    continue;
                };
                notifier.reloading("reloading");
                let problems = on_reload(&reloader).await;
                notifier.ready(&if problems.is_empty() {
                    "leading; reloaded".to_owned()
                } else {
                    format!(
                        "leading; reload failed, previous files in force: {}",
                        problems.join("; ")
                    )
                });
            }
        }
    });
    crate::server::node::run(
        crate::server::node::Node {
            config,
            leadership,
            clock,
            listener,
            metrics: metrics_listener,
            scim: scim_listener,
        },
        stopping,
        move |status| notifier.ready(status),
        &reloader,
    )
    .await
    .map_err(|error| CommandError::Failed(crate::elevated::chain(&error)))
}
