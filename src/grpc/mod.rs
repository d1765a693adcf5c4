//! The gRPC edge: tonic services with no business logic. Each handler authenticates the caller
//! from the connection's verified client certificate, parses the message into domain values
//! ([`convert`]), calls the broker, and maps errors to statuses ([`status`], the only place
//! that happens). Also serves the standard `grpc.health.v1` service ([`health`]).

mod access;
mod admin;
pub mod admit;
mod approval;
mod audit;
mod break_glass;
pub mod convert;
pub mod health;
pub mod idempotent;
pub mod refuse;
pub mod standby;
pub mod status;
pub mod transport;

use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::{Request, Status};
use tonic_health::pb::health_server::HealthServer;

pub use access::Access;
pub use admin::Admin;
pub use approval::Approvals;
pub use audit::Audit;
pub use break_glass::BreakGlass;
pub use health::Health;

use crate::broker::{Broker, Caller, Gate, Trail};
use crate::proto::v1::access_service_server::AccessServiceServer;
use crate::proto::v1::admin_service_server::AdminServiceServer;
use crate::proto::v1::approval_service_server::ApprovalServiceServer;
use crate::proto::v1::audit_service_server::AuditServiceServer;
use crate::proto::v1::break_glass_service_server::BreakGlassServiceServer;

/// Largest request message accepted, in bytes. Far above any valid request, so an oversize
/// field still reaches validation and gets `INVALID_ARGUMENT` naming the field; only messages
/// beyond this are cut off by the transport (`OUT_OF_RANGE`) before they are parsed.
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// The caller of `request`, from its connection's verified certificate and the directory.
pub fn caller<T>(gate: &Gate, request: &Request<T>) -> Result<Caller, Status> {
    let identity = &request
        .extensions()
        .get::<transport::Peer>()
        .ok_or_else(|| Status::unauthenticated("no verified client certificate"))?
        .identity;
    match &identity.principal {
        Ok(principal) => gate
            .authenticate(principal.clone())
            .map_err(status::from_broker),
        Err(reason) => Err(Status::unauthenticated(reason.clone())),
    }
}

/// Every elevate service, each over the part it needs, plus health reporting them serving.
pub fn routes(
    broker: &Broker,
    gate: &Gate,
    trail: &Trail,
    cluster: Option<&crate::cluster::Leadership>,
) -> (Routes, Health) {
    let (health, health_service) = health::health([
        <AccessServiceServer<Access> as NamedService>::NAME,
        <ApprovalServiceServer<Approvals> as NamedService>::NAME,
        <BreakGlassServiceServer<BreakGlass> as NamedService>::NAME,
        <AuditServiceServer<Audit> as NamedService>::NAME,
    ]);
    let admin = Admin::new(broker.clone(), gate.clone(), cluster.cloned());
    let routes = Routes::new(HealthServer::new(health_service))
        .add_service(
            AccessServiceServer::new(Access::new(broker.clone(), gate.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ApprovalServiceServer::new(Approvals::new(broker.clone(), gate.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            BreakGlassServiceServer::new(BreakGlass::new(broker.clone(), gate.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            AuditServiceServer::new(Audit::new(trail.clone(), gate.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(AdminServiceServer::new(admin).max_decoding_message_size(MAX_MESSAGE));
    // Server reflection (v1 and v1alpha), so that grpcurl and similar tools can list and call
    // the API without the proto files. It describes the API only; every call still needs a
    // client certificate, and each service still checks the caller's role.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => routes.add_service(v1).add_service(v1alpha),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "gRPC server reflection is unavailable");
            routes
        }
    };
    (routes, health)
}
