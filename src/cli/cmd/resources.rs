//! `elevate resources`: what you may request, and what each needs.

use crate::cli::CliError;
use crate::cli::output::Format;
use crate::cli::session::Session;
use crate::proto::v1 as pb;

/// Resources you may request.
#[derive(Debug, clap::Args)]
pub struct Resources;

impl Resources {
    /// Lists them.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let resources = session
            .clients
            .access
            .list_resources(pb::ListResourcesRequest {})
            .await?
            .into_inner()
            .resources;
        match session.output {
            Format::Json => println!(
                "{}",
                serde_json::Value::Array(resources.iter().map(json).collect())
            ),
            Format::Table => resources.iter().for_each(|r| println!("{}", line(r))),
        }
        Ok(())
    }
}

fn json(r: &pb::ResourceInfo) -> serde_json::Value {
    serde_json::json!({
        "name": r.name,
        "description": r.description,
        "default_duration": r.default_duration,
        "max_duration": r.max_duration,
        "reason_required": r.reason_required,
        "ticket_required": r.ticket_required,
        "ticket_pattern": r.ticket_pattern,
        "auto_approve": r.auto_approve,
        "stages": r.stages,
        "break_glass": r.break_glass,
    })
}

fn line(r: &pb::ResourceInfo) -> String {
    let route = if r.auto_approve {
        "auto-approved".to_owned()
    } else {
        format!("approved by {}", r.stages.join(" then "))
    };
    let mut needs = Vec::new();
    if r.reason_required {
        needs.push("reason".to_owned());
    }
    if r.ticket_required {
        needs.push(format!("ticket {}", r.ticket_pattern));
    }
    format!(
        "{:<16} max {:<6} {}{}  {}",
        r.name,
        r.max_duration,
        route,
        if needs.is_empty() {
            String::new()
        } else {
            format!("; needs {}", needs.join(", "))
        },
        r.description
    )
}
