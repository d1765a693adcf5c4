//! `elevate pending`: requests waiting for your decision.

use crate::cli::CliError;
use crate::cli::session::Session;
use crate::proto::v1 as pb;

/// Requests waiting for your decision.
#[derive(Debug, clap::Args)]
pub struct Pending;

impl Pending {
    /// Lists them.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let pending = session
            .clients
            .approval
            .list_pending(pb::ListPendingRequest {})
            .await?
            .into_inner();
        session.print_requests(&pending.requests);
        Ok(())
    }
}
