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
    /// Your SSH public key, for resources granted by an SSH certificate (written beside it).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<std::path::PathBuf>,
    /// When it needs an approval (you have an unreviewed break-glass), wait for it.
    #[arg(long)]
    pub wait: bool,
}

impl BreakGlass {
    /// Breaks glass; says when an approval is needed, and with `--wait` follows it.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let ssh_key = match &self.ssh_key {
            None => String::new(),
            Some(file) => crate::cli::certificate::read_public_key(file)?,
        };
        let answer = session
            .clients
            .break_glass
            .break_glass(pb::BreakGlassRequest {
                resource: self.resource.clone(),
                duration: self.duration.clone().unwrap_or_default(),
                reason: self.reason.clone(),
                incident: self.incident.clone(),
                ssh_key,
            })
            .await?
            .into_inner();
        let requested = returned(answer.request)?;
        let mut credentials = answer.credentials;
        let save = |credentials: &mut HashMap<String, String>| match &self.ssh_key {
            Some(key) => {
                crate::cli::certificate::save(credentials, &crate::cli::certificate::beside(key))
            }
            None => Ok(()),
        };
        if requested.break_glass_needed_approval && !settled(&requested) {
            eprintln!(
                "{}: you have an unreviewed break-glass, so this one needs one approval from the review group",
                requested.id
            );
        }
        if self.wait {
            let settled = session.wait(requested, &mut credentials).await?;
            save(&mut credentials)?;
            session.print_delivered(&settled, &credentials);
            return ended(&settled);
        }
        save(&mut credentials)?;
        session.print_delivered(&requested, &credentials);
        Ok(())
    }
}
