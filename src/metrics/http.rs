//! The metrics listener: plain HTTP/1.1 on an address of its own, apart from the gRPC port and
//! its mutual TLS. `GET /metrics` answers the exposition; every other path is `404`, every other
//! method on `/metrics` is `405`. It serves until its stop token is cancelled, then closes open
//! connections after the request in progress.
//!
//! Nobody can hold it hostage: a connection serves one request and is closed (pipelined requests
//! after the first are never answered), and lives at most [`CONNECTION_DEADLINE`], reading and
//! writing included, so a client that never reads its answer is cut off. At most
//! [`CONNECTIONS`] are open ([`PER_ADDRESS`] from one address); a new connection past a cap
//! closes the oldest ([`crate::crowd`]), so a fresh scraper is always served at once. A scrape
//! is cheap: the census of the store is read at most once a second ([`super::Metrics::scrape`]).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Metrics;
use super::families;
use crate::crowd::{Caps, Crowd};
use crate::store::Store;

/// The one path served.
pub const PATH: &str = "/metrics";

/// Most connections served at once; a scraper needs one.
pub const CONNECTIONS: usize = 32;

/// Most connections served at once from one IP address.
pub const PER_ADDRESS: usize = 8;

/// The longest a connection lives: its request read, answered and written.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// How long open connections may take to finish once the listener stops.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves the metrics of `metrics` and `store` (a standby has none) on `listener` until
/// `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    store: Option<Store>,
    stop: CancellationToken,
) {
    let crowd = Crowd::new(Caps {
        total: CONNECTIONS,
        per_address: PER_ADDRESS,
    });
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(%error, "metrics listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (entry, _) = crowd.enter(remote.ip());
        let (metrics, store, stop) = (metrics.clone(), store.clone(), stop.clone());
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let (metrics, store) = (metrics.clone(), store.clone());
                async move { Ok::<_, Infallible>(respond(&request, &metrics, &store).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CONNECTION_DEADLINE)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = tokio::time::timeout(CONNECTION_DEADLINE, connection.as_mut()) => match served {
                    Ok(served) => served,
                    Err(_) => {
                        tracing::debug!(%remote, "metrics connection past its deadline: closed");
                        return;
                    }
                },
                () = entry.stopped() => {
                    tracing::debug!(%remote, "metrics connection closed to make room for a newer one");
                    return;
                }
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(CLOSE_GRACE, connection).await {
                        Ok(served) => served,
                        Err(_) => return,
                    }
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(CLOSE_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!("metrics connections still open after the listener stopped");
    }
}

/// The answer to one request.
async fn respond(
    request: &Request<Incoming>,
    metrics: &Metrics,
    store: &Option<Store>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    match metrics.scrape(store.as_ref()).await {
        Ok(exposition) => {
            let mut response = Response::new(Full::new(Bytes::from(exposition)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(families::CONTENT_TYPE),
            );
            response
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the store for metrics");
            plain(StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable\n")
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
