//! `elevated`: the elevate daemon. Parses arguments, sets up logging, builds, runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;

use elevate::audit::key::{AuditKey, PublicKey};
use elevate::clock::SystemClock;
use elevate::config::Config;
use elevate::server::{Options, Server};
use elevate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};
use elevate::{dev, policy};

/// The elevate just-in-time privileged access broker.
#[derive(Debug, Parser)]
#[command(name = "elevated", version)]
struct Args {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC over mutual TLS.
    Serve {
        /// Dev mode: generate certificates, a demo policy and directory in --state-dir, and serve
        /// from there.
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        dev: bool,
        /// Dev-mode state directory.
        #[arg(long, default_value = ".elevate-dev")]
        state_dir: PathBuf,
        /// Configuration file (see examples/elevated.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (overrides the configuration; dev mode default 127.0.0.1:7443).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address for Prometheus metrics over plain HTTP (overrides metrics_listen of the
        /// configuration; dev mode default 127.0.0.1:7444).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Make certificates for the daemon and its users.
    Certs {
        #[command(subcommand)]
        command: Certs,
    },
    /// The audit key and offline verification of a store.
    Audit {
        #[command(subcommand)]
        command: Audit,
    },
    /// Validate a configuration with its policy and directory, then exit.
    CheckConfig {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Audit {
    /// Print the public half of the audit key, for auditors to keep.
    Pubkey {
        /// The configuration whose audit key to show.
        #[arg(long, conflicts_with_all = ["dev", "key"])]
        config: Option<PathBuf>,
        /// The dev-mode audit key (in --state-dir).
        #[arg(long, conflicts_with = "key")]
        dev: bool,
        /// Dev-mode state directory.
        #[arg(long, default_value = ".elevate-dev")]
        state_dir: PathBuf,
        /// The key file itself.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Verify the audit trail of a store file offline (stop the daemon, or use a copy).
    Verify {
        /// The redb store file.
        #[arg(long)]
        db: PathBuf,
        /// Check signatures with this public key (ed25519:… or a file holding it) instead of
        /// the key the store recorded on its first start.
        #[arg(long)]
        pubkey: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum Certs {
    /// Write ca.crt, ca.key, server.crt and server.key into DIR.
    Init {
        /// Where to write.
        #[arg(long)]
        dir: PathBuf,
        /// More names the server certificate is valid for (besides localhost and 127.0.0.1).
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Write NAME.crt and NAME.key for principal NAME, signed by the CA in DIR.
    Issue {
        /// The directory holding ca.crt and ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// The principal.
        #[arg(long)]
        name: String,
        /// Trust domain of the SPIFFE id in the certificate.
        #[arg(long, default_value = DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Reloads the policy and directory on every SIGHUP. A file that fails validation is logged
/// and audited, and the files loaded before stay in force.
fn reload_on_hangup(broker: elevate::broker::Broker) {
    tokio::spawn(async move {
        let mut hangups = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGHUP; reload with `elevate admin reload`");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the policy and directory");
            match broker.reload(elevate::audit::Actor::System).await {
                Ok(reloaded) => tracing::info!(
                    policy = %reloaded.policy_version,
                    directory = %reloaded.directory_version,
                    revoked = reloaded.enforced.revoked.len(),
                    cancelled = reloaded.enforced.cancelled.len(),
                    flagged = reloaded.enforced.flagged.len(),
                    "reload applied"
                ),
                Err(error) => tracing::error!(%error, "reload failed"),
            }
        }
    });
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
                 cat {state}/targets/prod-db-read\n",
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

async fn serve(
    dev_mode: bool,
    state_dir: PathBuf,
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let clock = Arc::new(SystemClock);
    let (options, address, metrics_address, state_dir) = if dev_mode {
        let layout = dev::prepare(&state_dir).context("preparing the dev-mode state directory")?;
        let address = match listen {
            Some(address) => address,
            None => dev::DEFAULT_LISTEN.parse()?,
        };
        let metrics = match metrics_listen {
            Some(address) => address,
            None => dev::DEFAULT_METRICS_LISTEN.parse()?,
        };
        let root = std::fs::canonicalize(&layout.root).unwrap_or(layout.root.clone());
        (
            dev::options(&layout, clock),
            address,
            Some(metrics),
            Some(root),
        )
    } else {
        let file = config.context("--config is required without --dev")?;
        let config = Config::load(&file)?;
        let address = listen.unwrap_or(config.listen);
        let metrics = metrics_listen.or(config.metrics_listen);
        (
            Options::from_config(&config, clock)?,
            address,
            metrics,
            None,
        )
    };
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let address = listener.local_addr()?;
    let metrics_listener = match metrics_address {
        Some(metrics) => Some(
            TcpListener::bind(metrics)
                .await
                .with_context(|| format!("cannot listen for metrics on {metrics}"))?,
        ),
        None => None,
    };
    let metrics_address = match &metrics_listener {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    let mut server = Server::build(options).await?;
    if let Some(metrics_listener) = metrics_listener {
        server = server.with_metrics(metrics_listener);
    }
    let recovery = server.recovery();
    tracing::info!(
        overdue = recovery.overdue,
        scheduled = recovery.scheduled,
        %address,
        "ready"
    );
    announce(address, metrics_address, state_dir.as_deref());
    reload_on_hangup(server.broker().clone());
    server.run(listener, shutdown_signal()).await?;
    Ok(())
}

fn audit_pubkey(
    config: Option<PathBuf>,
    dev_mode: bool,
    state_dir: &Path,
    key: Option<PathBuf>,
) -> anyhow::Result<()> {
    let file = match (config, key) {
        (_, Some(key)) => key,
        (Some(config), None) => {
            let config = Config::load(&config)?;
            Options::from_config(&config, Arc::new(SystemClock))?
                .audit
                .key
        }
        (None, None) if dev_mode => dev::Layout::new(state_dir).audit_key,
        (None, None) => anyhow::bail!("name the key: --config FILE, --dev or --key FILE"),
    };
    anyhow::ensure!(
        file.exists(),
        "no audit key at {} yet: the daemon generates it on its first start",
        file.display()
    );
    let key = AuditKey::load(&file)?;
    println!("{}", key.public());
    Ok(())
}

/// Exit status 1 on any damage, with one line saying where and what.
fn audit_verify(db: &Path, pubkey: Option<String>) -> anyhow::Result<()> {
    let key = match pubkey {
        None => None,
        Some(text) => {
            let text = if Path::new(&text).is_file() {
                std::fs::read_to_string(&text)
                    .with_context(|| format!("cannot read the public key file {text}"))?
            } else {
                text
            };
            Some(text.parse::<PublicKey>()?)
        }
    };
    let verified = elevate::store::offline::verify_store(db, key)
        .map_err(|error| anyhow::anyhow!("{}: verification failed: {error}", db.display()))?;
    println!("{}: intact", db.display());
    println!("  {}", verified.summary);
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

fn check_config(file: &Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    elevate::tls::server_config(&config.tls)?;
    let snapshot = policy::Snapshot::load(&config.policy.policy, &config.policy.directory)?;
    snapshot.check_provisioners(
        &config.policy.policy,
        &config.provisioners.keys().map(String::as_str).collect(),
    )?;
    println!(
        "{}: ok ({} resources, policy {}, directory {})",
        file.display(),
        snapshot.policy.resources().count(),
        snapshot.policy.version(),
        snapshot.directory.version()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let result = match args.command {
        Command::Serve {
            dev,
            state_dir,
            config,
            listen,
            metrics_listen,
        } => serve(dev, state_dir, config, listen, metrics_listen).await,
        Command::Certs {
            command:
                Certs::Init {
                    dir,
                    server_names,
                    force,
                },
        } => issue::init(&dir, &server_names, force)
            .map(|files| files.iter().for_each(|f| println!("wrote {}", f.display())))
            .map_err(Into::into),
        Command::Certs {
            command:
                Certs::Issue {
                    dir,
                    name,
                    trust_domain,
                    days,
                    force,
                },
        } => issue::issue(&dir, &name, &trust_domain, days, force)
            .map(|files| files.iter().for_each(|f| println!("wrote {}", f.display())))
            .map_err(Into::into),
        Command::CheckConfig { config } => check_config(&config),
        Command::Audit {
            command:
                Audit::Pubkey {
                    config,
                    dev,
                    state_dir,
                    key,
                },
        } => audit_pubkey(config, dev, &state_dir, key),
        Command::Audit {
            command: Audit::Verify { db, pubkey },
        } => audit_verify(&db, pubkey),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("elevated: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
