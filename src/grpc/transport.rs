//! The TLS accept loop. Each connection completes its handshake on its own task (bounded by a
//! timeout), and its verified client certificate is turned into a [`PeerIdentity`] once; tonic
//! attaches that identity to every request on the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::tls::{PeerIdentity, identify};

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS connection whose client certificate has been verified.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    identity: PeerIdentity,
}

impl Connected for PeerStream {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.identity.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` until `stop` is cancelled, yielding those whose TLS
/// handshake (with a verified client certificate) succeeded.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    trust_domain: String,
    stop: CancellationToken,
) -> ReceiverStream<Result<PeerStream, io::Error>> {
    let (connections, stream) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            let connections = connections.clone();
            let trust_domain = trust_domain.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let identity = match stream.get_ref().1.peer_certificates() {
                            Some([leaf, ..]) => identify(leaf, &trust_domain),
                            _ => PeerIdentity {
                                principal: Err("no client certificate".to_owned()),
                                serial: String::new(),
                            },
                        };
                        if let Err(reason) = &identity.principal {
                            tracing::warn!(%remote, %reason, "client certificate names no usable principal");
                        }
                        let _ = connections
                            .send(Ok(PeerStream {
                                inner: stream,
                                identity,
                            }))
                            .await;
                    }
                    Ok(Err(error)) => {
                        tracing::info!(%remote, %error, "TLS handshake refused");
                    }
                    Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(stream)
}
