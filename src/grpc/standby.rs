//! What a standby serves: over the same mutual TLS, `grpc.health.v1` (the server as a whole
//! serving, the elevate services not, so that load balancers and readiness probes route to the
//! leader) and, to every `elevate.v1` call, `UNAVAILABLE` naming the leader's advertised
//! address, also in the response metadata `elevate-leader`, so that clients go there.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::pb::health_server::HealthServer;
use tower_layer::Layer;
use tower_service::Service;

use super::transport::Admission;
use crate::cluster::Leader;
use crate::proto::v1::access_service_server::AccessServiceServer;
use crate::proto::v1::approval_service_server::ApprovalServiceServer;
use crate::proto::v1::audit_service_server::AuditServiceServer;
use crate::proto::v1::break_glass_service_server::BreakGlassServiceServer;

/// The metadata key naming the leader's advertised address.
pub const LEADER_HEADER: &str = "elevate-leader";

/// The refusal of an `elevate.v1` call on a standby.
pub fn not_leader(leader: &Leader) -> Status {
    if leader.advertise.is_empty() {
        return Status::unavailable(
            "this elevated is a standby and no leader is known yet; retry shortly",
        );
    }
    let mut status = Status::unavailable(format!(
        "this elevated is a standby; the leader is {} at {}",
        leader.node, leader.advertise
    ));
    if let Ok(value) = leader.advertise.parse() {
        status.metadata_mut().insert(LEADER_HEADER, value);
    }
    status
}

/// Serves as a standby on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    admission: Admission,
    leader: watch::Receiver<Leader>,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (_health, health_service) = super::health::standby([
        <AccessServiceServer<super::Access> as NamedService>::NAME,
        <ApprovalServiceServer<super::Approvals> as NamedService>::NAME,
        <BreakGlassServiceServer<super::BreakGlass> as NamedService>::NAME,
        <AuditServiceServer<super::Audit> as NamedService>::NAME,
    ]);
    let routes = Routes::new(HealthServer::new(health_service));
    let accepting = stop.child_token();
    let incoming = super::transport::incoming(listener, admission.clone(), accepting.clone());
    tonic::transport::Server::builder()
        .layer(super::admit::AdmitLayer::new(admission))
        .layer(StandbyLayer { leader })
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stop.cancelled())
        .await
}

/// Answers every `elevate.v1` call with [`not_leader`].
#[derive(Clone, Debug)]
struct StandbyLayer {
    leader: watch::Receiver<Leader>,
}

impl<S> Layer<S> for StandbyLayer {
    type Service = Standby<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Standby {
            inner,
            leader: self.leader.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct Standby<S> {
    inner: S,
    leader: watch::Receiver<Leader>,
}

impl<S, B, R> Service<http::Request<B>> for Standby<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with("/elevate.v1.") {
            let response = not_leader(&self.leader.borrow()).into_http();
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}
