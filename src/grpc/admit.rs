//! Every call is admitted again: a tower layer around the gRPC services checks the connection's
//! client certificate against the revocation sources in force before the call reaches a
//! service, so a certificate revoked while its connection was open gets `UNAUTHENTICATED`
//! from its very next call, health and reflection included. The connection is then closed by
//! the accept loop's sweep within a second (after this answer has been sent).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use super::transport::{Admission, Peer};

/// Checks the caller's certificate on every call.
#[derive(Clone, Debug)]
pub struct AdmitLayer {
    admission: Admission,
}

impl AdmitLayer {
    /// Admits by `admission`.
    pub fn new(admission: Admission) -> Self {
        Self { admission }
    }
}

impl<S> Layer<S> for AdmitLayer {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admitted {
            inner,
            admission: self.admission.clone(),
        }
    }
}

/// A service whose callers are admitted on every call.
#[derive(Clone, Debug)]
pub struct Admitted<S> {
    inner: S,
    admission: Admission,
}

impl<S, B, R> Service<http::Request<B>> for Admitted<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let refused = match request.extensions().get::<Peer>() {
            Some(peer) => self.admission.admits(peer).err(),
            None => Some("no verified client certificate".to_owned()),
        };
        match refused {
            Some(message) => {
                let response = Status::unauthenticated(message).into_http();
                Box::pin(async move { Ok(response) })
            }
            None => Box::pin(self.inner.call(request)),
        }
    }
}
