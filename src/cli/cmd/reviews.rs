//! `elevate reviews`: break-glass reviews waiting for you.

use crate::cli::CliError;
use crate::cli::output::{self, Format};
use crate::cli::session::Session;
use crate::proto::v1 as pb;

/// Break-glass reviews waiting for you.
#[derive(Debug, clap::Args)]
pub struct Reviews {
    /// Only overdue reviews.
    #[arg(long)]
    pub overdue: bool,
    /// Closed reviews too (every review, for auditors and admins).
    #[arg(long)]
    pub all: bool,
}

impl Reviews {
    /// Lists them.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let reviews = session
            .clients
            .break_glass
            .list_reviews(pb::ListReviewsRequest {
                overdue_only: self.overdue,
                all: self.all,
            })
            .await?
            .into_inner()
            .reviews;
        match session.output {
            Format::Json => println!(
                "{}",
                serde_json::Value::Array(reviews.iter().map(output::review_json).collect())
            ),
            Format::Table => println!("{}", output::reviews_table(&reviews)),
        }
        Ok(())
    }
}
