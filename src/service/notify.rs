//! The service manager's notification protocol (`sd_notify(3)`): newline-separated
//! `KEY=VALUE` assignments in one datagram to the Unix socket named by `$NOTIFY_SOCKET`, a
//! path or, with a leading `@`, an abstract socket. Without `$NOTIFY_SOCKET` every call does
//! nothing, so the daemon behaves the same outside systemd.
//!
//! Hand-written rather than taken from a crate: the protocol is one `sendto`, and the usual
//! crate does not reach abstract sockets.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State<'a> {
    /// Start-up is finished, or a reload is: the service is ready.
    Ready,
    /// The service is reloading its configuration.
    Reloading,
    /// The service is beginning its shutdown.
    Stopping,
    /// A one-line status shown by `systemctl status`.
    Status(&'a str),
    /// A watchdog keep-alive.
    Watchdog,
}

impl State<'_> {
    fn line(&self, out: &mut String) {
        match self {
            State::Ready => out.push_str("READY=1\n"),
            State::Reloading => {
                out.push_str("RELOADING=1\n");
                // systemd 253 and later match a reload to its request by this timestamp.
                if let Ok(now) = monotonic_usec() {
                    out.push_str(&format!("MONOTONIC_USEC={now}\n"));
                }
            }
            State::Stopping => out.push_str("STOPPING=1\n"),
            State::Watchdog => out.push_str("WATCHDOG=1\n"),
            State::Status(text) => {
                out.push_str("STATUS=");
                // A newline would start another assignment.
                out.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }));
                out.push('\n');
            }
        }
    }
}

fn monotonic_usec() -> io::Result<u128> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let seconds = u128::try_from(now.tv_sec).map_err(|_| io::ErrorKind::InvalidData)?;
    let nanos = u128::try_from(now.tv_nsec).map_err(|_| io::ErrorKind::InvalidData)?;
    Ok(seconds * 1_000_000 + nanos / 1_000)
}

/// Where notifications go, read once from `$NOTIFY_SOCKET`. Cloning shares whether shutdown
/// has begun (an `AtomicBool`: the watchdog reads it).
#[derive(Clone, Debug)]
pub struct Notifier {
    socket: Option<Arc<SocketAddr>>,
    stopping: Arc<AtomicBool>,
}

/// `$NOTIFY_SOCKET` names no socket this process can reach.
#[derive(Debug, thiserror::Error)]
#[error("NOTIFY_SOCKET={0:?} is neither a path nor an abstract socket (@name)")]
pub struct AddressError(String);

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self {
            socket: None,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The socket of `$NOTIFY_SOCKET`, or a disabled notifier when it is unset or empty.
    pub fn from_env() -> Result<Self, AddressError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(Self::disabled()),
            Some(value) => Self::for_address(value.as_bytes()),
        }
    }

    /// A notifier for socket address `value`: an absolute path, or `@name` for the abstract
    /// socket `name`; empty means none.
    pub fn for_address(value: &[u8]) -> Result<Self, AddressError> {
        let invalid = || AddressError(String::from_utf8_lossy(value).into_owned());
        let socket = match value {
            [] => None,
            [b'@', name @ ..] => Some(SocketAddr::from_abstract_name(name).map_err(|_| invalid())?),
            [b'/', ..] => Some(
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(value))
                    .map_err(|_| invalid())?,
            ),
            _ => return Err(invalid()),
        };
        Ok(Self {
            socket: socket.map(Arc::new),
            stopping: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether a service manager listens.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Whether shutdown has begun ([`Notifier::stopping`] was called).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Sends `states` in one datagram.
    pub fn send(&self, states: &[State<'_>]) -> io::Result<()> {
        let Some(address) = &self.socket else {
            return Ok(());
        };
        let mut message = String::new();
        for state in states {
            state.line(&mut message);
        }
        let socket = UnixDatagram::unbound()?;
        let sent = socket.send_to_addr(message.as_bytes(), address)?;
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the notification was cut short",
            ));
        }
        Ok(())
    }

    /// Sends `states`, logging (not returning) a failure: the service manager not listening
    /// must not stop the daemon.
    fn tell(&self, states: &[State<'_>]) {
        if let Err(error) = self.send(states) {
            tracing::warn!(%error, "cannot notify the service manager");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.tell(&[State::Ready, State::Status(status)]);
    }

    /// `RELOADING=1` with a status line.
    pub fn reloading(&self, status: &str) {
        self.tell(&[State::Reloading, State::Status(status)]);
    }

    /// `STOPPING=1` with a status line; from now on [`Notifier::is_stopping`] is true.
    pub fn stopping(&self, status: &str) {
        self.stopping.store(true, Ordering::SeqCst);
        self.tell(&[State::Stopping, State::Status(status)]);
    }

    /// A status line alone.
    pub fn status(&self, status: &str) {
        self.tell(&[State::Status(status)]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send(&[State::Watchdog])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 1024];
        let length = socket.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..length].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::for_address(path.as_os_str().as_bytes()).unwrap();
        assert!(notifier.is_enabled());
        notifier.ready("serving on 127.0.0.1:7443\nWATCHDOG=1");
        assert_eq!(
            receive(&socket),
            "READY=1\nSTATUS=serving on 127.0.0.1:7443 WATCHDOG=1\n"
        );
        assert!(!notifier.is_stopping());
        notifier.stopping("draining");
        assert!(notifier.clone().is_stopping());
        assert_eq!(receive(&socket), "STOPPING=1\nSTATUS=draining\n");
        notifier.reloading("reloading");
        let reloading = receive(&socket);
        assert!(
            reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{reloading}"
        );
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("elevate-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        let notifier = Notifier::for_address(format!("@{name}").as_bytes()).unwrap();
        notifier.watchdog().unwrap();
        assert_eq!(receive(&socket), "WATCHDOG=1\n");
    }

    #[test]
    fn no_socket_sends_nothing_and_nonsense_is_refused() {
        let notifier = Notifier::for_address(b"").unwrap();
        assert!(!notifier.is_enabled());
        notifier.send(&[State::Ready]).unwrap();
        assert!(Notifier::for_address(b"relative/path").is_err());
        assert!(Notifier::for_address(b"vsock:2:1234").is_err());
    }
}
