//! A small real HTTP/1.1 listener on 127.0.0.1 for webhook tests, plain or over TLS with a
//! private CA: it records each POST body and answers with the status its script says (then
//! 200), or never answers at all.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the listener does with each request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Answer with this status.
    Status(u16),
    /// Accept the connection and never answer.
    Hang,
}

/// A listening test endpoint.
pub struct Hook {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    /// The request line and headers of every request, lowercase.
    pub heads: Arc<Mutex<Vec<String>>>,
    script: Arc<Mutex<Vec<Answer>>>,
}

impl Hook {
    /// Starts listening over plain HTTP; the first answers follow `script`, later ones are 200.
    pub async fn start(script: Vec<Answer>) -> Self {
        Self::listen(script, None).await
    }

    /// Starts listening over HTTPS with `certs/server.{crt,key}` (from `elevated certs init`).
    pub async fn start_tls(script: Vec<Answer>, certs: &Path) -> Self {
        let chain = elevate::tls::load_certs(&certs.join("server.crt")).unwrap();
        let key = elevate::tls::load_key(&certs.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self::listen(
            script,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn listen(script: Vec<Answer>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}/hooks/elevate?team=ops",
            listener.local_addr().unwrap()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script));
        let (recorded, answers, seen) = (bodies.clone(), script.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (recorded, answers, seen, tls) =
                    (recorded.clone(), answers.clone(), seen.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(stream, recorded, seen, answers).await,
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                serve(stream, recorded, seen, answers).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            url,
            bodies,
            heads,
            script,
        }
    }

    /// Bodies accepted with 200 so far.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Answers still scripted.
    pub fn scripted(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    recorded: Arc<Mutex<Vec<serde_json::Value>>>,
    heads: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<Vec<Answer>>>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let read = stream.read(&mut chunk).await.unwrap_or(0);
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            assert!(head.starts_with("post /hooks/elevate?team=ops"), "{head}");
            assert!(
                head.lines().next().unwrap().ends_with(" http/1.1"),
                "{head}"
            );
            assert!(head.contains("content-type: application/json"), "{head}");
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            heads.lock().unwrap().push(head);
            break (end + 4, length);
        }
    };
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.unwrap_or(0);
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body: serde_json::Value =
        serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap();
    let answer = {
        let mut script = answers.lock().unwrap();
        if script.is_empty() {
            Answer::Status(200)
        } else {
            script.remove(0)
        }
    };
    match answer {
        Answer::Hang => std::future::pending::<()>().await,
        Answer::Status(status) => {
            if status == 200 {
                recorded.lock().unwrap().push(body);
            }
            let response =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}
