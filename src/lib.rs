//! elevate: a just-in-time privileged access broker.
//!
//! An engineer asks for time-bound access with a reason; the policy decides who must approve;
//! the broker grants it on the target system, keeps a durable lease, and takes it away on time,
//! across restarts, crashes and flaky targets.
//!
//! The crate is the library behind two thin binaries: `elevated` (the daemon) and `elevate`
//! (the CLI). Dependencies point one way, from the edge inwards:
//!
//! ```text
//! grpc ──▶ broker ──▶ { policy, store, provision, expiry, audit } ──▶ model
//!  │                                                           ▲
//!  └─▶ tls (mTLS, identity from the client certificate)        │ clock
//! cli ──▶ proto client (never the broker)
//! ```
//!
//! - [`keyed`]: async locks keyed by a value (request ids, targets).
//! - [`crowd`]: work in progress capped overall and per address, the oldest making room.
//! - [`model`]: typed ids, names, durations, the request record and its state machine.
//! - [`clock`]: the one source of time; tests advance a manual clock.
//! - [`config`]: the daemon's configuration file.
//! - [`policy`]: policy and directory files, and route evaluation.
//! - [`store`]: redb tables, and the writer task that group-commits transitions with their
//!   audit events.
//! - [`audit`]: audit events and their hash chain, signed checkpoints, filters, the export
//!   format, the offline verifier and the access report.
//! - [`process`]: running configured programs safely (hooks, notifiers).
//! - [`provision`]: the `Provisioner` trait and the `exec`, `file` and `postgres` targets.
//! - [`expiry`]: the timer wheel that drives time-outs, retries and expiry.
//! - [`broker`]: the workflow: submissions, decisions, grants and revocations.
//! - [`private_file`]: the permission rule for keys and passwords.
//! - [`tls`]: rustls configuration (swapped whole on reload), client identity, the certificate
//!   deny list, certificates made with rcgen.
//! - [`grpc`]: tonic services; the only place where errors become `tonic::Status`.
//! - [`metrics`]: Prometheus metrics from commits, calls and the store, on their own listener.
//! - [`server`]: build everything from a configuration, then run it on a bound listener.
//! - [`reload`]: what `SIGHUP` re-reads while the daemon serves.
//! - [`service`]: running under systemd: readiness, watchdog, checks before serving.
//! - [`dev`]: the embedded dev-mode setup: certificates, demo policy and directory.
//! - [`cli`]: the `elevate` command-line client.
//! - [`proto`]: generated wire types and stubs.

// The public surface: what the two binaries, the tests, the benchmark and tools built on the
// library use. Everything else is an internal of the daemon.
pub mod audit;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dev;
pub mod elevated;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod policy;
pub mod provision;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;

pub use broker::{Broker, BrokerError, Caller, Settings};
pub use config::Config;
pub use expiry::{Backoff, Expiry};
pub use reload::Reloader;
pub use server::{Options, Server};

// Internals.
mod crowd;
mod expiry;
mod grpc;
mod hash;
mod keyed;
mod private_file;
mod process;
mod reload;

/// A boxed future, for object-safe async trait methods (provisioners, notifiers, store
/// backends).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Generated wire types and gRPC stubs of `proto/elevate/v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// Version 1 of the wire API.
    pub mod v1 {
        tonic::include_proto!("elevate.v1");
    }

    /// The encoded descriptors of the wire API, served by gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/elevate_descriptor.bin"));
}
