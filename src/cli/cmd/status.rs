//! `elevate status`: one request.

use crate::cli::CliError;
use crate::cli::session::{Session, returned};
use crate::proto::v1 as pb;

/// Show one request.
#[derive(Debug, clap::Args)]
pub struct Status {
    /// The request id (req-42).
    pub id: String,
}

impl Status {
    /// Shows the request, with credentials waiting for its holder.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let answer = session
            .clients
            .access
            .get_request(pb::GetRequestRequest {
                id: self.id.clone(),
            })
            .await?
            .into_inner();
        session.print_delivered(&returned(answer.request)?, &answer.credentials);
        Ok(())
    }
}
