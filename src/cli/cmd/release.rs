//! `elevate release`: end your active lease now.

use crate::cli::CliError;
use crate::cli::session::{Session, returned};
use crate::proto::v1 as pb;

/// End your active lease now.
#[derive(Debug, clap::Args)]
pub struct Release {
    /// The request id.
    pub id: String,
}

impl Release {
    /// Releases and shows the lease as it ended.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let released = session
            .clients
            .access
            .release_lease(pb::ReleaseLeaseRequest {
                id: self.id.clone(),
            })
            .await?
            .into_inner()
            .request;
        session.print_request(&returned(released)?);
        Ok(())
    }
}
