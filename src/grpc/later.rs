//! Services whose API is designed but not yet served: administration. Each call authenticates
//! the caller, then answers `UNIMPLEMENTED` with a message saying what is missing.

use tonic::{Request, Response, Status};

use super::caller;
use crate::broker::Broker;
use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_server::AdminService;

/// The admin service, not yet implemented.
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
