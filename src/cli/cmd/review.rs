//! `elevate review`: close a break-glass review with a verdict.

use crate::cli::CliError;
use crate::cli::session::{Session, returned};
use crate::proto::v1 as pb;

/// Close a break-glass review with a verdict (final).
#[derive(Debug, clap::Args)]
pub struct Review {
    /// The break-glass request id.
    pub id: String,
    /// justified or unjustified.
    #[arg(long, value_enum)]
    pub verdict: Verdict,
    /// Your notes (required for unjustified).
    #[arg(long)]
    pub notes: Option<String>,
}

/// A review verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Verdict {
    /// The break-glass was warranted.
    Justified,
    /// It was not.
    Unjustified,
}

impl Review {
    /// Closes the review and shows the request.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let answer = session
            .clients
            .break_glass
            .submit_review(pb::SubmitReviewRequest {
                id: self.id.clone(),
                verdict: match self.verdict {
                    Verdict::Justified => "justified",
                    Verdict::Unjustified => "unjustified",
                }
                .to_owned(),
                notes: self.notes.clone().unwrap_or_default(),
            })
            .await?
            .into_inner();
        session.print_request(&returned(answer.request)?);
        Ok(())
    }
}
