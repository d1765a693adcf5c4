//! The `elevate` command-line client. It talks only to the generated gRPC clients.
//!
//! Exit status: 0 on success; 1 when a call fails or `audit verify` finds damage (one line on
//! stderr says why); 2 for usage errors; 3 when `request --wait` ends without access (denied,
//! cancelled, timed out, failed).

pub mod certificate;
pub mod client;
pub mod cmd;
mod error;
pub mod failover;
pub mod output;
pub mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use client::ClientFiles;
use cmd::*;
pub use error::CliError;
use output::Format;
use session::Session;

/// Where the daemon is unless `--endpoint` or `ELEVATE_ENDPOINT` say otherwise: where dev mode
/// listens (a test of `crate::dev` keeps the two the same).
pub const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:7443";

/// Ask for, approve and watch just-in-time privileged access.
#[derive(Debug, Parser)]
#[command(name = "elevate", version)]
pub struct Cli {
    /// The daemon's address; the nodes of a cluster separated by commas (calls go to the
    /// leader, and wait through a failover).
    #[arg(
        long,
        env = "ELEVATE_ENDPOINT",
        default_value = DEFAULT_ENDPOINT,
        global = true
    )]
    pub endpoint: String,
    /// CA certificate the daemon's certificate must chain to.
    #[arg(long, env = "ELEVATE_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Your client certificate.
    #[arg(long, env = "ELEVATE_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// Your client key.
    #[arg(long, env = "ELEVATE_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Directory of certificates named NAME.crt/NAME.key (and ca.crt), used with --as.
    #[arg(long, env = "ELEVATE_CERT_DIR", global = true)]
    pub cert_dir: Option<PathBuf>,
    /// Act as NAME: use NAME.crt and NAME.key from --cert-dir.
    #[arg(long = "as", value_name = "NAME", env = "ELEVATE_AS", global = true)]
    pub identity: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask for time-bound access to a resource.
    Request(request::Request),
    /// Show one request.
    Status(status::Status),
    /// List your requests, newest first.
    List(list::List),
    /// Requests waiting for your decision.
    Pending(pending::Pending),
    /// Approve a request at its current stage.
    Approve(approve::Approve),
    /// Deny a request.
    Deny(deny::Deny),
    /// Withdraw your pending request.
    Cancel(cancel::Cancel),
    /// End your active lease now.
    Release(release::Release),
    /// Ask for more time on your active lease (within the resource's limits).
    Extend(extend::Extend),
    /// Collect the credentials your lease's grant made (an ephemeral database login); they
    /// are given out once.
    Credentials(credentials::Credentials),
    /// Administration (admin group).
    #[command(subcommand)]
    Admin(admin::Admin),
    /// Break glass: access at once during an incident, reviewed afterwards.
    BreakGlass(break_glass::BreakGlass),
    /// Break-glass reviews waiting for you.
    Reviews(reviews::Reviews),
    /// Close a break-glass review with a verdict (final).
    Review(review::Review),
    /// Query the audit trail (auditors), or export or verify it.
    Audit(audit::AuditArgs),
    /// One request's whole story: every event, every approver, the grant and its end.
    History(history::History),
    /// Access report per resource and per approver (auditors).
    Report(report::Report),
    /// Resources you may request.
    Resources(resources::Resources),
    /// Who the daemon takes you to be.
    Whoami(whoami::Whoami),
    /// Print a shell completion script: `elevate completions bash > /etc/bash_completion.d/elevate`.
    Completions(completions::Completions),
}

impl Cli {
    /// The certificate files to use, from --cert/--key/--ca or --as with --cert-dir.
    pub fn files(&self) -> Result<ClientFiles, CliError> {
        if let Some(name) = &self.identity {
            let Some(dir) = &self.cert_dir else {
                return Err(CliError::Usage(
                    "--as needs --cert-dir (or ELEVATE_CERT_DIR) to find NAME.crt and NAME.key"
                        .to_owned(),
                ));
            };
            return Ok(ClientFiles {
                ca: self.ca.clone().unwrap_or_else(|| dir.join("ca.crt")),
                cert: dir.join(format!("{name}.crt")),
                key: dir.join(format!("{name}.key")),
            });
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(ClientFiles {
                ca: self
                    .ca
                    .clone()
                    .or_else(|| self.cert_dir.as_ref().map(|d| d.join("ca.crt")))
                    .ok_or_else(|| CliError::Usage("no CA certificate: pass --ca or set ELEVATE_CA".to_owned()))?,
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => Err(CliError::Usage(
                "no client certificate: pass --cert and --key (or set ELEVATE_CERT and ELEVATE_KEY), or --as NAME with --cert-dir"
                    .to_owned(),
            )),
        }
    }

    /// Runs the command.
    pub async fn run(&self) -> Result<(), CliError> {
        // Completions and verifying an export need no daemon and no certificate.
        match &self.command {
            Command::Completions(completions) => {
                completions.run(<Self as clap::CommandFactory>::command());
                return Ok(());
            }
            Command::Audit(audit::AuditArgs {
                command:
                    Some(audit::AuditCommand::Verify {
                        file,
                        pubkey,
                        witness,
                    }),
                ..
            }) => return audit::verify_file(file, pubkey, witness.as_deref(), self.output),
            _ => {}
        }
        let files = self.files()?;
        let clients = client::connect(&self.endpoint, &files).await?;
        let session = &mut Session {
            clients,
            output: self.output,
        };
        match &self.command {
            Command::Request(command) => command.run(session).await,
            Command::Status(command) => command.run(session).await,
            Command::List(command) => command.run(session).await,
            Command::Pending(command) => command.run(session).await,
            Command::Approve(command) => command.run(session).await,
            Command::Deny(command) => command.run(session).await,
            Command::Cancel(command) => command.run(session).await,
            Command::Release(command) => command.run(session).await,
            Command::Extend(command) => command.run(session).await,
            Command::Credentials(command) => command.run(session).await,
            Command::Admin(command) => command.run(session).await,
            Command::BreakGlass(command) => command.run(session).await,
            Command::Reviews(command) => command.run(session).await,
            Command::Review(command) => command.run(session).await,
            Command::Audit(command) => command.run(session).await,
            Command::History(command) => command.run(session).await,
            Command::Report(command) => command.run(session).await,
            Command::Resources(command) => command.run(session).await,
            Command::Whoami(command) => command.run(session).await,
            // Answered above, before connecting.
            Command::Completions(_) => Ok(()),
        }
    }
}

/// Parses arguments, runs, prints one line on failure, and returns the exit status.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("elevate: {error}");
            error.exit_code()
        }
    }
}
