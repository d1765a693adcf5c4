//! Talking to a cluster: the CLI knows several endpoints (`--endpoint a,b,c`), goes where a
//! standby says the leader is, and waits through a failover.
//!
//! [`Failover`] is the transport under the gRPC clients. Each call is buffered (every call of
//! the API sends one message), so that it can be sent again:
//! - to the leader a standby names in `elevate-leader` (a standby refuses before doing
//!   anything, so this is always safe);
//! - after a standby said no leader is known yet, a moment later;
//! - to the next endpoint when one cannot be reached (nothing was sent);
//! - also after a connection broke mid-call or the leader could not reach its store: reads
//!   change nothing, and every call that changes something carries an `idempotency-key` (a
//!   random one per call, set here), so the daemon answers a repeat with the first call's
//!   outcome instead of doing it twice.
//!
//! All this within [`WAIT`]; with a single endpoint only a leader hint is followed, and a
//! broken connection is the answer (with the call's key, should the caller want to look).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::transport::{Channel, ClientTlsConfig};
use tower_service::Service;

use super::CliError;
use super::client::chain;

/// How long a call waits for a leader, through a failover.
pub const WAIT: Duration = Duration::from_secs(30);

/// The metadata a standby's refusal carries: the leader's address, and that it is a standby.
const LEADER_HEADER: &str = "elevate-leader";
const STANDBY_HEADER: &str = "elevate-standby";

/// The header naming a call that changes something, so that a repeat is recognised.
const KEY_HEADER: &str = "idempotency-key";

/// A fresh idempotency key: 128 random bits, hex.
fn fresh_key() -> Result<String, BoxError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "the system's random number generator failed")?;
    Ok(crate::hash::hex(&bytes))
}

/// The methods that change nothing, so that sending them twice is harmless.
fn changes_nothing(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    [
        "Get",
        "List",
        "Watch",
        "WhoAmI",
        "Query",
        "Export",
        "Report",
        "ClusterStatus",
    ]
    .iter()
    .any(|read| method.starts_with(read))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The transport of the CLI's gRPC clients over one or several endpoints.
#[derive(Clone)]
pub struct Failover {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("endpoints", &self.inner.endpoints)
            .finish_non_exhaustive()
    }
}

struct Inner {
    endpoints: Vec<String>,
    /// Whether to go where a standby says the leader is (else its refusal is the answer).
    follow: bool,
    tls: ClientTlsConfig,
    /// The endpoint in use and its connection.
    current: Mutex<Option<(String, Channel)>>,
}

impl Failover {
    /// Connects to the first of `endpoints` that answers (waiting through [`WAIT`] for one
    /// when there are several). With `follow`, calls go where a standby says the leader is;
    /// without, a standby's refusal is the answer (to talk to exactly one node).
    pub async fn connect(
        endpoints: Vec<String>,
        tls: ClientTlsConfig,
        follow: bool,
    ) -> Result<Self, CliError> {
        if endpoints.is_empty() {
            return Err(CliError::Usage("no endpoint given".into()));
        }
        for endpoint in &endpoints {
            Channel::from_shared(endpoint.clone()).map_err(|error| {
                CliError::Usage(format!("invalid endpoint '{endpoint}': {error}"))
            })?;
        }
        let failover = Self {
            inner: Arc::new(Inner {
                endpoints,
                follow,
                tls,
                current: Mutex::new(None),
            }),
        };
        failover
            .channel()
            .await
            .map_err(|(endpoint, message)| CliError::Connect { endpoint, message })?;
        Ok(failover)
    }

    /// The connection in use, or one to the first endpoint that answers, trying each in turn
    /// (for [`WAIT`] when there are several).
    async fn channel(&self) -> Result<(String, Channel), (String, String)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let started = tokio::time::Instant::now();
        let several = self.inner.endpoints.len() > 1;
        loop {
            let mut last = None;
            for endpoint in &self.inner.endpoints {
                match self.open(endpoint).await {
                    Ok(channel) => return Ok((endpoint.clone(), channel)),
                    Err(message) => last = Some((endpoint.clone(), message)),
                }
            }
            let failed = last.unwrap_or_default();
            if !several || started.elapsed() >= WAIT {
                return Err(if several {
                    (
                        self.inner.endpoints.join(","),
                        format!("none answered within {WAIT:?}; the last said: {}", failed.1),
                    )
                } else {
                    failed
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn current(&self) -> Option<(String, Channel)> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connects to `endpoint` and makes it the one in use.
    async fn open(&self, endpoint: &str) -> Result<Channel, String> {
        let channel = Channel::from_shared(endpoint.to_owned())
            .map_err(|error| error.to_string())?
            .tls_config(self.inner.tls.clone())
            .map_err(|error| chain(&error))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|error| chain(&error))?;
        *self.inner.current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((endpoint.to_owned(), channel.clone()));
        Ok(channel)
    }

    /// Stops using `endpoint` (it broke, or is a standby).
    fn forget(&self, endpoint: &str) {
        let mut current = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|(e, _)| e == endpoint) {
            *current = None;
        }
    }

    async fn send(&self, request: http::Request<Body>) -> Result<http::Response<Body>, BoxError> {
        let (mut parts, body) = request.into_parts();
        let body: Bytes = body.collect().await?.to_bytes();
        let reading = changes_nothing(parts.uri.path());
        if !reading && !parts.headers.contains_key(KEY_HEADER) {
            parts.headers.insert(KEY_HEADER, fresh_key()?.parse()?);
        }
        let several = self.inner.endpoints.len() > 1;
        let started = tokio::time::Instant::now();
        let mut hints = 0;
        loop {
            let waited = started.elapsed() >= WAIT;
            let (endpoint, mut channel) = match self.channel().await {
                Ok(open) => open,
                Err((endpoint, message)) => {
                    return Err(format!("cannot connect to {endpoint}: {message}").into());
                }
            };
            let mut again = http::Request::new(Body::new(http_body_util::Full::new(body.clone())));
            *again.method_mut() = parts.method.clone();
            *again.uri_mut() = parts.uri.clone();
            *again.version_mut() = parts.version;
            *again.headers_mut() = parts.headers.clone();
            *again.extensions_mut() = parts.extensions.clone();
            std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
            match channel.call(again).await {
                Ok(response) => {
                    let headers = response.headers();
                    let unavailable = headers.get("grpc-status").is_some_and(|s| s == "14");
                    let standby = unavailable && headers.contains_key(STANDBY_HEADER);
                    let hint = headers
                        .get(LEADER_HEADER)
                        .and_then(|hint| hint.to_str().ok())
                        .map(str::to_owned);
                    if standby && self.inner.follow && !waited {
                        self.forget(&endpoint);
                        match hint {
                            // Where the leader is, as long as standbys do not send us in
                            // circles (each may have a stale view for a moment).
                            Some(leader) if hints < 8 && leader != endpoint => {
                                match self.open(&leader).await {
                                    Ok(_) => hints += 1,
                                    Err(_) if !several => return Ok(response),
                                    // The leader named is gone: a standby takes over soon,
                                    // and the next refusal names it.
                                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                                }
                            }
                            _ => {
                                hints = 0;
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                        }
                        continue;
                    }
                    if unavailable && several && !waited {
                        self.forget(&endpoint);
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    return Ok(response);
                }
                Err(error) => {
                    self.forget(&endpoint);
                    if several && !waited {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    if let Some(key) = parts.headers.get(KEY_HEADER) {
                        return Err(format!(
                            "the connection to {endpoint} broke after the call was sent, so \
                             whether it took effect is unknown (check with `elevate status` or \
                             `elevate list`; the call's {KEY_HEADER} was {}): {}",
                            key.to_str().unwrap_or_default(),
                            chain(&error)
                        )
                        .into());
                    }
                    return Err(error.into());
                }
            }
        }
    }
}

impl Service<http::Request<Body>> for Failover {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let failover = self.clone();
        Box::pin(async move { failover.send(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_accepted_by_the_daemon() {
        let (a, b) = (fresh_key().unwrap(), fresh_key().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn calls_that_change_something_are_told_apart() {
        for read in [
            "/elevate.v1.AccessService/GetRequest",
            "/elevate.v1.AccessService/ListRequests",
            "/elevate.v1.AccessService/WatchRequest",
            "/elevate.v1.AdminService/ClusterStatus",
        ] {
            assert!(changes_nothing(read), "{read}");
        }
        for write in [
            "/elevate.v1.AccessService/SubmitRequest",
            "/elevate.v1.ApprovalService/Approve",
            "/elevate.v1.AccessService/ReleaseLease",
            "/elevate.v1.AdminService/RevokeLease",
            "/elevate.v1.BreakGlassService/BreakGlass",
        ] {
            assert!(!changes_nothing(write), "{write}");
        }
    }
}
