//! Connecting to the daemon over mutual TLS.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

pub use super::failover::Failover;

use super::CliError;
use crate::proto::v1::access_service_client::AccessServiceClient;
use crate::proto::v1::admin_service_client::AdminServiceClient;
use crate::proto::v1::approval_service_client::ApprovalServiceClient;
use crate::proto::v1::audit_service_client::AuditServiceClient;
use crate::proto::v1::break_glass_service_client::BreakGlassServiceClient;

/// The files a client presents and trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFiles {
    /// CA certificate the server's certificate must chain to.
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: PathBuf,
    /// Client key.
    pub key: PathBuf,
}

fn read(what: &str, file: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(file).map_err(|error| {
        CliError::Usage(format!(
            "cannot read the {what} {}: {error}",
            file.display()
        ))
    })
}

/// Clients of the services the CLI uses, over one connection.
#[derive(Clone, Debug)]
pub struct Clients {
    /// Requests and leases.
    pub access: AccessServiceClient<Failover>,
    /// Approvals.
    pub approval: ApprovalServiceClient<Failover>,
    /// Break-glass and reviews.
    pub break_glass: BreakGlassServiceClient<Failover>,
    /// The audit trail.
    pub audit: AuditServiceClient<Failover>,
    /// Administration.
    pub admin: AdminServiceClient<Failover>,
}

/// Connects to `endpoint` presenting `files`' certificate. `endpoint` may name several
/// daemons of a cluster, separated by commas: calls then go to the leader, through failovers
/// ([`Failover`]).
pub async fn connect(endpoint: &str, files: &ClientFiles) -> Result<Clients, CliError> {
    open(endpoint, files, true).await
}

/// Connects to exactly the daemon at `endpoint`: a standby's refusal (naming the leader) is
/// the answer, not followed.
pub async fn connect_to(endpoint: &str, files: &ClientFiles) -> Result<Clients, CliError> {
    open(endpoint, files, false).await
}

async fn open(endpoint: &str, files: &ClientFiles, follow: bool) -> Result<Clients, CliError> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("CA certificate", &files.ca)?))
        .identity(Identity::from_pem(
            read("client certificate", &files.cert)?,
            read("client key", &files.key)?,
        ));
    let endpoints = endpoint
        .split(',')
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .map(str::to_owned)
        .collect();
    let channel = Failover::connect(endpoints, tls, follow).await?;
    Ok(Clients {
        access: AccessServiceClient::new(channel.clone()),
        approval: ApprovalServiceClient::new(channel.clone()),
        break_glass: BreakGlassServiceClient::new(channel.clone()),
        audit: AuditServiceClient::new(channel.clone()),
        admin: AdminServiceClient::new(channel),
    })
}

/// An error and its sources on one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
