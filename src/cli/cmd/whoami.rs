//! `elevate whoami`: who the daemon takes you to be.

use crate::cli::CliError;
use crate::cli::output::Format;
use crate::cli::session::Session;
use crate::proto::v1 as pb;

/// Who the daemon takes you to be.
#[derive(Debug, clap::Args)]
pub struct Whoami;

impl Whoami {
    /// Asks and prints the principal, groups and manager.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let me = session
            .clients
            .access
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner();
        match session.output {
            Format::Json => println!(
                "{}",
                serde_json::json!({
                    "principal": me.principal,
                    "groups": me.groups,
                    "manager": if me.manager.is_empty() { None } else { Some(&me.manager) },
                    "can_see_all": me.can_see_all,
                })
            ),
            Format::Table => {
                println!("principal  {}", me.principal);
                println!("groups     {}", me.groups.join(", "));
                if !me.manager.is_empty() {
                    println!("manager    {}", me.manager);
                }
            }
        }
        Ok(())
    }
}
