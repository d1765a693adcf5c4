//! The `elevated` command line: serving, and the subcommands that make certificates, show
//! the audit key, verify a store offline and check a configuration. The binary parses the
//! arguments, sets up logging and calls [`run`].
//!
//! Errors are typed ([`CommandError`]); the binary prints one with its causes on one line
//! ([`chain`]) and exits with status 1.

mod audit;
mod certs;
mod check;
mod directory;
mod error;
mod serve;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub use error::{CommandError, chain};

use crate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};

/// The elevate just-in-time privileged access broker.
#[derive(Debug, Parser)]
#[command(name = "elevated", version)]
pub struct Args {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written on stderr.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
        /// Which.
        #[command(subcommand)]
        command: Certs,
    },
    /// The audit key and offline verification of a store.
    Audit {
        /// Which.
        #[command(subcommand)]
        command: Audit,
    },
    /// The nodes of a cluster on PostgreSQL, read from the store.
    Cluster {
        /// Which.
        #[command(subcommand)]
        command: Cluster,
    },
    /// Create or check the store a configuration names.
    Store {
        /// Which.
        #[command(subcommand)]
        command: Store,
    },
    /// The SSH user CA of `ssh` provisioners.
    Ssh {
        /// Which.
        #[command(subcommand)]
        command: SshCommand,
    },
    /// The directory of record the identity provider pushes over SCIM.
    Directory {
        /// Which.
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Validate a configuration with its policy and directory, then exit.
    CheckConfig {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// The cluster subcommands.
#[derive(Debug, Subcommand)]
pub enum Cluster {
    /// Name, advertised address, leader or standby, epoch and last renewal of every node.
    Status {
        /// Configuration file (of any node).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The SSH subcommands.
#[derive(Debug, Subcommand)]
pub enum SshCommand {
    /// Make a new Ed25519 user CA key (mode 0600) for an `ssh` provisioner's `ca_key`; prints
    /// the line hosts trust. Never overwrites a file.
    InitCa {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the line hosts put in the file sshd's `TrustedUserCAKeys` names.
    CaPubkey {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The `ssh` provisioner.
        #[arg(long)]
        provisioner: String,
    },
}

/// The directory subcommands.
#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Seed the empty SCIM directory of record of a configuration (`policy.directory =
    /// "scim"`) from a directory file: every principal becomes a user (active or not, with
    /// their manager and accounts), every group a group with its members. Run it with the
    /// daemons stopped; the identity provider then matches its people by userName.
    Import {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The directory file (as `policy.directory` named before).
        #[arg(long)]
        from: PathBuf,
    },
}

/// The store subcommands.
#[derive(Debug, Subcommand)]
pub enum Store {
    /// Create the store's schema (PostgreSQL) or file (redb) when missing, check its version,
    /// and record the audit key (generated when the key file does not exist yet): what every
    /// daemon does at start, ahead of time.
    Init {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Upgrade the store a configuration names (stop its daemons first) to this release's
    /// layout: requests and audit entries rewritten in the binary encoding, every chain hash
    /// kept. A daemon does the same at its first start; this does it ahead of time.
    Upgrade {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Copy a redb store file (stop its daemon first) into the empty PostgreSQL store a
    /// configuration names: requests, the audit chain as stored (same entries, same head),
    /// checkpoints, the outbox and offboardings.
    Migrate {
        /// Configuration file naming the PostgreSQL store.
        #[arg(long)]
        config: PathBuf,
        /// The redb store file.
        #[arg(long)]
        from: PathBuf,
    },
}

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum Audit {
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
    /// Verify the audit trail of a store: a redb file offline (stop the daemon, or use a
    /// copy), or the store a configuration names (a PostgreSQL store is verified in one
    /// consistent snapshot while daemons keep writing).
    Verify {
        /// The store file.
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        db: Option<PathBuf>,
        /// The configuration whose store to verify.
        #[arg(long)]
        config: Option<PathBuf>,
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

/// The certificate subcommands.
#[derive(Debug, Subcommand)]
pub enum Certs {
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

/// Logs to stderr in `format`, at the level `RUST_LOG` asks for (info by default).
pub fn init_logging(format: LogFormat) {
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

/// Runs one subcommand to its end.
pub async fn run(command: Command) -> Result<(), CommandError> {
    let wrote = |files: Vec<PathBuf>| files.iter().for_each(|f| println!("wrote {}", f.display()));
    match command {
        Command::Serve {
            dev,
            state_dir,
            config,
            listen,
            metrics_listen,
            allow_root,
        } => serve::serve(dev, state_dir, config, listen, metrics_listen, allow_root).await,
        Command::Certs {
            command:
                Certs::Init {
                    dir,
                    server_names,
                    force,
                },
        } => issue::init(&dir, &server_names, force)
            .map(wrote)
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
            .map(wrote)
            .map_err(Into::into),
        Command::Certs {
            command: Certs::RenewServer { dir, server_names },
        } => issue::renew_server(&dir, &server_names)
            .map(wrote)
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
        } => certs::revoke(&dir, serial, name, &reason)
            .and_then(|()| crl.map_or(Ok(()), |crl| certs::write_crl(&dir, &crl, crl_valid))),
        Command::Certs {
            command: Certs::ListRevoked { dir },
        } => certs::list_revoked(&dir),
        Command::CheckConfig { config } => check::check_config(&config),
        Command::Audit {
            command:
                Audit::Pubkey {
                    config,
                    dev,
                    state_dir,
                    key,
                },
        } => audit::pubkey(config, dev, &state_dir, key),
        Command::Audit {
            command:
                Audit::Verify {
                    db,
                    config,
                    pubkey,
                    witness,
                },
        } => {
            let store = match (db, config) {
                (Some(db), _) => crate::store::Location::Embedded(db),
                (None, Some(config)) => store::location(&config)?,
                (None, None) => {
                    return Err(CommandError::Usage(
                        "name the store: --db FILE or --config FILE".into(),
                    ));
                }
            };
            audit::verify(&store, pubkey, witness.as_deref()).await
        }
        Command::Store {
            command: Store::Init { config },
        } => store::init(&config).await,
        Command::Cluster {
            command: Cluster::Status { config, json },
        } => store::cluster_status(&config, json).await,
        Command::Store {
            command: Store::Migrate { config, from },
        } => store::migrate(&config, &from).await,
        Command::Store {
            command: Store::Upgrade { config },
        } => store::upgrade(&config).await,
        Command::Ssh {
            command: SshCommand::InitCa { out },
        } => {
            let ca = crate::provision::ssh::ca::UserCa::generate(&out)
                .map_err(|error| CommandError::Failed(error.to_string()))?;
            println!("{}", ca.public_line());
            Ok(())
        }
        Command::Ssh {
            command:
                SshCommand::CaPubkey {
                    config,
                    provisioner,
                },
        } => {
            let loaded = crate::config::Config::load(&config)?;
            let Some(crate::config::ProvisionerConfig::Ssh(ssh)) =
                loaded.provisioners.get(&provisioner)
            else {
                return Err(CommandError::Usage(format!(
                    "{}: no ssh provisioner named '{provisioner}'",
                    config.display()
                )));
            };
            let ca = crate::provision::ssh::ca::UserCa::load(&ssh.ca_key)
                .map_err(|error| CommandError::Failed(error.to_string()))?;
            println!("{}", ca.public_line());
            Ok(())
        }
        Command::Directory {
            command: DirectoryCommand::Import { config, from },
        } => directory::import(&config, &from).await,
    }
}
