//! `elevate deny`: deny a request (or its waiting extension).

use crate::cli::CliError;
use crate::cli::session::{Session, returned};
use crate::proto::v1 as pb;

/// Deny a request.
#[derive(Debug, clap::Args)]
pub struct Deny {
    /// The request id.
    pub id: String,
    /// Why (required).
    #[arg(long)]
    pub reason: String,
}

impl Deny {
    /// Denies and shows the request as it is afterwards.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let denied = session
            .clients
            .approval
            .deny(pb::DenyRequest {
                id: self.id.clone(),
                reason: self.reason.clone(),
            })
            .await?
            .into_inner()
            .request;
        session.print_request(&returned(denied)?);
        Ok(())
    }
}
