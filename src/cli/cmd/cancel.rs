//! `elevate cancel`: withdraw your pending request.

use crate::cli::CliError;
use crate::cli::session::{Session, returned};
use crate::proto::v1 as pb;

/// Withdraw your pending request.
#[derive(Debug, clap::Args)]
pub struct Cancel {
    /// The request id.
    pub id: String,
}

impl Cancel {
    /// Cancels and shows the request.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let cancelled = session
            .clients
            .access
            .cancel_request(pb::CancelRequestRequest {
                id: self.id.clone(),
            })
            .await?
            .into_inner()
            .request;
        session.print_request(&returned(cancelled)?);
        Ok(())
    }
}
