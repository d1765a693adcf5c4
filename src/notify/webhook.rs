//! The `webhook` notifier: an HTTP POST of the event as JSON (or a Slack-incoming-webhook body)
//! to a configured URL, over HTTPS with rustls (public web roots, plus an optional CA file) or
//! plain HTTP, with a timeout. Any 2xx answer is a delivery; anything else is retried by the
//! outbox with backoff. Headers and the URL's path and query (which may hold tokens: for Slack
//! the URL is the secret) are never logged, audited or shown; errors name `scheme://host` only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Event, Notifier, NotifyError};
use crate::BoxFuture;

/// The body posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The event as JSON.
    Json,
    /// `{"text": "..."}`, what Slack incoming webhooks (and many chat tools) accept.
    Slack,
}

/// Posts events to a URL.
pub struct WebhookNotifier {
    url: Uri,
    /// `scheme://host[:port]`, what errors and logs show.
    shown: String,
    host: String,
    port: u16,
    tls: Option<TlsConnector>,
    format: Format,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers may carry credentials: never shown.
        f.debug_struct("WebhookNotifier")
            .field("url", &self.shown)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// Whether `url` names a user (and maybe a password) before its host: `scheme://user:pw@host`.
pub fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// The headers of a `headers_file`: one `Name: value` a line; blank lines and lines starting
/// with `#` are skipped. The file must be private ([`crate::private_file`]). Errors name the
/// file and the line, never a value.
pub fn read_headers_file(file: &std::path::Path) -> Result<BTreeMap<String, String>, String> {
    crate::private_file::check(file, "header file").map_err(|error| error.to_string())?;
    let text = std::fs::read_to_string(file)
        .map_err(|error| format!("{}: cannot read: {error}", file.display()))?;
    let mut headers = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", file.display(), index + 1);
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("{}: expected `Name: value`", at()))?;
        let name = name.trim();
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("{}: invalid header name", at()));
        }
        if HeaderValue::from_str(value.trim()).is_err() {
            return Err(format!("{}: invalid value for header '{name}'", at()));
        }
        headers.insert(name.to_owned(), value.trim().to_owned());
    }
    Ok(headers)
}

/// `text` with `&`, `<` and `>` escaped as Slack's message formatting asks, so that no mention
/// (`<!channel>`) or link (`<https://…|label>`) can be written into a message by whoever typed
/// part of it.
pub fn slack_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// How a webhook is named wherever it is displayed: `scheme://host:port`, never its user, path
/// or query (which may hold tokens).
fn shown(https: bool, host: &str, port: u16) -> String {
    let scheme = if https { "https" } else { "http" };
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

impl WebhookNotifier {
    /// A webhook posting to `url` (`http://` or `https://`). `ca` adds trusted CA certificates
    /// to the public web roots. Errors say what is wrong with the URL, a header or the CA.
    pub fn new(
        url: &str,
        format: Format,
        headers: &BTreeMap<String, String>,
        ca: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Self, String> {
        if has_userinfo(url) {
            return Err(
                "invalid URL: it holds credentials (user:password@); send them as a header (headers_file) instead"
                    .to_owned(),
            );
        }
        let uri: Uri = url
            .parse()
            .map_err(|error| format!("invalid URL: {error}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err("invalid URL: only http:// and https:// are supported".to_owned());
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| "invalid URL: no host".to_owned())?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(ca) = ca {
                for cert in crate::tls::load_certs(ca).map_err(|e| e.to_string())? {
                    roots.add(cert).map_err(|e| {
                        format!("{}: not a usable CA certificate: {e}", ca.display())
                    })?;
                }
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("invalid header name '{name}'"))?;
                let mut value = HeaderValue::from_str(value)
                    .map_err(|_| format!("invalid value for header '{name}'"))?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?;
        let shown = shown(https, &host, port);
        Ok(Self {
            shown,
            url: uri,
            host,
            port,
            tls,
            format,
            headers,
            timeout,
        })
    }

    fn body(&self, event: &Event) -> Vec<u8> {
        let value = match self.format {
            Format::Json => serde_json::to_value(event).unwrap_or_default(),
            Format::Slack => serde_json::json!({ "text": slack_escaped(&event.text) }),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), NotifyError> {
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            NotifyError(format!("POST {}: {what}: {error}", self.shown))
        };
        let authority = self
            .url
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| self.host.clone());
        let path = self
            .url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut request = http::Request::post(path)
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("elevate/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail("cannot build the request", &e))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail("cannot connect", &e))?;
        let _ = tcp.set_nodelay(true);
        let status = match &self.tls {
            None => send(tcp, request).await,
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| fail("invalid server name", &e))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| fail("TLS handshake failed", &e))?;
                send(stream, request).await
            }
        }
        .map_err(|e| fail("request failed", &e))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(NotifyError(format!(
                "POST {} answered {status}",
                self.shown
            )))
        }
    }
}

async fn send<S>(
    stream: S,
    request: http::Request<Full<Bytes>>,
) -> Result<http::StatusCode, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    // The connection ends once the response is in and the sender is dropped.
    let driver = tokio::spawn(connection);
    let status = sender.send_request(request).await.map(|r| r.status());
    drop(sender);
    let _ = driver.await;
    status
}

impl Notifier for WebhookNotifier {
    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let body = self.body(event);
            match tokio::time::timeout(self.timeout, self.post(body)).await {
                Ok(result) => result,
                Err(_) => Err(NotifyError(format!(
                    "POST {} timed out after {}",
                    self.shown,
                    humantime::format_duration(self.timeout)
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_bodies_escape_what_would_make_mentions_and_links() {
        assert_eq!(
            slack_escaped("<!channel> & <https://evil|elevate approve req-2>"),
            "&lt;!channel&gt; &amp; &lt;https://evil|elevate approve req-2&gt;"
        );
    }

    #[test]
    fn a_headers_file_is_private_and_parsed_by_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook.headers");
        std::fs::write(
            &file,
            "# the token\nAuthorization: Bearer s3cret\n\nX-Team:  sre \n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let headers = read_headers_file(&file).unwrap();
        assert_eq!(headers["Authorization"], "Bearer s3cret");
        assert_eq!(headers["X-Team"], "sre");
        std::fs::write(&file, "Authorization Bearer s3cret\n").unwrap();
        let error = read_headers_file(&file).unwrap_err();
        assert!(
            error.ends_with("hook.headers:1: expected `Name: value`"),
            "{error}"
        );
        assert!(!error.contains("s3cret"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            read_headers_file(&file)
                .unwrap_err()
                .contains("readable by others")
        );
    }

    #[test]
    fn bodies_and_url_checks() {
        let none = BTreeMap::new();
        let slack = WebhookNotifier::new(
            "https://hooks.example.com/x",
            Format::Slack,
            &none,
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        let event = crate::notify::exec::tests::event();
        let body: serde_json::Value = serde_json::from_slice(&slack.body(&event)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "text": "engineer has staging-db" })
        );
        let json = WebhookNotifier::new(
            "http://127.0.0.1:9/",
            Format::Json,
            &none,
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        let body: Event = serde_json::from_slice(&json.body(&event)).unwrap();
        assert_eq!(body, event);
        assert!(
            WebhookNotifier::new("ftp://x", Format::Json, &none, None, Duration::from_secs(1))
                .is_err()
        );
        let secret = WebhookNotifier::new(
            "https://hooks.example.com/services/T0/B0/SECRET",
            Format::Slack,
            &none,
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{secret:?}").contains("SECRET"));
        assert_eq!(secret.shown, "https://hooks.example.com:443");
        // Credentials in the URL are refused, and the error does not repeat them.
        let error = WebhookNotifier::new(
            "https://user:hunter2@hooks.example.com/x",
            Format::Json,
            &none,
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            error.contains("headers_file") && !error.contains("hunter2"),
            "{error}"
        );
        assert!(has_userinfo("http://u@h/") && !has_userinfo("http://h/a@b?c=d@e"));
        let bad = BTreeMap::from([("bad header".to_owned(), "x".to_owned())]);
        assert!(
            WebhookNotifier::new(
                "http://x/",
                Format::Json,
                &bad,
                None,
                Duration::from_secs(1)
            )
            .is_err()
        );
    }
}
