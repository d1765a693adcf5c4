//! `elevate admin`: revoke, reconcile, reload, offboard and reinstate, the directory in force and
//! the cluster's nodes (admin group).

use crate::cli::CliError;
use crate::cli::output::{self, Format};
use crate::cli::session::{Session, returned};
use crate::proto::v1 as pb;

/// Administrative commands.
#[derive(Debug, clap::Subcommand)]
pub enum Admin {
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
    /// The nodes of a cluster: name, advertised address, leader or standby, epoch, last
    /// renewal (the leader) or look at the leadership (a standby).
    Cluster,
    /// The directory in force (a file, or the one the identity provider pushes over SCIM):
    /// every principal's status, groups, manager and accounts.
    Directory {
        /// Only this principal.
        #[arg(long)]
        user: Option<String>,
    },
}

impl Admin {
    /// Runs the administrative command.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        match self {
            Admin::Revoke { id, reason } => {
                let revoked = session
                    .clients
                    .admin
                    .revoke_lease(pb::RevokeLeaseRequest {
                        id: id.clone(),
                        reason: reason.clone(),
                    })
                    .await?
                    .into_inner()
                    .request;
                session.print_request(&returned(revoked)?);
            }
            Admin::Reconcile { resource } => {
                let run = session
                    .clients
                    .admin
                    .reconcile(pb::ReconcileRequest {
                        resource: resource.clone().unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                print_reconciliation(&run, session.output);
            }
            Admin::Reload => {
                let reloaded = session
                    .clients
                    .admin
                    .reload(pb::ReloadRequest {})
                    .await?
                    .into_inner();
                match session.output {
                    Format::Json => println!("{}", output::reloaded_json(&reloaded)),
                    Format::Table => print!("{}", output::reloaded_table(&reloaded)),
                }
            }
            Admin::Offboard { principal, reason } => {
                let done = session
                    .clients
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
                match session.output {
                    Format::Json => println!("{}", output::enforcement_json(&enforced)),
                    Format::Table => {
                        println!("offboarded {principal}");
                        print!("{}", output::enforcement_table(&enforced));
                    }
                }
            }
            Admin::Reinstate { principal, reason } => {
                session
                    .clients
                    .admin
                    .reinstate(pb::ReinstateRequest {
                        principal: principal.clone(),
                        reason: reason.clone(),
                    })
                    .await?;
                match session.output {
                    Format::Json => {
                        println!("{}", serde_json::json!({ "reinstated": principal }));
                    }
                    Format::Table => println!("reinstated {principal}"),
                }
            }
            Admin::Offboarded => {
                let listed = session
                    .clients
                    .admin
                    .list_offboarded(pb::ListOffboardedRequest {})
                    .await?
                    .into_inner()
                    .offboarded;
                match session.output {
                    Format::Json => println!("{}", output::offboarded_json(&listed)),
                    Format::Table => print!("{}", output::offboarded_table(&listed)),
                }
            }
            Admin::Directory { user } => {
                let listed = session
                    .clients
                    .admin
                    .list_directory(pb::ListDirectoryRequest {
                        principal: user.clone().unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                match session.output {
                    Format::Json => println!("{}", output::directory_json(&listed)),
                    Format::Table => print!("{}", output::directory_table(&listed)),
                }
            }
            Admin::Cluster => {
                let status = session
                    .clients
                    .admin
                    .cluster_status(pb::ClusterStatusRequest {})
                    .await?
                    .into_inner();
                match session.output {
                    Format::Json => println!("{}", output::cluster_json(&status)),
                    Format::Table => print!("{}", output::cluster_table(&status)),
                }
            }
        }
        Ok(())
    }
}

/// The corrections made, what was compared and what could not be.
fn print_reconciliation(run: &pb::ReconcileResponse, format: Format) {
    match format {
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
