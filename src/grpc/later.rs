//! Services whose API is designed but not yet served: audit queries and administration. Each authenticates the caller, then answers `UNIMPLEMENTED` with a
//! message saying what is missing.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::caller;
use crate::broker::Broker;
use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::audit_service_server::AuditService;

/// Audit and admin services, not yet implemented.
#[derive(Clone, Debug)]
pub struct Later {
    broker: Broker,
}

impl Later {
    /// The services over `broker`.
    pub fn new(broker: Broker) -> Self {
        Self { broker }
    }

    fn refuse<T, R>(&self, request: &Request<T>, what: &str) -> Result<R, Status> {
        caller(&self.broker, request)?;
        Err(Status::unimplemented(format!(
            "{what} is not available in this version of elevated"
        )))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for Later {
    type QueryEventsStream = BoxStream<pb::AuditEvent>;
    type ExportStream = BoxStream<pb::ExportChunk>;

    async fn query_events(
        &self,
        request: Request<pb::QueryEventsRequest>,
    ) -> Result<Response<Self::QueryEventsStream>, Status> {
        self.refuse(&request, "audit querying")
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        self.refuse(&request, "request history")
    }

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        self.refuse(&request, "audit export")
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        self.refuse(&request, "the access report")
    }
}

#[tonic::async_trait]
impl AdminService for Later {
    async fn revoke_lease(
        &self,
        request: Request<pb::RevokeLeaseRequest>,
    ) -> Result<Response<pb::RevokeLeaseResponse>, Status> {
        self.refuse(&request, "administrative revocation")
    }

    async fn reload(
        &self,
        request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        self.refuse(&request, "reloading over gRPC")
    }

    async fn offboard(
        &self,
        request: Request<pb::OffboardRequest>,
    ) -> Result<Response<pb::OffboardResponse>, Status> {
        self.refuse(&request, "offboarding")
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        self.refuse(&request, "drift reconciliation")
    }
}
