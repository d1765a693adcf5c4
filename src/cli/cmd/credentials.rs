//! `elevate credentials`: collect what your lease's grant made, once.

use crate::cli::CliError;
use crate::cli::output::{self, Format};
use crate::cli::session::Session;
use crate::proto::v1 as pb;

/// Collect the credentials your lease's grant made (an ephemeral database login); they are
/// given out once.
#[derive(Debug, clap::Args)]
pub struct Credentials {
    /// The lease id.
    pub id: String,
}

impl Credentials {
    /// Collects and prints them.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let credentials = session
            .clients
            .access
            .get_credentials(pb::GetCredentialsRequest {
                id: self.id.clone(),
            })
            .await?
            .into_inner()
            .credentials;
        match session.output {
            Format::Json => println!("{}", output::credentials_json(&credentials)),
            Format::Table => println!("{}", output::credentials_table(&credentials)),
        }
        Ok(())
    }
}
