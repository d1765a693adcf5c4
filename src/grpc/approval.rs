//! `ApprovalService`: what waits for an approver, and their decisions.

use tonic::{Request, Response, Status};

use super::status::{from_broker, invalid};
use super::{caller, convert, idempotent};
use crate::broker::{Broker, Gate};
use crate::proto::v1 as pb;
use crate::proto::v1::approval_service_server::ApprovalService;

/// Serves [`ApprovalService`] over a [`Broker`].
#[derive(Clone, Debug)]
pub struct Approvals {
    broker: Broker,
    gate: Gate,
}

impl Approvals {
    /// The service over `broker`.
    pub fn new(broker: Broker, gate: Gate) -> Self {
        Self { broker, gate }
    }
}

#[tonic::async_trait]
impl ApprovalService for Approvals {
    async fn list_pending(
        &self,
        request: Request<pb::ListPendingRequest>,
    ) -> Result<Response<pb::ListPendingResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let pending = self.broker.pending(&caller).await.map_err(from_broker)?;
        Ok(Response::new(pb::ListPendingResponse {
            requests: pending.iter().map(convert::request_to_proto).collect(),
        }))
    }

    async fn approve(
        &self,
        request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::ApproveResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.ApprovalService/Approve",
            &request,
        )?;
        let body = request.into_inner();
        let id = convert::request_id("id", &body.id)?;
        let comment = convert::comment(&body.comment)?;
        let approved = idempotent::once(
            &self.broker,
            claim,
            self.broker.approve(&caller, id, comment),
        )
        .await?
        .request(&self.broker, &caller)
        .await?;
        Ok(Response::new(pb::ApproveResponse {
            request: Some(convert::request_to_proto(&approved)),
        }))
    }

    async fn deny(
        &self,
        request: Request<pb::DenyRequest>,
    ) -> Result<Response<pb::DenyResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.ApprovalService/Deny",
            &request,
        )?;
        let body = request.into_inner();
        let id = convert::request_id("id", &body.id)?;
        let reason = convert::reason("reason", &body.reason)?
            .ok_or_else(|| invalid("reason", "a reason is required to deny"))?;
        let denied = idempotent::once(&self.broker, claim, self.broker.deny(&caller, id, reason))
            .await?
            .request(&self.broker, &caller)
            .await?;
        Ok(Response::new(pb::DenyResponse {
            request: Some(convert::request_to_proto(&denied)),
        }))
    }
}
