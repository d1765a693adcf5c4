//! What every command that talks to the daemon has: the clients, the output format, and the
//! ways of showing and following requests.

use std::collections::HashMap;

use tokio_stream::StreamExt;

use super::CliError;
use super::client::Clients;
use super::output::{self, Format};
use crate::proto::v1 as pb;

/// A connection to the daemon and how to print its answers.
pub struct Session {
    /// The gRPC clients, on one connection.
    pub clients: Clients,
    /// Table or JSON.
    pub output: Format,
}

impl Session {
    /// Prints one request.
    pub fn print_request(&self, request: &pb::AccessRequest) {
        self.print_delivered(request, &HashMap::new());
    }

    /// A request, with the credentials the daemon handed over with it (shown once: the daemon
    /// keeps no copy).
    pub fn print_delivered(
        &self,
        request: &pb::AccessRequest,
        credentials: &HashMap<String, String>,
    ) {
        match self.output {
            Format::Json => {
                let mut json = output::request_json(request);
                if !credentials.is_empty() {
                    json["credentials"] = output::credentials_json(credentials);
                }
                println!("{json}");
            }
            Format::Table => {
                println!("{}", output::request_table(request));
                if !credentials.is_empty() {
                    println!("{}", output::credentials_table(credentials));
                }
            }
        }
    }

    /// Prints requests, one a line (or a JSON array).
    pub fn print_requests(&self, requests: &[pb::AccessRequest]) {
        match self.output {
            Format::Json => println!(
                "{}",
                serde_json::Value::Array(requests.iter().map(output::request_json).collect())
            ),
            Format::Table => println!("{}", output::requests_table(requests)),
        }
    }

    /// Follows `submitted` until it is active or ended, showing each change on stderr and
    /// keeping the credentials that come with it.
    pub async fn wait(
        &mut self,
        submitted: pb::AccessRequest,
        credentials: &mut HashMap<String, String>,
    ) -> Result<pb::AccessRequest, CliError> {
        let mut last = submitted;
        eprintln!(
            "{} {}: {}",
            last.id,
            output::state_word(last.state),
            output::summary(&last)
        );
        if settled(&last) {
            return Ok(last);
        }
        // The daemon closes connections that reach their maximum age, a restart or a failover
        // ends a stream, and a stopping daemon ends it cleanly: follow the request again, on
        // whichever node answers, until no update came for `failover::WAIT`.
        let mut heard = std::time::Instant::now();
        while heard.elapsed() < super::failover::WAIT {
            let mut updates = match self
                .clients
                .access
                .watch_request(pb::WatchRequestRequest {
                    id: last.id.clone(),
                })
                .await
            {
                Ok(updates) => updates.into_inner(),
                Err(status) if again(&status) => {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    continue;
                }
                Err(status) => return Err(status.into()),
            };
            while let Some(update) = updates.next().await {
                let update = match update {
                    Ok(update) => update,
                    Err(status) if again(&status) => break,
                    Err(status) => return Err(status.into()),
                };
                heard = std::time::Instant::now();
                if !update.credentials.is_empty() {
                    *credentials = update.credentials;
                }
                let Some(request) = update.request else {
                    continue;
                };
                if request.state != last.state || request.decisions.len() != last.decisions.len() {
                    eprintln!(
                        "{} {}: {}",
                        request.id,
                        output::state_word(request.state),
                        output::summary(&request)
                    );
                }
                last = request;
                if settled(&last) {
                    return Ok(last);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(CliError::Interrupted(format!(
            "{}: no daemon sent updates for {:?} while it was {}; check with: elevate status {}",
            last.id,
            super::failover::WAIT,
            output::state_word(last.state),
            last.id
        )))
    }
}

/// Whether a failed watch is worth starting again: the daemon was unreachable, stopping, or a
/// standby, or the connection broke.
fn again(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

/// The request an answer carries; the daemon always sends one.
pub fn returned(request: Option<pb::AccessRequest>) -> Result<pb::AccessRequest, CliError> {
    request.ok_or_else(|| {
        CliError::Call(tonic::Status::internal(
            "the daemon's answer held no request",
        ))
    })
}

/// Whether `request` is past waiting (neither pending nor approved).
pub fn settled(request: &pb::AccessRequest) -> bool {
    !matches!(
        pb::RequestState::try_from(request.state),
        Ok(pb::RequestState::Pending | pb::RequestState::Approved)
    )
}

/// After `--wait`: an error (exit 3) unless the request ended up active.
pub fn ended(request: &pb::AccessRequest) -> Result<(), CliError> {
    match pb::RequestState::try_from(request.state) {
        Ok(pb::RequestState::Active) => Ok(()),
        _ => Err(CliError::Ended(format!(
            "{} is {}{}",
            request.id,
            output::state_word(request.state),
            if request.end_reason.is_empty() {
                String::new()
            } else {
                format!(": {}", request.end_reason)
            }
        ))),
    }
}
