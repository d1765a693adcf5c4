//! `AuditService`: queries, history, signed exports and the access report, for auditors.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::status::{from_broker, invalid};
use super::{caller, convert};
use crate::audit::export::Format;
use crate::audit::report::Window;
use crate::broker::{Gate, Trail};
use crate::proto::v1 as pb;
use crate::proto::v1::audit_service_server::AuditService;

/// Serves [`AuditService`] over the audit [`Trail`].
#[derive(Clone, Debug)]
pub struct Audit {
    trail: Trail,
    gate: Gate,
}

impl Audit {
    /// The service over `broker`.
    pub fn new(trail: Trail, gate: Gate) -> Self {
        Self { trail, gate }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for Audit {
    type QueryEventsStream = BoxStream<pb::AuditEvent>;
    type ExportStream = BoxStream<pb::ExportChunk>;

    async fn query_events(
        &self,
        request: Request<pb::QueryEventsRequest>,
    ) -> Result<Response<Self::QueryEventsStream>, Status> {
        let caller = caller(&self.gate, &request)?;
        let body = request.get_ref();
        let filter = convert::audit_filter(body)?;
        let events = self
            .trail
            .query_events(&caller, filter, body.limit as usize)
            .map_err(from_broker)?;
        let stream = ReceiverStream::new(events).map(|event| match event {
            Ok(event) => Ok(convert::event_to_proto(&event)),
            Err(error) => Err(from_broker(error)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let id = convert::request_id("request_id", &request.get_ref().request_id)?;
        let (record, events) = self.trail.history(&caller, id).await.map_err(from_broker)?;
        Ok(Response::new(pb::GetHistoryResponse {
            events: events.iter().map(convert::event_to_proto).collect(),
            request: Some(convert::request_to_proto(&record)),
        }))
    }

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let caller = caller(&self.gate, &request)?;
        let body = request.get_ref();
        let format: Format = match body.format.as_str() {
            "" => Format::Jsonl,
            other => other.parse().map_err(|e| invalid("format", e))?,
        };
        let filter = match &body.filter {
            Some(filter) => convert::audit_filter(filter)?,
            None => crate::audit::query::Filter::default(),
        };
        let chunks = self
            .trail
            .export(&caller, filter, format)
            .await
            .map_err(from_broker)?;
        let stream = ReceiverStream::new(chunks).map(|chunk| match chunk {
            Ok(data) => Ok(pb::ExportChunk { data }),
            Err(error) => Err(from_broker(error)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let body = request.get_ref();
        let window = Window {
            since: convert::time("since_ms", body.since_ms)?,
            until: convert::time("until_ms", body.until_ms)?,
        };
        let report = self
            .trail
            .report(&caller, window)
            .await
            .map_err(from_broker)?;
        let report_json = serde_json::to_string(&report)
            .map_err(|_| Status::internal("the report could not be encoded"))?;
        Ok(Response::new(pb::ReportResponse {
            report_json,
            report: Some(convert::report(report)),
        }))
    }
}
