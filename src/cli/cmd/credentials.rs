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
    /// Write an SSH certificate among them to this file (mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub ssh_cert_out: Option<std::path::PathBuf>,
}

impl Credentials {
    /// Collects and prints them.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let mut credentials = session
            .clients
            .access
            .get_credentials(pb::GetCredentialsRequest {
                id: self.id.clone(),
            })
            .await?
            .into_inner()
            .credentials;
        if let Some(out) = &self.ssh_cert_out {
            crate::cli::certificate::save(&mut credentials, out)?;
        }
        match session.output {
            Format::Json => println!("{}", output::credentials_json(&credentials)),
            Format::Table => println!("{}", output::credentials_table(&credentials)),
        }
        Ok(())
    }
}
