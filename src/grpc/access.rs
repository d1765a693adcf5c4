//! `AccessService`: requests and leases from the requester's side.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::status::{from_broker, invalid};
use super::{caller, convert, idempotent};
use std::collections::HashMap;

use crate::broker::{Broker, Caller, Gate};
use crate::model::{AccessRequest, Page};
use crate::policy::Ask;
use crate::proto::v1 as pb;
use crate::proto::v1::access_service_server::AccessService;

/// Serves [`AccessService`] over a [`Broker`].
#[derive(Clone, Debug)]
pub struct Access {
    broker: Broker,
    gate: Gate,
}

impl Access {
    /// The service over `broker`.
    pub fn new(broker: Broker, gate: Gate) -> Self {
        Self { broker, gate }
    }
}

/// `request` on the wire for `caller`, with the credentials waiting for them when they are its
/// holder (taken: given out once).
pub(super) fn delivered(
    broker: &Broker,
    caller: &Caller,
    request: &AccessRequest,
) -> (pb::AccessRequest, HashMap<String, String>) {
    let mut wire = convert::request_to_proto(request);
    let credentials = broker
        .collect_credentials(caller, request)
        .map(|c| c.into_pairs().into_iter().collect())
        .unwrap_or_default();
    wire.credentials_waiting = broker.credentials_waiting(caller, request);
    (wire, credentials)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchRequestResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AccessService for Access {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        Ok(Response::new(pb::WhoAmIResponse {
            principal: caller.principal.to_string(),
            groups: caller.groups.iter().map(ToString::to_string).collect(),
            manager: caller
                .manager
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            can_see_all: caller.sees_all(),
        }))
    }

    async fn list_resources(
        &self,
        request: Request<pb::ListResourcesRequest>,
    ) -> Result<Response<pb::ListResourcesResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        Ok(Response::new(pb::ListResourcesResponse {
            resources: self
                .broker
                .resources(&caller)
                .iter()
                .map(convert::resource_to_proto)
                .collect(),
        }))
    }

    async fn submit_request(
        &self,
        request: Request<pb::SubmitRequestRequest>,
    ) -> Result<Response<pb::SubmitRequestResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.AccessService/SubmitRequest",
            &request,
        )?;
        let body = request.into_inner();
        let ask = Ask {
            resource: convert::resource(&body.resource)?,
            duration: convert::duration("duration", &body.duration)?,
            reason: convert::reason("reason", &body.reason)?,
            ticket: convert::ticket(&body.ticket)?,
            ssh_key: convert::ssh_key(&body.ssh_key)?,
        };
        let submitted = idempotent::once(&self.broker, claim, self.broker.submit(&caller, ask))
            .await?
            .request(&self.broker, &caller)
            .await?;
        let (wire, credentials) = delivered(&self.broker, &caller, &submitted);
        Ok(Response::new(pb::SubmitRequestResponse {
            request: Some(wire),
            credentials,
        }))
    }

    async fn get_request(
        &self,
        request: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::GetRequestResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let id = convert::request_id("id", &request.get_ref().id)?;
        let found = self
            .broker
            .request(&caller, id)
            .await
            .map_err(from_broker)?;
        let (wire, credentials) = delivered(&self.broker, &caller, &found);
        Ok(Response::new(pb::GetRequestResponse {
            request: Some(wire),
            credentials,
        }))
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let body = request.into_inner();
        let state = convert::state_filter(body.state)?;
        let limit = convert::limit(body.limit)?;
        let before = if body.page_token.is_empty() {
            None
        } else {
            Some(convert::request_id("page_token", &body.page_token)?)
        };
        let requests = self
            .broker
            .list(&caller, state, body.all, Page { before, limit })
            .await
            .map_err(from_broker)?;
        let next_page_token = match requests.last() {
            Some(last) if requests.len() == limit => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListRequestsResponse {
            requests: requests.iter().map(convert::request_to_proto).collect(),
            next_page_token,
        }))
    }

    type WatchRequestStream = WatchStream;

    async fn watch_request(
        &self,
        request: Request<pb::WatchRequestRequest>,
    ) -> Result<Response<Self::WatchRequestStream>, Status> {
        let caller = caller(&self.gate, &request)?;
        let id = convert::request_id("id", &request.get_ref().id)?;
        let updates = self.broker.watch(&caller, id).await.map_err(from_broker)?;
        let broker = self.broker.clone();
        let stream = ReceiverStream::new(updates).map(move |update| {
            update
                .map(|request| {
                    let (wire, credentials) = delivered(&broker, &caller, &request);
                    pb::WatchRequestResponse {
                        request: Some(wire),
                        credentials,
                    }
                })
                .map_err(from_broker)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_request(
        &self,
        request: Request<pb::CancelRequestRequest>,
    ) -> Result<Response<pb::CancelRequestResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.AccessService/CancelRequest",
            &request,
        )?;
        let id = convert::request_id("id", &request.get_ref().id)?;
        let cancelled = idempotent::once(&self.broker, claim, self.broker.cancel(&caller, id))
            .await?
            .request(&self.broker, &caller)
            .await?;
        Ok(Response::new(pb::CancelRequestResponse {
            request: Some(convert::request_to_proto(&cancelled)),
        }))
    }

    async fn release_lease(
        &self,
        request: Request<pb::ReleaseLeaseRequest>,
    ) -> Result<Response<pb::ReleaseLeaseResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.AccessService/ReleaseLease",
            &request,
        )?;
        let id = convert::request_id("id", &request.get_ref().id)?;
        let released = idempotent::once(&self.broker, claim, self.broker.release(&caller, id))
            .await?
            .request(&self.broker, &caller)
            .await?;
        Ok(Response::new(pb::ReleaseLeaseResponse {
            request: Some(convert::request_to_proto(&released)),
        }))
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Result<Response<pb::ExtendLeaseResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.AccessService/ExtendLease",
            &request,
        )?;
        let body = request.into_inner();
        let id = convert::request_id("id", &body.id)?;
        let by = convert::duration("by", &body.by)?
            .ok_or_else(|| invalid("by", "say how much longer, e.g. 30m"))?;
        let reason = convert::reason("reason", &body.reason)?
            .ok_or_else(|| invalid("reason", "a reason is required to extend"))?;
        let extended = idempotent::once(
            &self.broker,
            claim,
            self.broker.extend(&caller, id, by, reason),
        )
        .await?
        .request(&self.broker, &caller)
        .await?;
        Ok(Response::new(pb::ExtendLeaseResponse {
            request: Some(convert::request_to_proto(&extended)),
        }))
    }

    async fn get_credentials(
        &self,
        request: Request<pb::GetCredentialsRequest>,
    ) -> Result<Response<pb::GetCredentialsResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let id = convert::request_id("id", &request.get_ref().id)?;
        let credentials = self
            .broker
            .credentials(&caller, id)
            .await
            .map_err(from_broker)?;
        Ok(Response::new(pb::GetCredentialsResponse {
            credentials: credentials.into_pairs().into_iter().collect(),
        }))
    }
}
