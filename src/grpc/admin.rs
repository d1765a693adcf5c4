//! `AdminService`: ending leases at once and reconciling targets (admin group only). Reloading
//! and offboarding over gRPC are not served yet: they authenticate the caller, then answer
//! `UNIMPLEMENTED` saying so.

use tonic::{Request, Response, Status};

use super::status::{from_broker, invalid};
use super::{caller, convert};
use crate::broker::Broker;
use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_server::AdminService;

/// Serves [`AdminService`] over a [`Broker`].
#[derive(Clone, Debug)]
pub struct Admin {
    broker: Broker,
}

impl Admin {
    /// The service over `broker`.
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
impl AdminService for Admin {
    async fn revoke_lease(
        &self,
        request: Request<pb::RevokeLeaseRequest>,
    ) -> Result<Response<pb::RevokeLeaseResponse>, Status> {
        let caller = caller(&self.broker, &request)?;
        Broker::require_admin(&caller, "revoking a lease").map_err(from_broker)?;
        let body = request.into_inner();
        let id = convert::request_id("id", &body.id)?;
        let reason = convert::reason("reason", &body.reason)?
            .ok_or_else(|| invalid("reason", "a reason is required to revoke a lease"))?;
        let revoked = self
            .broker
            .admin_revoke(&caller, id, reason)
            .await
            .map_err(from_broker)?;
        Ok(Response::new(pb::RevokeLeaseResponse {
            request: Some(convert::request_to_proto(&revoked)),
        }))
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
        let caller = caller(&self.broker, &request)?;
        Broker::require_admin(&caller, "reconciling targets").map_err(from_broker)?;
        let body = request.into_inner();
        let resource = if body.resource.is_empty() {
            None
        } else {
            Some(convert::resource(&body.resource)?)
        };
        let run = self
            .broker
            .admin_reconcile(&caller, resource)
            .await
            .map_err(from_broker)?;
        Ok(Response::new(pb::ReconcileResponse {
            corrections: run.corrections.iter().map(ToString::to_string).collect(),
            checked: run.checked,
            skipped: run.skipped,
        }))
    }
}
