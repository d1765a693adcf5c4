//! Latency of gRPC calls by method and status code: a tower layer around the tonic server.
//!
//! The clock runs from the request's arrival to the response's headers. A unary call that fails
//! answers with headers only (`grpc-status` among them); one that succeeds carries its status in
//! the trailers, after the message, so a response without `grpc-status` in its headers counts
//! as `OK`. A streaming call (`WatchRequest`, `QueryEvents`, `Export`, health `Watch`) is
//! measured to its response headers, not to the end of the stream, and counts as `OK` once the
//! stream started.
//!
//! The `method` label is the method's path (`elevate.v1.AccessService/SubmitRequest`) when it
//! is one the daemon serves, and `unknown` otherwise, so that callers cannot invent label
//! values. `code` is the status's name as gRPC spells it (`OK`, `InvalidArgument`, …).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

use super::Metrics;

include!(concat!(env!("OUT_DIR"), "/grpc_methods.rs"));

/// The health service's methods (from `tonic-health`, not from this crate's protos).
const HEALTH: [&str; 2] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// The `method` label of a request path.
pub fn method(path: &str) -> &'static str {
    let known = match METHODS.binary_search(&path) {
        Ok(index) => Some(METHODS[index]),
        Err(_) => HEALTH.iter().find(|health| **health == path).copied(),
    };
    known.map_or("unknown", |path| path.trim_start_matches('/'))
}

/// The name of a status code, as gRPC spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The status a response's headers announce: `OK` unless they carry `grpc-status`.
fn code_of(headers: &http::HeaderMap) -> &'static str {
    match headers.get("grpc-status") {
        Some(status) => code_name(Code::from_bytes(status.as_bytes())),
        None => code_name(Code::Ok),
    }
}

/// Times every call of the service it wraps.
#[derive(Clone, Debug)]
pub struct RpcLayer {
    metrics: Metrics,
}

impl RpcLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timed {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service whose calls are timed.
#[derive(Clone, Debug)]
pub struct Timed<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, R> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method(request.uri().path());
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            let code = match &response {
                Ok(response) => code_of(response.headers()),
                Err(_) => code_name(Code::Unknown),
            };
            metrics.observe_rpc(method, code, started.elapsed());
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_keep_their_path_and_others_are_unknown() {
        assert_eq!(
            method("/elevate.v1.AccessService/SubmitRequest"),
            "elevate.v1.AccessService/SubmitRequest"
        );
        assert_eq!(
            method("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(method("/elevate.v1.AccessService/Invented"), "unknown");
        assert_eq!(method("/"), "unknown");
        assert!(METHODS.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(METHODS.contains(&"/elevate.v1.AdminService/RevokeLease"));
    }

    #[test]
    fn the_status_comes_from_the_headers_or_is_ok() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(code_of(&headers), "OK");
        headers.insert("grpc-status", http::HeaderValue::from_static("7"));
        assert_eq!(code_of(&headers), "PermissionDenied");
        headers.insert("grpc-status", http::HeaderValue::from_static("junk"));
        assert_eq!(code_of(&headers), "Unknown");
    }
}
