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
        },
    )
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
        self.known(&request.get_ref().service)?;
        Ok(Response::new(status(*self.serving.borrow())))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.known(&request.get_ref().service)?;
        let mut serving = self.serving.clone();
        let (updates, stream) = mpsc::channel(2);
        tokio::spawn(async move {
            loop {
                let now = *serving.borrow_and_update();
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
