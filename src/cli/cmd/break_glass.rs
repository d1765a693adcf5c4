//! `elevate break-glass`: access at once during an incident, reviewed afterwards.

use std::collections::HashMap;

use crate::cli::CliError;
use crate::cli::session::{Session, ended, returned, settled};
use crate::proto::v1 as pb;

/// Break glass: access at once during an incident, reviewed afterwards.
#[derive(Debug, clap::Args)]
pub struct BreakGlass {
    /// The resource.
    pub resource: String,
    /// How long (at most the resource's break-glass maximum).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// What is going on (required).
    #[arg(long)]
    pub reason: String,
    /// The incident reference (required).
    #[arg(long)]
    pub incident: String,
    /// When it needs an approval (you have an unreviewed break-glass), wait for it.
    #[arg(long)]
    pub wait: bool,
}

impl BreakGlass {
    /// Breaks glass; says when an approval is needed, and with `--wait` follows it.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let requested = returned(
            session
                .clients
                .break_glass
                .break_glass(pb::BreakGlassRequest {
                    resource: self.resource.clone(),
                    duration: self.duration.clone().unwrap_or_default(),
                    reason: self.reason.clone(),
                    incident: self.incident.clone(),
                })
                .await?
                .into_inner()
                .request,
        )?;
        if requested.break_glass_needed_approval && !settled(&requested) {
            eprintln!(
                "{}: you have an unreviewed break-glass, so this one needs one approval from the review group",
                requested.id
            );
        }
        if self.wait {
            let mut credentials = HashMap::new();
            let settled = session.wait(requested, &mut credentials).await?;
            session.print_delivered(&settled, &credentials);
            return ended(&settled);
        }
        session.print_request(&requested);
        Ok(())
    }
}
