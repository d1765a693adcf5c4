//! `elevate history`: one request's whole story.

use serde_json::json;

use super::audit::{HEADER, event_json, event_row};
use crate::cli::CliError;
use crate::cli::output::{self, Format};
use crate::cli::session::{Session, returned};
use crate::proto::v1 as pb;

/// One request's whole story: every event, every approver, the grant and its end.
#[derive(Debug, clap::Args)]
pub struct History {
    /// The request id.
    pub id: String,
}

/// `elevate history ID`: the request, then every event about it, oldest first.
impl History {
    /// Prints the request, then every event about it, oldest first.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let id = &self.id;
        let format = session.output;
        let clients = &mut session.clients;
        let answer = clients
            .audit
            .get_history(pb::GetHistoryRequest {
                request_id: id.to_owned(),
            })
            .await?
            .into_inner();
        let request = returned(answer.request)?;
        match format {
            Format::Json => println!(
                "{}",
                json!({
                    "request": output::request_json(&request),
                    "events": answer.events.iter().map(event_json).collect::<Vec<_>>(),
                })
            ),
            Format::Table => {
                println!("{}", output::request_table(&request));
                println!();
                println!("{HEADER}");
                for event in &answer.events {
                    println!("{}", event_row(event));
                }
            }
        }
        Ok(())
    }
}
