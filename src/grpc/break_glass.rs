//! `BreakGlassService`: break-glass grants and their reviews.

use tonic::{Request, Response, Status};

use super::status::{from_broker, invalid};
use super::{caller, convert, idempotent};
use crate::broker::{Broker, Gate};
use crate::policy::BreakGlassAsk;
use crate::proto::v1 as pb;
use crate::proto::v1::break_glass_service_server::BreakGlassService;

/// Serves [`BreakGlassService`] over a [`Broker`].
#[derive(Clone, Debug)]
pub struct BreakGlass {
    broker: Broker,
    gate: Gate,
}

impl BreakGlass {
    /// The service over `broker`.
    pub fn new(broker: Broker, gate: Gate) -> Self {
        Self { broker, gate }
    }
}

#[tonic::async_trait]
impl BreakGlassService for BreakGlass {
    async fn break_glass(
        &self,
        request: Request<pb::BreakGlassRequest>,
    ) -> Result<Response<pb::BreakGlassResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.BreakGlassService/BreakGlass",
            &request,
        )?;
        let body = request.into_inner();
        let ask = BreakGlassAsk {
            resource: convert::resource(&body.resource)?,
            duration: convert::duration("duration", &body.duration)?,
            reason: convert::reason("reason", &body.reason)?
                .ok_or_else(|| invalid("reason", "a reason is required to break glass"))?,
            incident: convert::incident(&body.incident)?,
            ssh_key: convert::ssh_key(&body.ssh_key)?,
        };
        let granted = idempotent::once(&self.broker, claim, self.broker.break_glass(&caller, ask))
            .await?
            .request(&self.broker, &caller)
            .await?;
        let (wire, credentials) = super::access::delivered(&self.broker, &caller, &granted);
        Ok(Response::new(pb::BreakGlassResponse {
            request: Some(wire),
            credentials,
        }))
    }

    async fn list_reviews(
        &self,
        request: Request<pb::ListReviewsRequest>,
    ) -> Result<Response<pb::ListReviewsResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let body = request.into_inner();
        let reviews = self
            .broker
            .reviews(&caller, body.overdue_only, body.all)
            .await
            .map_err(from_broker)?;
        Ok(Response::new(pb::ListReviewsResponse {
            reviews: reviews
                .iter()
                .filter_map(convert::review_to_proto)
                .collect(),
        }))
    }

    async fn submit_review(
        &self,
        request: Request<pb::SubmitReviewRequest>,
    ) -> Result<Response<pb::SubmitReviewResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.BreakGlassService/SubmitReview",
            &request,
        )?;
        let body = request.into_inner();
        let id = convert::request_id("id", &body.id)?;
        let justified = match body.verdict.as_str() {
            "justified" => true,
            "unjustified" => false,
            other => {
                return Err(invalid(
                    "verdict",
                    format!("'{other}' is not a verdict: expected justified or unjustified"),
                ));
            }
        };
        let notes = convert::reason("notes", &body.notes)?;
        let reviewed = idempotent::once(
            &self.broker,
            claim,
            self.broker.review(&caller, id, justified, notes),
        )
        .await?
        .request(&self.broker, &caller)
        .await?;
        Ok(Response::new(pb::SubmitReviewResponse {
            review: convert::review_to_proto(&reviewed),
            request: Some(convert::request_to_proto(&reviewed)),
        }))
    }
}
