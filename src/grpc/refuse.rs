//! A tower layer around the gRPC services that answers a call itself, with a status, when its
//! rule says so, before the call reaches a service: the per-call admission of client
//! certificates ([`super::admit`]) and the standby's answer naming the leader
//! ([`super::standby`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

/// Refuses the calls `refuse` returns a status for (given the call's path and extensions).
#[derive(Clone, Debug)]
pub struct RefuseLayer<F> {
    refuse: F,
}

impl<F> RefuseLayer<F>
where
    F: Fn(&http::Uri, &http::Extensions) -> Option<Status> + Clone,
{
    /// Refuses by `refuse`.
    pub fn new(refuse: F) -> Self {
        Self { refuse }
    }
}

impl<S, F: Clone> Layer<S> for RefuseLayer<F> {
    type Service = Refusing<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Refusing {
            inner,
            refuse: self.refuse.clone(),
        }
    }
}

/// A service some of whose calls are refused before they reach it.
#[derive(Clone, Debug)]
pub struct Refusing<S, F> {
    inner: S,
    refuse: F,
}

impl<S, F, B, R> Service<http::Request<B>> for Refusing<S, F>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
    F: Fn(&http::Uri, &http::Extensions) -> Option<Status>,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match (self.refuse)(request.uri(), request.extensions()) {
            Some(status) => {
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
            None => Box::pin(self.inner.call(request)),
        }
    }
}
