//! The TLS accept loop and the connections it admits.
//!
//! - **Handshakes are bounded.** Each connection completes its handshake on its own task, with
//!   the TLS configuration in force when it was accepted, within a timeout. At most
//!   `max_handshakes` are in progress at once, and `max_handshakes_per_address` from one IP
//!   address; a new connection past either cap drops the oldest handshake still in progress
//!   (of that address, or overall), so a flood of slow handshakes holds a bounded number of
//!   file descriptors and never shuts out an honest client, whose handshake takes moments.
//! - **Revocation is checked on every call.** An established connection's verified client
//!   certificate is checked against the revocation sources in force ([`Revocations`]: the deny
//!   list and the CRLs), turned into a [`PeerIdentity`] once, and attached as a [`Peer`] to
//!   every request on it; [`Admission::admits`] checks it again for every call
//!   ([`crate::grpc::admit`]). A sweep every second closes the open connections whose
//!   certificate has been revoked meanwhile.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

use crate::broker::Gate;
use crate::crowd::{Caps, Crowd};
use crate::metrics::Metrics;
use crate::tls::revocation::{ClientCert, Revocations};
use crate::tls::revoked::Verdict;
use crate::tls::{IdentitySource, LiveTls, PeerIdentity, identify};

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often open connections are checked against the revocation sources.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Who is at the other end of a connection: attached to every call on it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The principal its certificate names (or why it names none).
    pub identity: PeerIdentity,
    /// Its verified certificate chain, for the revocation checks.
    pub cert: Arc<ClientCert>,
    /// Where it connects from.
    pub remote: SocketAddr,
    /// Cancelled to close the connection.
    close: CancellationToken,
}

impl Peer {
    /// Closes the connection (calls in flight on it end with it).
    pub fn close(&self) {
        self.close.cancel();
    }
}

/// A TLS connection whose client certificate has been verified.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    peer: Peer,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Keeps the connection in the sweep's table until it ends.
    _open: OpenConnection,
}

impl PeerStream {
    /// An error once the connection has been closed by [`Peer::close`].
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Result<(), io::Error> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the connection was closed: its client certificate is no longer accepted",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl Connected for PeerStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.poll_closed(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.poll_closed(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
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
        let this = self.get_mut();
        this.poll_closed(cx)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What each new connection, and every call, is admitted by.
#[derive(Clone, Debug)]
pub struct Admission {
    /// The TLS configuration in force, taken anew for each connection.
    pub tls: LiveTls,
    /// Trust domain of client SPIFFE ids.
    pub trust_domain: String,
    /// Where principals may come from.
    pub identity: IdentitySource,
    /// The deny list and the CRLs.
    pub revocations: Revocations,
    /// Records callers refused for a revoked certificate in the audit trail.
    pub gate: Option<Gate>,
    /// Counts dropped handshakes.
    pub metrics: Metrics,
    /// Handshakes in progress at once.
    pub handshakes: Caps,
}

impl Admission {
    /// Whether `peer` may go on, by the revocation sources as they are now. Logs refusals
    /// with the serial and principal, and audits callers refused for a revoked certificate
    /// (at most once a minute each). The error is what the caller is told.
    pub fn admits(&self, peer: &Peer) -> Result<(), String> {
        let identity = &peer.identity;
        let principal = match &identity.principal {
            Ok(principal) => principal.as_str(),
            Err(_) => "(none)",
        };
        match self.revocations.check(&peer.cert) {
            Verdict::Allowed => Ok(()),
            Verdict::Revoked(entry) => {
                tracing::warn!(
                    remote = %peer.remote,
                    serial = %entry.serial,
                    principal,
                    revoked_at = %entry.revoked_at,
                    "refused a revoked client certificate"
                );
                if let Ok(principal) = &identity.principal {
                    if let Some(gate) = &self.gate {
                        gate.record_refusal(principal, "certificate revoked");
                    }
                }
                Err("the client certificate has been revoked".to_owned())
            }
            Verdict::Unusable(reason) => {
                tracing::warn!(
                    remote = %peer.remote,
                    serial = %identity.serial,
                    principal,
                    %reason,
                    "refused a client certificate"
                );
                Err("the client certificate cannot be checked for revocation".to_owned())
            }
        }
    }
}

/// The connections open now, so that the sweep can close those whose certificate has been
/// revoked. A short `std::sync::Mutex`; nothing awaits under it.
#[derive(Clone, Debug, Default)]
struct Open {
    next: Arc<AtomicU64>,
    peers: Arc<Mutex<HashMap<u64, Peer>>>,
}

impl Open {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Peer>> {
        match self.peers.lock() {
            Ok(peers) => peers,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn add(&self, peer: Peer) -> OpenConnection {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, peer);
        OpenConnection {
            open: self.clone(),
            id,
        }
    }

    /// Closes every connection `admission` no longer admits.
    fn sweep(&self, admission: &Admission) {
        let peers: Vec<(u64, Peer)> = self
            .lock()
            .iter()
            .map(|(id, peer)| (*id, peer.clone()))
            .collect();
        for (id, peer) in peers {
            if admission.admits(&peer).is_err() {
                tracing::info!(remote = %peer.remote, serial = %peer.identity.serial, "closed a connection whose client certificate is no longer accepted");
                peer.close();
                self.lock().remove(&id);
            }
        }
    }
}

/// An entry of [`Open`], removed when the connection ends.
struct OpenConnection {
    open: Open,
    id: u64,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.lock().remove(&self.id);
    }
}

/// Accepts connections on `listener` until `stop` is cancelled, yielding those whose TLS
/// handshake (with a verified client certificate) succeeded and whose certificate is not
/// revoked; closes the open ones whose certificate is revoked later.
pub fn incoming(
    listener: TcpListener,
    admission: Admission,
    stop: CancellationToken,
) -> ReceiverStream<Result<PeerStream, io::Error>> {
    let (connections, stream) = mpsc::channel(64);
    let open = Open::default();
    tokio::spawn({
        let (open, admission, stop) = (open.clone(), admission.clone(), stop.clone());
        async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = every.tick() => open.sweep(&admission),
                }
            }
        }
    });
    let handshakes = Crowd::new(admission.handshakes);
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
            let (handshake, crowded) = handshakes.enter(remote.ip());
            for _ in 0..crowded {
                admission.metrics.handshake_dropped("crowded");
            }
            let acceptor = TlsAcceptor::from(admission.tls.current());
            let connections = connections.clone();
            let admission = admission.clone();
            let open = open.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let accepted = tokio::select! {
                    () = handshake.stopped() => return,
                    accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => accepted,
                };
                drop(handshake);
                let stream = match accepted {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::info!(%remote, %error, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        admission.metrics.handshake_dropped("timeout");
                        tracing::info!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
                let chain = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
                let identity = match chain.first() {
                    Some(leaf) => identify(leaf, &admission.trust_domain, admission.identity),
                    None => PeerIdentity {
                        principal: Err("no client certificate".to_owned()),
                        serial: String::new(),
                    },
                };
                let close = CancellationToken::new();
                let peer = Peer {
                    identity,
                    cert: Arc::new(ClientCert::new(chain)),
                    remote,
                    close: close.clone(),
                };
                if admission.admits(&peer).is_err() {
                    return;
                }
                if let Err(reason) = &peer.identity.principal {
                    tracing::warn!(%remote, %reason, "client certificate names no usable principal");
                }
                let _ = connections
                    .send(Ok(PeerStream {
                        inner: stream,
                        _open: open.add(peer.clone()),
                        peer,
                        closed: Box::pin(close.cancelled_owned()),
                    }))
                    .await;
            });
        }
    });
    ReceiverStream::new(stream)
}
