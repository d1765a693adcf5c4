//! `elevate approve`: approve a request at its current stage (or its waiting extension).

use crate::cli::CliError;
use crate::cli::session::{Session, returned};
use crate::proto::v1 as pb;

/// Approve a request at its current stage.
#[derive(Debug, clap::Args)]
pub struct Approve {
    /// The request id.
    pub id: String,
    /// A comment for the record.
    #[arg(long)]
    pub comment: Option<String>,
}

impl Approve {
    /// Approves and shows the request as it is afterwards.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let approved = session
            .clients
            .approval
            .approve(pb::ApproveRequest {
                id: self.id.clone(),
                comment: self.comment.clone().unwrap_or_default(),
            })
            .await?
            .into_inner()
            .request;
        session.print_request(&returned(approved)?);
        Ok(())
    }
}
