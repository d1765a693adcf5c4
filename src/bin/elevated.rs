//! `elevated`: the elevate daemon. Parses arguments, sets up logging, builds, runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use elevate::audit::key::{AuditKey, PublicKey};
use elevate::clock::{Clock, SystemClock};
use elevate::config::Config;
use elevate::reload::Reloader;
use elevate::server::{Options, Server};
use elevate::service::preflight::{self, Mode};
use elevate::service::{Notifier, watchdog};
use elevate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};
use elevate::tls::revoked::{self, Revoked, Target};
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
        /// Run as root (effective uid 0), which a configured daemon refuses otherwise.
        #[arg(long)]
        allow_root: bool,
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
        /// A witness file (what the `[audit] witness` notifier kept): the store must not be
        /// behind, nor disagree with, any checkpoint in it.
        #[arg(long)]
        witness: Option<PathBuf>,
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
    /// Replace server.crt and server.key in DIR with a new pair signed by the CA there; a
    /// running daemon uses them after SIGHUP (systemctl reload elevated).
    RenewServer {
        /// The directory holding ca.crt and ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// More names the server certificate is valid for (besides localhost and 127.0.0.1).
        #[arg(long = "server-name")]
        server_names: Vec<String>,
    },
    /// Add a client certificate to the deny list DIR/revoked.toml; the daemon refuses it from
    /// its next call on, on every connection. With --crl, also write a CRL of the whole deny
    /// list signed by the CA in DIR (for daemons and tools that read CRLs).
    #[command(group(clap::ArgGroup::new("certificate").required(true).args(["serial", "name"])))]
    Revoke {
        /// The certificate directory.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate's serial number, as `openssl x509 -noout -serial` prints it.
        #[arg(long)]
        serial: Option<String>,
        /// The principal whose current certificate (DIR/NAME.crt) to revoke.
        #[arg(long)]
        name: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
        /// Also write a CRL (PEM) listing every certificate of the deny list to this file,
        /// signed with DIR/ca.key.
        #[arg(long)]
        crl: Option<PathBuf>,
        /// How long the CRL is current: its nextUpdate is this far after now.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        crl_valid: Duration,
    },
    /// Print the deny list DIR/revoked.toml.
    ListRevoked {
        /// The certificate directory.
        #[arg(long)]
        dir: PathBuf,
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
    allow_root: bool,
) -> anyhow::Result<()> {
    let notifier = Notifier::from_env().unwrap_or_else(|error| {
        tracing::warn!(%error, "not notifying the service manager");
        Notifier::disabled()
    });
    // Before anything can report ready: these signals must never meet their default action.
    let terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let clock = Arc::new(SystemClock);
    let as_root = preflight::running_as_root();
    let (options, address, metrics_address, state_dir) = if dev_mode {
        if let Some(warning) = preflight::check_root(as_root, Mode::Dev, allow_root)? {
            tracing::warn!("{warning}");
        }
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
        let allowed = allow_root || config.allow_root;
        if let Some(warning) = preflight::check_root(as_root, Mode::Config, allowed)? {
            tracing::warn!("{warning}");
        }
        preflight::check_private_files(&config)?;
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
    if let Some(interval) = watchdog::interval_from_env() {
        let expiry = server.broker().expiry().clone();
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
fn audit_verify(db: &Path, pubkey: Option<String>, witness: Option<&Path>) -> anyhow::Result<()> {
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
    let witnessed = witness
        .map(|witness| {
            let text = std::fs::read(witness)
                .with_context(|| format!("cannot read {}", witness.display()))?;
            elevate::audit::witness::read(&text)
                .map_err(|error| anyhow::anyhow!("{}: {error}", witness.display()))
        })
        .transpose()?;
    let wanted = witnessed
        .as_ref()
        .map(elevate::audit::witness::entries)
        .unwrap_or_default();
    let verified = elevate::store::offline::verify_store_keeping(db, key, &wanted)
        .map_err(|error| anyhow::anyhow!("{}: verification failed: {error}", db.display()))?;
    let agreement = witnessed
        .map(|witnessed| {
            elevate::audit::witness::compare(
                &witnessed,
                &verified.key,
                &verified.hashes,
                verified.summary.last,
                true,
            )
            .map_err(|disagreement| {
                anyhow::anyhow!("{}: verification failed: {disagreement}", db.display())
            })
        })
        .transpose()?;
    println!("{}: intact", db.display());
    if let Some(agreed) = &agreement {
        println!("  witness: {agreed}");
    }
    println!("  {}", verified.summary);
    if verified.repaired {
        println!(
            "  the file was not closed cleanly (the daemon crashed or was killed): a repaired copy was verified; the file is unchanged"
        );
    }
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

/// Everything that can be checked without serving, every problem reported.
fn check_config(file: &Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    let mut problems = Vec::new();
    let private = preflight::check_private_files(&config);
    if let Err(exposed) = &private {
        problems.extend(exposed.0.iter().cloned());
    }
    if let Err(error) = elevate::tls::revocation::Revocations::open(&config.tls) {
        problems.push(format!("tls: {error}"));
    }
    // These read the private files again; their permission problems are reported above.
    if private.is_ok() {
        if let Err(error) = elevate::tls::server_config(&config.tls) {
            problems.push(format!("tls: {error}"));
        }
        if let Err(error) = Options::from_config(&config, Arc::new(SystemClock)) {
            problems.push(error.to_string());
        }
    }
    let snapshot = match policy::Snapshot::load(&config.policy.policy, &config.policy.directory) {
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
        ([one], _) => anyhow::bail!("{one}"),
        (many, _) => anyhow::bail!(
            "{}: {} problems:\n  {}",
            file.display(),
            many.len(),
            many.join("\n  ")
        ),
    }
}

/// Adds a certificate to the deny list and says what happened.
fn certs_revoke(
    dir: &Path,
    serial: Option<String>,
    name: Option<String>,
    reason: &str,
) -> anyhow::Result<()> {
    let target = match (serial, name) {
        (Some(serial), _) => Target::Serial(serial.parse()?),
        (None, Some(name)) => Target::Name(name),
        (None, None) => anyhow::bail!("name the certificate: --serial S or --name NAME"),
    };
    let file = dir.join(revoked::FILE_NAME);
    let shown = |entry: &revoked::Revocation| {
        if entry.name.is_empty() {
            entry.serial.to_string()
        } else {
            format!("{} ({})", entry.serial, entry.name)
        }
    };
    match revoked::revoke(dir, &target, reason, SystemClock.now())? {
        Revoked::Added(entry) => println!(
            "revoked {} in {}; the daemon refuses it from its next call on",
            shown(&entry),
            file.display()
        ),
        Revoked::Already(entry) => println!(
            "{} was revoked already, at {}; {} is unchanged",
            shown(&entry),
            entry.revoked_at,
            file.display()
        ),
    }
    Ok(())
}

/// Writes a CRL of the deny list and says what it holds.
fn certs_write_crl(dir: &Path, crl: &Path, valid_for: Duration) -> anyhow::Result<()> {
    let listed = revoked::write_crl(dir, crl, valid_for, SystemClock.now())?;
    println!(
        "wrote {} listing {listed} certificate(s), valid for {}",
        crl.display(),
        humantime::format_duration(valid_for)
    );
    Ok(())
}

/// Prints the deny list, one certificate a line.
fn certs_list_revoked(dir: &Path) -> anyhow::Result<()> {
    let entries = revoked::load(&dir.join(revoked::FILE_NAME))?;
    if entries.is_empty() {
        println!("no revoked certificates");
    }
    for entry in entries {
        println!(
            "{}\t{}\t{}\t{}",
            entry.serial,
            if entry.name.is_empty() {
                "-"
            } else {
                &entry.name
            },
            entry.revoked_at,
            elevate::model::one_line(&entry.reason)
        );
    }
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
            allow_root,
        } => serve(dev, state_dir, config, listen, metrics_listen, allow_root).await,
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
        Command::Certs {
            command: Certs::RenewServer { dir, server_names },
        } => issue::renew_server(&dir, &server_names)
            .map(|files| files.iter().for_each(|f| println!("wrote {}", f.display())))
            .map_err(Into::into),
        Command::Certs {
            command:
                Certs::Revoke {
                    dir,
                    serial,
                    name,
                    reason,
                    crl,
                    crl_valid,
                },
        } => certs_revoke(&dir, serial, name, &reason)
            .and_then(|()| crl.map_or(Ok(()), |crl| certs_write_crl(&dir, &crl, crl_valid))),
        Command::Certs {
            command: Certs::ListRevoked { dir },
        } => certs_list_revoked(&dir),
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
            command:
                Audit::Verify {
                    db,
                    pubkey,
                    witness,
                },
        } => audit_verify(&db, pubkey, witness.as_deref()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("elevated: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
