//! The standard `grpc.health.v1` service. The daemon is serving until shutdown begins, then
//! not serving. `Watch` streams report that change and then end, so an open health watch never
//! holds up shutdown.

use std::collections::BTreeSet;
use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health as HealthApi;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Flips the daemon's health to not serving.
#[derive(Clone, Debug)]
pub struct Health {
    serving: watch::Sender<bool>,
}

impl Health {
    /// Reports every service (and the server as a whole) as not serving: shutdown began.
    pub fn not_serving(&self) {
        self.serving.send_replace(false);
    }
}

/// Answers `Check` and `Watch` for the whole server (`""`) and the services named.
#[derive(Clone, Debug)]
pub struct HealthService {
    serving: watch::Receiver<bool>,
    services: BTreeSet<&'static str>,
    /// A standby: only the server as a whole (`""`) is serving, its services are not.
    standby: bool,
}

/// A health service reporting `services` (and the server as a whole) as serving, and the
/// handle that ends it.
pub fn health(services: impl IntoIterator<Item = &'static str>) -> (Health, HealthService) {
    let (serving, receiver) = watch::channel(true);
    (
        Health { serving },
        HealthService {
            serving: receiver,
            services: services.into_iter().chain([""]).collect(),
            standby: false,
        },
    )
}

/// The health of a standby: the server as a whole (`""`) serving while it is up, each of
/// `services` not serving (they are served by the leader).
pub fn standby(services: impl IntoIterator<Item = &'static str>) -> (Health, HealthService) {
    let (health, mut service) = health(services);
    service.standby = true;
    (health, service)
}

fn status(serving: bool) -> HealthCheckResponse {
    HealthCheckResponse {
        status: if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
        .into(),
    }
}

impl HealthService {
    /// Whether `service` is serving while the server is `up`.
    fn serves(&self, service: &str, up: bool) -> bool {
        up && (service.is_empty() || !self.standby)
    }

    fn known(&self, service: &str) -> Result<(), Status> {
        if self.services.contains(service) {
            Ok(())
        } else {
            Err(Status::not_found(format!("unknown service '{service}'")))
        }
    }
}

#[tonic::async_trait]
impl HealthApi for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        self.known(service)?;
        Ok(Response::new(status(
            self.serves(service, *self.serving.borrow()),
        )))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.known(&request.get_ref().service)?;
        let standing_by = self.standby && !request.get_ref().service.is_empty();
        let mut serving = self.serving.clone();
        let (updates, stream) = mpsc::channel(2);
        tokio::spawn(async move {
            loop {
                let now = *serving.borrow_and_update() && !standing_by;
                if updates.send(Ok(status(now))).await.is_err() || !now {
                    return;
                }
                tokio::select! {
                    () = updates.closed() => return,
                    changed = serving.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}
