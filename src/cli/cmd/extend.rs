//! `elevate extend`: more time on your active lease.

use crate::cli::CliError;
use crate::cli::session::{Session, returned};
use crate::proto::v1 as pb;

/// Ask for more time on your active lease (within the resource's limits).
#[derive(Debug, clap::Args)]
pub struct Extend {
    /// The lease id.
    pub id: String,
    /// How much longer (30m, 1h).
    #[arg(long, value_name = "DURATION")]
    pub by: String,
    /// Why (required).
    #[arg(long)]
    pub reason: String,
}

impl Extend {
    /// Asks, and shows the lease: extended, or with its extension waiting for approval.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let extended = session
            .clients
            .access
            .extend_lease(pb::ExtendLeaseRequest {
                id: self.id.clone(),
                by: self.by.clone(),
                reason: self.reason.clone(),
            })
            .await?
            .into_inner()
            .request;
        session.print_request(&returned(extended)?);
        Ok(())
    }
}
