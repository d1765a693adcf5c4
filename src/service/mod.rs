//! Running as a system service: what the daemon owes the service manager and the host.
//!
//! - [`notify`]: the sd_notify protocol: `READY=1` once the store is open, leases are recovered
//!   and the listener is bound; `STOPPING=1` when shutdown begins; `RELOADING=1` around a
//!   reload; `STATUS=` lines.
//! - [`watchdog`]: `WATCHDOG=1` keep-alives at half of `WATCHDOG_USEC`, sent only while the
//!   runtime and the expiry timer answer.
//! - [`preflight`]: checks made before serving: private files open to others, running as root.

pub mod notify;
pub mod preflight;
pub mod watchdog;

pub use notify::Notifier;
