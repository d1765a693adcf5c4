//! The TLS accept loop. Each connection completes its handshake on its own task (bounded by a
//! timeout) with the TLS configuration in force when it was accepted, its verified client
//! certificate is checked against the deny list, and turned into a [`PeerIdentity`] once; tonic
//! attaches that identity to every request on the connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::broker::Broker;
use crate::tls::revoked::{DenyList, Serial, Verdict};
use crate::tls::{LiveTls, PeerIdentity, identify};

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

/// What each new connection is admitted by.
#[derive(Clone, Debug)]
pub struct Admission {
    /// The TLS configuration in force, taken anew for each connection.
    pub tls: LiveTls,
    /// Trust domain of client SPIFFE ids.
    pub trust_domain: String,
    /// Client certificates refused although they chain to the CA.
    pub revoked: DenyList,
    /// Records callers refused for a revoked certificate in the audit trail.
    pub broker: Broker,
}

impl Admission {
    /// Whether the connection of `identity` may proceed, by the deny list as it is now. Logs
    /// refusals with the serial and principal.
    fn admits(&self, identity: &PeerIdentity, remote: SocketAddr) -> bool {
        let principal = match &identity.principal {
            Ok(principal) => principal.as_str(),
            Err(_) => "(none)",
        };
        let verdict = match identity.serial.parse::<Serial>() {
            Ok(serial) => self.revoked.check(&serial),
            Err(_) => Verdict::Unusable("the certificate has no serial number".to_owned()),
        };
        match verdict {
            Verdict::Allowed => true,
            Verdict::Revoked(entry) => {
                tracing::warn!(
                    %remote,
                    serial = %entry.serial,
                    principal,
                    revoked_at = %entry.revoked_at,
                    "refused a revoked client certificate"
                );
                if let Ok(principal) = &identity.principal {
                    self.broker.record_refusal(principal, "certificate revoked");
                }
                false
            }
            Verdict::Unusable(reason) => {
                tracing::warn!(
                    %remote,
                    serial = %identity.serial,
                    principal,
                    %reason,
                    "refused a client certificate"
                );
                false
            }
        }
    }
}

/// Accepts connections on `listener` until `stop` is cancelled, yielding those whose TLS
/// handshake (with a verified client certificate) succeeded and whose certificate is not on the
/// deny list.
pub fn incoming(
    listener: TcpListener,
    admission: Admission,
    stop: CancellationToken,
) -> ReceiverStream<Result<PeerStream, io::Error>> {
    let (connections, stream) = mpsc::channel(64);
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
            let acceptor = TlsAcceptor::from(admission.tls.current());
            let connections = connections.clone();
            let admission = admission.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let identity = match stream.get_ref().1.peer_certificates() {
                            Some([leaf, ..]) => identify(leaf, &admission.trust_domain),
                            _ => PeerIdentity {
                                principal: Err("no client certificate".to_owned()),
                                serial: String::new(),
                            },
                        };
                        if !admission.admits(&identity, remote) {
                            return;
                        }
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
