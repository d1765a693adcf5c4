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
    /// Wait, showing progress, until the request is active, denied or timed out.
    #[arg(long)]
    pub wait: bool,
}

impl Request {
    /// Submits; with `--wait`, follows the request until it settles (exit 3 without access).
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let answer = session
            .clients
            .access
            .submit_request(pb::SubmitRequestRequest {
                resource: self.resource.clone(),
                duration: self.duration.clone().unwrap_or_default(),
                reason: self.reason.clone().unwrap_or_default(),
                ticket: self.ticket.clone().unwrap_or_default(),
            })
            .await?
            .into_inner();
        let submitted = returned(answer.request)?;
        let mut credentials: HashMap<String, String> = answer.credentials;
        if self.wait {
            let settled = session.wait(submitted, &mut credentials).await?;
            session.print_delivered(&settled, &credentials);
            return ended(&settled);
        }
        session.print_delivered(&submitted, &credentials);
        Ok(())
    }
}
