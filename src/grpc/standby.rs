//! What a standby serves: over the same mutual TLS, `grpc.health.v1` (the server as a whole
//! serving, the elevate services not, so that load balancers and readiness probes route to the
//! leader) and, to every `elevate.v1` call, `UNAVAILABLE` naming the leader's advertised
//! address, also in the response metadata `elevate-leader`, so that clients go there.

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::pb::health_server::HealthServer;

use super::transport::Admission;
use crate::cluster::Leader;
use crate::proto::v1::access_service_server::AccessServiceServer;
use crate::proto::v1::approval_service_server::ApprovalServiceServer;
use crate::proto::v1::audit_service_server::AuditServiceServer;
use crate::proto::v1::break_glass_service_server::BreakGlassServiceServer;

/// The metadata key naming the leader's advertised address.
pub const LEADER_HEADER: &str = "elevate-leader";

/// The metadata key saying the refusal comes from a standby, which did nothing of the call.
pub const STANDBY_HEADER: &str = "elevate-standby";

/// The refusal of an `elevate.v1` call on a standby.
pub fn not_leader(leader: &Leader) -> Status {
    let mut status = if leader.advertise.is_empty() {
        Status::unavailable("this elevated is a standby and no leader is known yet; retry shortly")
    } else {
        Status::unavailable(format!(
            "this elevated is a standby; the leader is {} at {}",
            leader.node, leader.advertise
        ))
    };
    status.metadata_mut().insert(
        STANDBY_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    if !leader.advertise.is_empty()
        && let Ok(value) = leader.advertise.parse()
    {
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
        .layer(super::admit::layer(admission))
        .layer(super::refuse::RefuseLayer::new(
            move |path: &http::Uri, _: &http::Extensions| {
                path.path()
                    .starts_with("/elevate.v1.")
                    .then(|| not_leader(&leader.borrow()))
            },
        ))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stop.cancelled())
        .await
}
