//! The SCIM listener: HTTPS (HTTP/1.1) with the daemon's server certificate and no client
//! certificate, under `/scim/v2`. Every request must carry the bearer token; one without it, or
//! with a wrong one, gets a bare 401 (the first of each address and minute audited as
//! `scim.refused`), and past [`MAX_FAILURES`] in a minute an address's failures get 429 (a
//! request with the right token is always served). Bodies over
//! [`MAX_BODY`] get 413 before they are read. At most [`CONNECTIONS`] connections are served
//! ([`PER_ADDRESS`] from one address); a connection lives at most [`CONNECTION_DEADLINE`].
//!
//! Each request runs on a task of its own, so a client that goes away never cuts a change short
//! between its commit and the registry taking it in. A standby (several nodes) answers every
//! authenticated request 503 naming the leader.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::ScimError;
use super::filter;
use super::resource::Projection;
use super::schema::{self, GROUPS, MAX_BODY, SCHEMAS, USERS};
use super::service::{Answer, DEFAULT_COUNT, Query, Scim};
use super::token::Token;
use crate::audit::{Actor, entry};
use crate::broker::Trail;
use crate::crowd::{Caps, Crowd};
use crate::model::Happened;
use crate::store::DirectoryKind;
use crate::tls::LiveTls;

/// Where the endpoint lives.
pub const PREFIX: &str = "/scim/v2";

/// Most connections served at once.
pub const CONNECTIONS: usize = 64;

/// Most connections served at once from one IP address.
pub const PER_ADDRESS: usize = 16;

/// The longest a connection lives.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);

/// Failed authentications from one address within [`REFUSAL_WINDOW`] before it is refused
/// outright until the window ends.
pub const MAX_FAILURES: u32 = 10;

/// The window of [`MAX_FAILURES`].
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// The longest a TLS handshake may take.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// How long open connections may take to finish once the listener stops.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a listener serves: the operations (on the leader) or the leader's name (a standby).
#[derive(Clone, Debug)]
pub enum Role {
    /// The leader, or the only daemon: the operations and the audit trail.
    Serving {
        /// The operations.
        scim: Scim,
        /// Where refusals are audited.
        trail: Trail,
    },
    /// A standby: answers 503, naming the leader's address when known.
    Standby(tokio::sync::watch::Receiver<crate::cluster::Leader>),
}

/// Failed authentications per address (an IPv6 address by its /64, which one host usually
/// has whole), in windows of [`REFUSAL_WINDOW`]; at most [`TRACKED`] addresses.
#[derive(Debug, Default)]
struct Failures {
    // A std lock: held to count, never across an await.
    by_address: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Most addresses whose failures are counted at once; past it the oldest windows are dropped.
const TRACKED: usize = 4096;

/// What a failed authentication from an address comes to.
enum Failure {
    /// Counted; `first` of its window (audited).
    Counted { first: bool },
    /// Past [`MAX_FAILURES`]: refused outright; `first` such refusal of its window (audited).
    Limited { first: bool },
}

impl Failures {
    fn failed(&self, address: IpAddr) -> Failure {
        let address = match address {
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
            v4 => v4,
        };
        let Ok(mut map) = self.by_address.lock() else {
            return Failure::Limited { first: false };
        };
        if map.len() >= TRACKED && !map.contains_key(&address) {
            map.retain(|_, (since, _)| since.elapsed() < REFUSAL_WINDOW);
            while map.len() >= TRACKED {
                let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(a, _)| *a)
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        let entry = map.entry(address).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= REFUSAL_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 > MAX_FAILURES {
            Failure::Limited {
                first: entry.1 == MAX_FAILURES + 1,
            }
        } else {
            Failure::Counted {
                first: entry.1 == 1,
            }
        }
    }
}

/// Serves SCIM on `listener` as `role` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    tls: LiveTls,
    token: Arc<Token>,
    role: Role,
    stop: CancellationToken,
) {
    let crowd = Crowd::new(Caps {
        total: CONNECTIONS,
        per_address: PER_ADDRESS,
    });
    let failures = Arc::new(Failures::default());
    let connections = TaskTracker::new();
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "SCIM listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (entry, _) = crowd.enter(remote.ip());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.public());
        let (token, role, failures, stop) =
            (token.clone(), role.clone(), failures.clone(), stop.clone());
        connections.spawn(async move {
            let served = async {
                let stream =
                    match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%remote, %error, "SCIM TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "SCIM TLS handshake too slow: closed");
                            return;
                        }
                    };
                let service = service_fn(move |request| {
                    let (token, role, failures) = (token.clone(), role.clone(), failures.clone());
                    async move {
                        Ok::<_, Infallible>(
                            respond(request, remote, local, &token, &role, &failures).await,
                        )
                    }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    () = stop.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        match tokio::time::timeout(CLOSE_GRACE, connection).await {
                            Ok(result) => result,
                            Err(_) => return,
                        }
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "SCIM connection ended with an error");
                }
            };
            tokio::select! {
                () = served => {}
                () = tokio::time::sleep(CONNECTION_DEADLINE) => {
                    tracing::debug!(%remote, "SCIM connection past its deadline: closed");
                }
                () = entry.stopped() => {
                    tracing::debug!(%remote, "SCIM connection closed to make room for a newer one");
                }
            }
        });
    }
    drop(listener);
    connections.close();
    let _ = tokio::time::timeout(CLOSE_GRACE, connections.wait()).await;
}

/// The answer to one request: the token first (also on a standby), then the operation.
async fn respond(
    request: Request<Incoming>,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    token: &Token,
    role: &Role,
    failures: &Failures,
) -> Response<Full<Bytes>> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, credentials) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim())
        });
    // The token first: an address others fail from (a shared egress, a proxy) never locks
    // out the identity provider that has it.
    let reason = match presented {
        None => Some("no bearer token"),
        Some(presented) if !token.verify(presented.as_bytes()) => Some("wrong bearer token"),
        Some(_) => None,
    };
    if let Some(reason) = reason {
        let (status, detail, audited) = match failures.failed(remote.ip()) {
            Failure::Counted { first } => (
                StatusCode::UNAUTHORIZED,
                "authentication required",
                first.then_some(reason),
            ),
            Failure::Limited { first } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed authentications; try again later",
                first.then_some("too many failed authentications: refused for a minute"),
            ),
        };
        tracing::warn!(%remote, reason, "SCIM request refused");
        if let (Some(audited), Role::Serving { scim, trail }) = (audited, role) {
            let draft = entry::of(
                scim.now(),
                Actor::Scim,
                Happened::ScimRefused {
                    remote: remote.ip().to_string(),
                    reason: audited,
                },
            );
            if let Err(failure) = trail.record(draft).await {
                tracing::warn!(error = %failure, "a SCIM refusal could not be audited");
            }
        }
        let mut response = error(&ScimError::status(status, detail));
        let (name, value) = if status == StatusCode::TOO_MANY_REQUESTS {
            (header::RETRY_AFTER, HeaderValue::from_static("60"))
        } else {
            (
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"elevate\""),
            )
        };
        response.headers_mut().insert(name, value);
        return response;
    }
    let scim = match role {
        Role::Serving { scim, .. } => scim,
        Role::Standby(leader) => {
            let leader = leader.borrow().advertise.clone();
            let detail = if leader.is_empty() {
                "this node stands by and no leader is known yet; try again".to_owned()
            } else {
                format!("this node stands by; the leader is {leader}")
            };
            return error(&ScimError::status(StatusCode::SERVICE_UNAVAILABLE, detail));
        }
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .map(str::to_owned)
        .or_else(|| local.map(|local| local.to_string()))
        .unwrap_or_default();
    let base = format!("https://{host}{PREFIX}");
    // On a task of its own: a client that goes away (or a connection past its deadline)
    // never cuts a change short between its commit and the registry taking it in.
    let scim = scim.clone();
    let handled = tokio::spawn(async move { handle(request, &scim, &base).await }).await;
    match handled {
        Ok(Ok(answer)) => answered(answer),
        Ok(Err(failure)) => error(&failure),
        Err(_) => error(&ScimError::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request could not be handled",
        )),
    }
}

/// Routes one authenticated request.
async fn handle(request: Request<Incoming>, scim: &Scim, base: &str) -> Result<Answer, ScimError> {
    let path = request.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Err(ScimError::not_found(format!(
            "the SCIM endpoint is under {PREFIX}"
        )));
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').skip(1).collect();
    let method = request.method().clone();
    let params = query_params(request.uri().query().unwrap_or_default());
    let if_match = header_text(&request, header::IF_MATCH);
    let if_none_match = header_text(&request, header::IF_NONE_MATCH);
    let body = read_body(request).await?;
    let allow = |methods: &'static str| {
        Err(ScimError::status(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed here; allowed: {methods}"),
        )
        .allowing(methods))
    };
    if matches!(
        segments.as_slice(),
        ["Schemas", ..] | ["ResourceTypes", ..] | ["ServiceProviderConfig"]
    ) && param(&params, "filter").is_some()
    {
        return Err(ScimError::status(
            StatusCode::FORBIDDEN,
            "filtering is not supported on this endpoint",
        ));
    }
    let kind_of = |segment: &str| match segment {
        "Users" => Some(DirectoryKind::User),
        "Groups" => Some(DirectoryKind::Group),
        _ => None,
    };
    match segments.as_slice() {
        ["ServiceProviderConfig"] => match method {
            Method::GET => Ok(Answer::ok(schema::service_provider_config(base))),
            _ => allow("GET"),
        },
        ["ResourceTypes"] => match method {
            Method::GET => Ok(Answer::ok(list_of(
                [&USERS, &GROUPS].iter().map(|r| r.document(base)).collect(),
            ))),
            _ => allow("GET"),
        },
        ["ResourceTypes", name] => match method {
            Method::GET => [&USERS, &GROUPS]
                .iter()
                .find(|r| r.name == *name)
                .map(|r| Answer::ok(r.document(base)))
                .ok_or_else(|| ScimError::not_found(format!("no resource type {name:?}"))),
            _ => allow("GET"),
        },
        ["Schemas"] => match method {
            Method::GET => Ok(Answer::ok(list_of(
                SCHEMAS.iter().map(|s| s.document(base)).collect(),
            ))),
            _ => allow("GET"),
        },
        ["Schemas", urn] => match method {
            Method::GET => SCHEMAS
                .iter()
                .find(|s| s.id == percent_encoding::percent_decode_str(urn).decode_utf8_lossy())
                .map(|s| Answer::ok(s.document(base)))
                .ok_or_else(|| ScimError::not_found(format!("no schema {urn:?}"))),
            _ => allow("GET"),
        },
        [".search"] => match method {
            Method::POST => {
                let query = search_query(body.as_ref())?;
                scim.list(&[DirectoryKind::User, DirectoryKind::Group], &query, base)
                    .await
            }
            _ => allow("POST"),
        },
        ["Bulk"] | ["Me"] => Err(ScimError::status(
            StatusCode::NOT_IMPLEMENTED,
            "not supported by this service provider (see /ServiceProviderConfig)",
        )),
        [collection] if kind_of(collection).is_some() => {
            let Some(kind) = kind_of(collection) else {
                return Err(ScimError::not_found("no such endpoint"));
            };
            match method {
                Method::GET => scim.list(&[kind], &list_query(&params)?, base).await,
                Method::POST => {
                    let projection = projection(&params)?;
                    let answer = scim.create(kind, &required(body)?, base).await?;
                    Ok(projected(answer, kind, &projection))
                }
                _ => allow("GET, POST"),
            }
        }
        [collection, ".search"] if kind_of(collection).is_some() => {
            let Some(kind) = kind_of(collection) else {
                return Err(ScimError::not_found("no such endpoint"));
            };
            match method {
                Method::POST => {
                    let query = search_query(body.as_ref())?;
                    scim.list(&[kind], &query, base).await
                }
                _ => allow("POST"),
            }
        }
        [collection, id] if kind_of(collection).is_some() => {
            let Some(kind) = kind_of(collection) else {
                return Err(ScimError::not_found("no such endpoint"));
            };
            let id = percent_encoding::percent_decode_str(id)
                .decode_utf8_lossy()
                .into_owned();
            match method {
                Method::GET => {
                    let projection = projection(&params)?;
                    scim.get(kind, &id, &projection, if_none_match.as_deref(), base)
                        .await
                }
                Method::PUT => {
                    let projection = projection(&params)?;
                    let answer = scim
                        .replace(kind, &id, &required(body)?, if_match.as_deref(), base)
                        .await?;
                    Ok(projected(answer, kind, &projection))
                }
                Method::PATCH => {
                    let projection = projection(&params)?;
                    let answer = scim
                        .patch(kind, &id, &required(body)?, if_match.as_deref(), base)
                        .await?;
                    Ok(projected(answer, kind, &projection))
                }
                Method::DELETE => scim.delete(kind, &id, if_match.as_deref()).await,
                _ => allow("GET, PUT, PATCH, DELETE"),
            }
        }
        _ => Err(ScimError::not_found(format!("no endpoint {path}"))),
    }
}

/// `answer` with only the attributes `projection` asks for.
fn projected(mut answer: Answer, kind: DirectoryKind, projection: &Projection) -> Answer {
    answer.body = answer
        .body
        .map(|body| projection.apply(super::registry::resource_type(kind), body));
    answer
}

fn header_text(request: &Request<Incoming>, name: header::HeaderName) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The body, as JSON, when there is one; 413 past [`MAX_BODY`].
async fn read_body(request: Request<Incoming>) -> Result<Option<Value>, ScimError> {
    let too_large = || {
        ScimError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    let bytes = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|failure| {
            if failure.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ScimError::bad_request("the body could not be read")
            }
        })?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|failure| ScimError::invalid_syntax(format!("the body is not JSON: {failure}")))
}

fn required(body: Option<Value>) -> Result<Value, ScimError> {
    body.ok_or_else(|| ScimError::invalid_syntax("a JSON body is required"))
}

/// The decoded query parameters (`+` is a space), names as sent.
fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_encoding::percent_decode_str(&text.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn projection(params: &[(String, String)]) -> Result<Projection, ScimError> {
    Projection::parse(
        param(params, "attributes"),
        param(params, "excludedAttributes"),
    )
}

fn list_query(params: &[(String, String)]) -> Result<Query, ScimError> {
    let number = |name: &str| -> Result<Option<i64>, ScimError> {
        param(params, name)
            .map(|value| {
                value.trim().parse::<i64>().map_err(|_| {
                    ScimError::invalid_value(format!(
                        "{name} must be a whole number, not {value:?}"
                    ))
                })
            })
            .transpose()
    };
    Ok(Query {
        filter: param(params, "filter")
            .map(filter::parse_filter)
            .transpose()?,
        sort_by: sort_by(param(params, "sortBy"))?,
        descending: sort_order(param(params, "sortOrder"))?,
        start_index: number("startIndex")?.map_or(1, |start| start.max(1) as usize),
        count: number("count")?.map_or(DEFAULT_COUNT, |count| count.max(0) as usize),
        projection: projection(params)?,
    })
}

fn sort_by(text: Option<&str>) -> Result<Option<filter::AttrPath>, ScimError> {
    text.map(|text| {
        filter::parse_path(text)
            .map(|path| path.attr)
            .map_err(|_| ScimError::invalid_value(format!("sortBy {text:?} is not an attribute")))
    })
    .transpose()
}

fn sort_order(text: Option<&str>) -> Result<bool, ScimError> {
    match text {
        None => Ok(false),
        Some(order) if order.eq_ignore_ascii_case("ascending") => Ok(false),
        Some(order) if order.eq_ignore_ascii_case("descending") => Ok(true),
        Some(order) => Err(ScimError::invalid_value(format!(
            "sortOrder must be ascending or descending, not {order:?}"
        ))),
    }
}

/// A SearchRequest body (`POST …/.search`).
fn search_query(body: Option<&Value>) -> Result<Query, ScimError> {
    let Some(Value::Object(fields)) = body else {
        return Err(ScimError::invalid_syntax(
            "the body must be a SearchRequest object",
        ));
    };
    let listed = fields
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas
                .iter()
                .any(|urn| urn.as_str() == Some(schema::SEARCH_REQUEST))
        });
    if !listed {
        return Err(ScimError::invalid_syntax(format!(
            "'schemas' must list {}",
            schema::SEARCH_REQUEST
        )));
    }
    let mut params = Vec::new();
    for (name, value) in fields {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            _ => continue,
        };
        params.push((name.clone(), text));
    }
    list_query(&params)
}

fn list_of(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [schema::LIST_RESPONSE],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

const CONTENT_TYPE: &str = "application/scim+json";

fn answered(answer: Answer) -> Response<Full<Bytes>> {
    let body = answer
        .body
        .map(|body| Bytes::from(body.to_string()))
        .unwrap_or_default();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    if answer.status != StatusCode::NO_CONTENT && answer.status != StatusCode::NOT_MODIFIED {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    }
    if let Some(etag) = answer
        .etag
        .and_then(|etag| HeaderValue::from_str(&etag).ok())
    {
        headers.insert(header::ETAG, etag);
    }
    if answer.status == StatusCode::CREATED
        && let Some(location) = answer
            .location
            .and_then(|location| HeaderValue::from_str(&location).ok())
    {
        headers.insert(header::LOCATION, location);
    }
    response
}

fn error(failure: &ScimError) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(failure.body().to_string())));
    *response.status_mut() = failure.status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Some(allow) = failure.allow {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}
