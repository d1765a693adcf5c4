//! `elevate request`: ask for time-bound access to a resource.

use std::collections::HashMap;

use crate::cli::CliError;
use crate::cli::session::{Session, ended, returned};
use crate::proto::v1 as pb;

/// Ask for time-bound access to a resource.
#[derive(Debug, clap::Args)]
pub struct Request {
    /// The resource.
    pub resource: String,
    /// How long (45m, 2h); the resource's default when omitted.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why you need it.
    #[arg(long)]
    pub reason: Option<String>,
    /// Ticket or incident reference.
    #[arg(long)]
    pub ticket: Option<String>,
    /// Your SSH public key (e.g. ~/.ssh/id_ed25519.pub), for resources granted by an SSH
    /// certificate.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<std::path::PathBuf>,
    /// Wait, showing progress, until the request is active, denied or timed out.
    #[arg(long)]
    pub wait: bool,
}

impl Request {
    /// Submits; with `--wait`, follows the request until it settles (exit 3 without access).
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let ssh_key = match &self.ssh_key {
            None => String::new(),
            Some(file) => crate::cli::certificate::read_public_key(file)?,
        };
        let answer = session
            .clients
            .access
            .submit_request(pb::SubmitRequestRequest {
                resource: self.resource.clone(),
                duration: self.duration.clone().unwrap_or_default(),
                reason: self.reason.clone().unwrap_or_default(),
                ticket: self.ticket.clone().unwrap_or_default(),
                ssh_key,
            })
            .await?
            .into_inner();
        let submitted = returned(answer.request)?;
        let mut credentials: HashMap<String, String> = answer.credentials;
        // The certificate goes beside the key it was signed for, as OpenSSH expects.
        let save = |credentials: &mut HashMap<String, String>| match &self.ssh_key {
            Some(key) => {
                crate::cli::certificate::save(credentials, &crate::cli::certificate::beside(key))
            }
            None => Ok(()),
        };
        if self.wait {
            let settled = session.wait(submitted, &mut credentials).await?;
            save(&mut credentials)?;
            session.print_delivered(&settled, &credentials);
            return ended(&settled);
        }
        save(&mut credentials)?;
        session.print_delivered(&submitted, &credentials);
        Ok(())
    }
}
