//! The `elevate` command-line client. It talks only to the generated gRPC clients.
//!
//! Exit status: 0 on success; 1 when a call fails or `audit verify` finds damage (one line on
//! stderr says why); 2 for usage errors; 3 when `request --wait` ends without access (denied,
//! cancelled, timed out, failed).

pub mod audit;
pub mod client;
pub mod output;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_stream::StreamExt;
use tonic::Code;

use client::{ClientFiles, Clients};
use output::Format;

use crate::model::StateKind;
use crate::proto::v1 as pb;

/// Ask for, approve and watch just-in-time privileged access.
#[derive(Debug, Parser)]
#[command(name = "elevate", version)]
pub struct Cli {
    /// The daemon's address.
    #[arg(
        long,
        env = "ELEVATE_ENDPOINT",
        default_value = "https://127.0.0.1:7443",
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
    Request {
        /// The resource.
        resource: String,
        /// How long (45m, 2h); the resource's default when omitted.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Why you need it.
        #[arg(long)]
        reason: Option<String>,
        /// Ticket or incident reference.
        #[arg(long)]
        ticket: Option<String>,
        /// Wait, showing progress, until the request is active, denied or timed out.
        #[arg(long)]
        wait: bool,
    },
    /// Show one request.
    Status {
        /// The request id (req-42).
        id: String,
    },
    /// List your requests, newest first.
    List {
        /// Only requests in this state.
        #[arg(long)]
        state: Option<String>,
        /// Everybody's requests (auditors and admins).
        #[arg(long)]
        all: bool,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only requests older than this id (the next page after it).
        #[arg(long, value_name = "ID")]
        before: Option<String>,
    },
    /// Requests waiting for your decision.
    Pending,
    /// Approve a request at its current stage.
    Approve {
        /// The request id.
        id: String,
        /// A comment for the record.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request.
    Deny {
        /// The request id.
        id: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Withdraw your pending request.
    Cancel {
        /// The request id.
        id: String,
    },
    /// End your active lease now.
    Release {
        /// The request id.
        id: String,
    },
    /// Ask for more time on your active lease (within the resource's limits).
    Extend {
        /// The lease id.
        id: String,
        /// How much longer (30m, 1h).
        #[arg(long, value_name = "DURATION")]
        by: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Collect the credentials your lease's grant made (an ephemeral database login); they
    /// are given out once.
    Credentials {
        /// The lease id.
        id: String,
    },
    /// Administration (admin group).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Break glass: access at once during an incident, reviewed afterwards.
    BreakGlass {
        /// The resource.
        resource: String,
        /// How long (at most the resource's break-glass maximum).
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// What is going on (required).
        #[arg(long)]
        reason: String,
        /// The incident reference (required).
        #[arg(long)]
        incident: String,
        /// When it needs an approval (you have an unreviewed break-glass), wait for it.
        #[arg(long)]
        wait: bool,
    },
    /// Break-glass reviews waiting for you.
    Reviews {
        /// Only overdue reviews.
        #[arg(long)]
        overdue: bool,
        /// Closed reviews too (every review, for auditors and admins).
        #[arg(long)]
        all: bool,
    },
    /// Close a break-glass review with a verdict (final).
    Review {
        /// The break-glass request id.
        id: String,
        /// justified or unjustified.
        #[arg(long, value_enum)]
        verdict: Verdict,
        /// Your notes (required for unjustified).
        #[arg(long)]
        notes: Option<String>,
    },
    /// Query the audit trail (auditors), or export or verify it.
    Audit(audit::AuditArgs),
    /// One request's whole story: every event, every approver, the grant and its end.
    History {
        /// The request id.
        id: String,
    },
    /// Access report per resource and per approver (auditors).
    Report {
        /// Requests submitted at or after: RFC 3339, a date, or a duration ago (90d).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Requests submitted before.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// Resources you may request.
    Resources,
    /// Who the daemon takes you to be.
    Whoami,
    /// Print a shell completion script: `elevate completions bash > /etc/bash_completion.d/elevate`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Administrative commands.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// End an active lease at once.
    Revoke {
        /// The lease id.
        id: String,
        /// Why (required; recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Compare what targets grant with the active leases and correct the drift.
    Reconcile {
        /// Only the target this resource is granted on.
        #[arg(long)]
        resource: Option<String>,
    },
    /// Reload the daemon's policy and directory files (like SIGHUP); a file that fails
    /// validation is refused and the old ones stay in force.
    Reload,
    /// Offboard a leaver: revoke every lease of theirs, withdraw their pending requests, void
    /// their approvals of undecided stages, and refuse every call of theirs from now on.
    Offboard {
        /// The principal.
        principal: String,
        /// Why (required; recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Lift an offboarding: the directory decides again. Nothing revoked comes back.
    Reinstate {
        /// The principal.
        principal: String,
        /// Why (required; recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// List the offboarded principals.
    Offboarded,
}

/// A review verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Verdict {
    /// The break-glass was warranted.
    Justified,
    /// It was not.
    Unjustified,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or unreadable files.
    #[error("{0}")]
    Usage(String),
    /// No connection to the daemon.
    #[error("cannot connect to {endpoint}: {message}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// The daemon refused or failed the call.
    #[error("{}", describe(.0))]
    Call(#[from] tonic::Status),
    /// A waited-for request ended without access.
    #[error("{0}")]
    Ended(String),
    /// The daemon stopped sending updates before the wait ended.
    #[error("{0}")]
    Interrupted(String),
    /// An audit export failed verification.
    #[error("{0}")]
    Verify(String),
}

fn describe(status: &tonic::Status) -> String {
    let code = match status.code() {
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::PermissionDenied => "permission denied",
        Code::FailedPrecondition => "failed precondition",
        Code::AlreadyExists => "already exists",
        Code::Unauthenticated => "unauthenticated",
        Code::Unavailable => "unavailable",
        Code::Unimplemented => "unimplemented",
        Code::DeadlineExceeded => "deadline exceeded",
        _ => "error",
    };
    let mut message = status.message().replace('\n', " ");
    if matches!(
        status.code(),
        Code::Unknown | Code::Unavailable | Code::Internal | Code::Cancelled
    ) {
        // Transport failures carry the reason (a refused certificate, a reset) in the source.
        let mut source = std::error::Error::source(status);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            source = cause.source();
        }
        // With TLS 1.3 the daemon checks the client certificate after the client's side of
        // the handshake is done, so a refusal shows up as an alert or a closed connection.
        if [
            "fatal alert",
            "broken pipe",
            "connection reset",
            "connection closed",
        ]
        .iter()
        .any(|sign| message.to_lowercase().contains(sign))
        {
            message.push_str(
                " (the daemon closed the connection: is your client certificate signed by its CA, still valid and not revoked?)",
            );
        }
    }
    if message.is_empty() {
        code.to_owned()
    } else {
        format!("{message} ({code})")
    }
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Ended(_) => ExitCode::from(3),
            CliError::Connect { .. }
            | CliError::Call(_)
            | CliError::Interrupted(_)
            | CliError::Verify(_) => ExitCode::from(1),
        }
    }
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

    fn print_request(&self, request: &pb::AccessRequest) {
        self.print_delivered(request, &HashMap::new());
    }

    /// A request, with the credentials the daemon handed over with it (shown once: the daemon
    /// keeps no copy).
    fn print_delivered(&self, request: &pb::AccessRequest, credentials: &HashMap<String, String>) {
        match self.output {
            Format::Json => {
                let mut json = output::request_json(request);
                if !credentials.is_empty() {
                    json["credentials"] = output::credentials_json(credentials);
                }
                println!("{json}");
            }
            Format::Table => {
                println!("{}", output::request_table(request));
                if !credentials.is_empty() {
                    println!("{}", output::credentials_table(credentials));
                }
            }
        }
    }

    fn print_requests(&self, requests: &[pb::AccessRequest]) {
        match self.output {
            Format::Json => println!(
                "{}",
                serde_json::Value::Array(requests.iter().map(output::request_json).collect())
            ),
            Format::Table => println!("{}", output::requests_table(requests)),
        }
    }

    /// Runs the command.
    pub async fn run(&self) -> Result<(), CliError> {
        // Completions need no daemon and no certificate.
        if let Command::Completions { shell } = &self.command {
            let mut command = <Self as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "elevate", &mut script);
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return Ok(());
        }
        // Verifying an export needs no daemon and no certificate.
        if let Command::Audit(audit::AuditArgs {
            command:
                Some(audit::AuditCommand::Verify {
                    file,
                    pubkey,
                    witness,
                }),
            ..
        }) = &self.command
        {
            return audit::verify_file(file, pubkey, witness.as_deref(), self.output);
        }
        let files = self.files()?;
        let mut clients = client::connect(&self.endpoint, &files).await?;
        match &self.command {
            Command::Request {
                resource,
                duration,
                reason,
                ticket,
                wait,
            } => {
                let answer = clients
                    .access
                    .submit_request(pb::SubmitRequestRequest {
                        resource: resource.clone(),
                        duration: duration.clone().unwrap_or_default(),
                        reason: reason.clone().unwrap_or_default(),
                        ticket: ticket.clone().unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                let submitted = returned(answer.request)?;
                let mut credentials = answer.credentials;
                if *wait {
                    let settled = self.wait(&mut clients, submitted, &mut credentials).await?;
                    self.print_delivered(&settled, &credentials);
                    return ended(&settled);
                }
                self.print_delivered(&submitted, &credentials);
            }
            Command::Status { id } => {
                let answer = clients
                    .access
                    .get_request(pb::GetRequestRequest { id: id.clone() })
                    .await?
                    .into_inner();
                self.print_delivered(&returned(answer.request)?, &answer.credentials);
            }
            Command::Extend { id, by, reason } => {
                let extended = returned(
                    clients
                        .access
                        .extend_lease(pb::ExtendLeaseRequest {
                            id: id.clone(),
                            by: by.clone(),
                            reason: reason.clone(),
                        })
                        .await?
                        .into_inner()
                        .request,
                )?;
                self.print_request(&extended);
            }
            Command::Credentials { id } => {
                let credentials = clients
                    .access
                    .get_credentials(pb::GetCredentialsRequest { id: id.clone() })
                    .await?
                    .into_inner()
                    .credentials;
                match self.output {
                    Format::Json => println!("{}", output::credentials_json(&credentials)),
                    Format::Table => println!("{}", output::credentials_table(&credentials)),
                }
            }
            Command::Admin(AdminCommand::Revoke { id, reason }) => {
                let revoked = returned(
                    clients
                        .admin
                        .revoke_lease(pb::RevokeLeaseRequest {
                            id: id.clone(),
                            reason: reason.clone(),
                        })
                        .await?
                        .into_inner()
                        .request,
                )?;
                self.print_request(&revoked);
            }
            Command::Admin(AdminCommand::Reconcile { resource }) => {
                let run = clients
                    .admin
                    .reconcile(pb::ReconcileRequest {
                        resource: resource.clone().unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                match self.output {
                    Format::Json => println!(
                        "{}",
                        serde_json::json!({
                            "corrections": run.corrections,
                            "checked": run.checked,
                            "skipped": run.skipped,
                        })
                    ),
                    Format::Table => {
                        for correction in &run.corrections {
                            println!("{correction}");
                        }
                        if run.corrections.is_empty() {
                            let checked = if run.checked.is_empty() {
                                "any target (none could be compared)".to_owned()
                            } else {
                                run.checked.join(", ")
                            };
                            println!("no drift on {checked}");
                        }
                        for skipped in &run.skipped {
                            eprintln!("not compared: {skipped}");
                        }
                    }
                }
            }
            Command::Admin(AdminCommand::Reload) => {
                let reloaded = clients
                    .admin
                    .reload(pb::ReloadRequest {})
                    .await?
                    .into_inner();
                match self.output {
                    Format::Json => println!("{}", output::reloaded_json(&reloaded)),
                    Format::Table => print!("{}", output::reloaded_table(&reloaded)),
                }
            }
            Command::Admin(AdminCommand::Offboard { principal, reason }) => {
                let done = clients
                    .admin
                    .offboard(pb::OffboardRequest {
                        principal: principal.clone(),
                        reason: reason.clone(),
                    })
                    .await?
                    .into_inner();
                let enforced = pb::Enforcement {
                    revoked: done.revoked,
                    cancelled: done.cancelled,
                    flagged: Vec::new(),
                    voided: done.voided,
                    failed: done.failed,
                };
                match self.output {
                    Format::Json => println!("{}", output::enforcement_json(&enforced)),
                    Format::Table => {
                        println!("offboarded {principal}");
                        print!("{}", output::enforcement_table(&enforced));
                    }
                }
            }
            Command::Admin(AdminCommand::Reinstate { principal, reason }) => {
                clients
                    .admin
                    .reinstate(pb::ReinstateRequest {
                        principal: principal.clone(),
                        reason: reason.clone(),
                    })
                    .await?;
                match self.output {
                    Format::Json => {
                        println!("{}", serde_json::json!({ "reinstated": principal }));
                    }
                    Format::Table => println!("reinstated {principal}"),
                }
            }
            Command::Admin(AdminCommand::Offboarded) => {
                let listed = clients
                    .admin
                    .list_offboarded(pb::ListOffboardedRequest {})
                    .await?
                    .into_inner()
                    .offboarded;
                match self.output {
                    Format::Json => println!("{}", output::offboarded_json(&listed)),
                    Format::Table => print!("{}", output::offboarded_table(&listed)),
                }
            }
            Command::List {
                state,
                all,
                limit,
                before,
            } => {
                let state = match state {
                    None => pb::RequestState::Unspecified,
                    Some(word) => crate::grpc::convert::state_to_proto(
                        word.parse::<StateKind>().map_err(CliError::Usage)?,
                    ),
                };
                let listed = clients
                    .access
                    .list_requests(pb::ListRequestsRequest {
                        state: state.into(),
                        all: *all,
                        limit: *limit,
                        page_token: before.clone().unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                self.print_requests(&listed.requests);
                if !listed.next_page_token.is_empty() && self.output == Format::Table {
                    eprintln!(
                        "(the newest {limit} shown; more with --before {})",
                        listed.next_page_token
                    );
                }
            }
            Command::Pending => {
                let pending = clients
                    .approval
                    .list_pending(pb::ListPendingRequest {})
                    .await?
                    .into_inner();
                self.print_requests(&pending.requests);
            }
            Command::Approve { id, comment } => {
                let approved = returned(
                    clients
                        .approval
                        .approve(pb::ApproveRequest {
                            id: id.clone(),
                            comment: comment.clone().unwrap_or_default(),
                        })
                        .await?
                        .into_inner()
                        .request,
                )?;
                self.print_request(&approved);
            }
            Command::Deny { id, reason } => {
                let denied = returned(
                    clients
                        .approval
                        .deny(pb::DenyRequest {
                            id: id.clone(),
                            reason: reason.clone(),
                        })
                        .await?
                        .into_inner()
                        .request,
                )?;
                self.print_request(&denied);
            }
            Command::Cancel { id } => {
                let cancelled = returned(
                    clients
                        .access
                        .cancel_request(pb::CancelRequestRequest { id: id.clone() })
                        .await?
                        .into_inner()
                        .request,
                )?;
                self.print_request(&cancelled);
            }
            Command::Release { id } => {
                let released = returned(
                    clients
                        .access
                        .release_lease(pb::ReleaseLeaseRequest { id: id.clone() })
                        .await?
                        .into_inner()
                        .request,
                )?;
                self.print_request(&released);
            }
            Command::BreakGlass {
                resource,
                duration,
                reason,
                incident,
                wait,
            } => {
                let requested = returned(
                    clients
                        .break_glass
                        .break_glass(pb::BreakGlassRequest {
                            resource: resource.clone(),
                            duration: duration.clone().unwrap_or_default(),
                            reason: reason.clone(),
                            incident: incident.clone(),
                        })
                        .await?
                        .into_inner()
                        .request,
                )?;
                if requested.break_glass_needed_approval && !settled(&requested) {
                    eprintln!(
                        "{}: you have an unreviewed break-glass, so this one needs one approval from the review group",
                        requested.id
                    );
                }
                if *wait {
                    let mut credentials = HashMap::new();
                    let settled = self.wait(&mut clients, requested, &mut credentials).await?;
                    self.print_delivered(&settled, &credentials);
                    return ended(&settled);
                }
                self.print_request(&requested);
            }
            Command::Reviews { overdue, all } => {
                let reviews = clients
                    .break_glass
                    .list_reviews(pb::ListReviewsRequest {
                        overdue_only: *overdue,
                        all: *all,
                    })
                    .await?
                    .into_inner()
                    .reviews;
                match self.output {
                    Format::Json => println!(
                        "{}",
                        serde_json::Value::Array(reviews.iter().map(output::review_json).collect())
                    ),
                    Format::Table => println!("{}", output::reviews_table(&reviews)),
                }
            }
            Command::Review { id, verdict, notes } => {
                let answer = clients
                    .break_glass
                    .submit_review(pb::SubmitReviewRequest {
                        id: id.clone(),
                        verdict: match verdict {
                            Verdict::Justified => "justified",
                            Verdict::Unjustified => "unjustified",
                        }
                        .to_owned(),
                        notes: notes.clone().unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                self.print_request(&returned(answer.request)?);
            }
            Command::Audit(args) => match &args.command {
                None => audit::query(&mut clients, args, self.output).await?,
                Some(audit::AuditCommand::Export { filter, format }) => {
                    audit::export(&mut clients, filter, *format).await?;
                }
                Some(audit::AuditCommand::Verify {
                    file,
                    pubkey,
                    witness,
                }) => {
                    audit::verify_file(file, pubkey, witness.as_deref(), self.output)?;
                }
            },
            Command::History { id } => audit::history(&mut clients, id, self.output).await?,
            Command::Report { since, until } => {
                audit::report(&mut clients, since, until, self.output).await?;
            }
            Command::Resources => {
                let resources = clients
                    .access
                    .list_resources(pb::ListResourcesRequest {})
                    .await?
                    .into_inner()
                    .resources;
                self.print_resources(&resources);
            }
            // Answered above, before connecting.
            Command::Completions { .. } => {}
            Command::Whoami => {
                let me = clients
                    .access
                    .who_am_i(pb::WhoAmIRequest {})
                    .await?
                    .into_inner();
                match self.output {
                    Format::Json => println!(
                        "{}",
                        serde_json::json!({
                            "principal": me.principal,
                            "groups": me.groups,
                            "manager": if me.manager.is_empty() { None } else { Some(&me.manager) },
                            "can_see_all": me.can_see_all,
                        })
                    ),
                    Format::Table => {
                        println!("principal  {}", me.principal);
                        println!("groups     {}", me.groups.join(", "));
                        if !me.manager.is_empty() {
                            println!("manager    {}", me.manager);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn print_resources(&self, resources: &[pb::ResourceInfo]) {
        match self.output {
            Format::Json => println!(
                "{}",
                serde_json::Value::Array(
                    resources
                        .iter()
                        .map(|r| serde_json::json!({
                            "name": r.name,
                            "description": r.description,
                            "default_duration": r.default_duration,
                            "max_duration": r.max_duration,
                            "reason_required": r.reason_required,
                            "ticket_required": r.ticket_required,
                            "ticket_pattern": r.ticket_pattern,
                            "auto_approve": r.auto_approve,
                            "stages": r.stages,
                            "break_glass": r.break_glass,
                        }))
                        .collect()
                )
            ),
            Format::Table => {
                for r in resources {
                    let route = if r.auto_approve {
                        "auto-approved".to_owned()
                    } else {
                        format!("approved by {}", r.stages.join(" then "))
                    };
                    let mut needs = Vec::new();
                    if r.reason_required {
                        needs.push("reason".to_owned());
                    }
                    if r.ticket_required {
                        needs.push(format!("ticket {}", r.ticket_pattern));
                    }
                    println!(
                        "{:<16} max {:<6} {}{}  {}",
                        r.name,
                        r.max_duration,
                        route,
                        if needs.is_empty() {
                            String::new()
                        } else {
                            format!("; needs {}", needs.join(", "))
                        },
                        r.description
                    );
                }
            }
        }
    }

    /// Follows a request until it is active or ended, showing each change on stderr.
    /// Follows `submitted` until it settles, keeping the credentials that come with it.
    async fn wait(
        &self,
        clients: &mut Clients,
        submitted: pb::AccessRequest,
        credentials: &mut HashMap<String, String>,
    ) -> Result<pb::AccessRequest, CliError> {
        let mut last = submitted;
        eprintln!(
            "{} {}: {}",
            last.id,
            output::state_word(last.state),
            output::summary(&last)
        );
        if settled(&last) {
            return Ok(last);
        }
        // The daemon closes connections that reach their maximum age (and a failover or a
        // network blip ends a stream too): follow the request again on a new one, unless the
        // first call of that one fails as well, or streams keep ending at once.
        let mut watching = true;
        let mut quick_ends = 0;
        while watching && quick_ends < 3 {
            let started = std::time::Instant::now();
            let mut updates = match clients
                .access
                .watch_request(pb::WatchRequestRequest {
                    id: last.id.clone(),
                })
                .await
            {
                Ok(updates) => updates.into_inner(),
                Err(status) if status.code() == tonic::Code::Unavailable => break,
                Err(status) => return Err(status.into()),
            };
            watching = false;
            while let Some(update) = updates.next().await {
                let update = match update {
                    Ok(update) => update,
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::Unavailable | tonic::Code::Unknown
                        ) =>
                    {
                        watching = true;
                        break;
                    }
                    Err(status) => return Err(status.into()),
                };
                watching = true;
                if !update.credentials.is_empty() {
                    *credentials = update.credentials;
                }
                let Some(request) = update.request else {
                    continue;
                };
                if request.state != last.state || request.decisions.len() != last.decisions.len() {
                    eprintln!(
                        "{} {}: {}",
                        request.id,
                        output::state_word(request.state),
                        output::summary(&request)
                    );
                }
                last = request;
                if settled(&last) {
                    return Ok(last);
                }
            }
            if started.elapsed() < std::time::Duration::from_secs(1) {
                quick_ends += 1;
            } else {
                quick_ends = 0;
            }
        }
        Err(CliError::Interrupted(format!(
            "{}: the daemon stopped sending updates while it was {}; check with: elevate status {}",
            last.id,
            output::state_word(last.state),
            last.id
        )))
    }
}

/// The request an answer carries; the daemon always sends one.
fn returned(request: Option<pb::AccessRequest>) -> Result<pb::AccessRequest, CliError> {
    request.ok_or_else(|| {
        CliError::Call(tonic::Status::internal(
            "the daemon's answer held no request",
        ))
    })
}

fn settled(request: &pb::AccessRequest) -> bool {
    !matches!(
        pb::RequestState::try_from(request.state),
        Ok(pb::RequestState::Pending | pb::RequestState::Approved)
    )
}

/// After `--wait`: an error (exit 3) unless the request ended up active.
fn ended(request: &pb::AccessRequest) -> Result<(), CliError> {
    match pb::RequestState::try_from(request.state) {
        Ok(pb::RequestState::Active) => Ok(()),
        _ => Err(CliError::Ended(format!(
            "{} is {}{}",
            request.id,
            output::state_word(request.state),
            if request.end_reason.is_empty() {
                String::new()
            } else {
                format!(": {}", request.end_reason)
            }
        ))),
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
