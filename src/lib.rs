//! elevate: a just-in-time privileged access broker.
//!
//! An engineer asks for time-bound access with a reason; the policy decides who must approve;
//! the broker grants it on the target system, keeps a durable lease, and takes it away on time,
//! across restarts, crashes and flaky targets.
//!
//! The crate is the library behind two thin binaries: `elevated` (the daemon, whose
//! subcommands are [`elevated`]) and `elevate` (the CLI, [`cli`]). Dependencies point one way,
//! from the edge inwards; `ARCHITECTURE.md` has the measured map and where a new store backend,
//! provisioner or notifier goes.
//!
//! ```text
//! elevated ─▶ dev ─▶ server (composition root) ─▶ grpc, metrics, reload, service, config
//!                                                   │
//!                               broker (Gate, Trail, Broker) ─▶ notify, provision, store
//!                                                   │
//!                                  audit, policy, tls, expiry ─▶ model, clock
//! cli ─▶ proto clients, model, the offline verifiers of audit (never the broker)
//! ```
//!
//! Public:
//! - [`model`]: typed ids, names, durations, the request record, its state machine, and what
//!   happened (`Happened`).
//! - [`clock`]: the one source of time; tests advance a manual clock.
//! - [`config`]: the daemon's configuration file.
//! - [`policy`]: policy and directory files, route evaluation, the demo policy.
//! - [`store`]: the store handle, the seam a backend implements, and the embedded redb backend.
//! - [`audit`]: action names and entries, the hash chain, signed checkpoints, filters, the
//!   export format, the offline verifier, the witness and the access report.
//! - [`provision`]: the `Provisioner` trait and the `exec`, `file` and `postgres` targets.
//! - [`notify`]: notifications of changes, their routing, notifiers and the outbox.
//! - [`broker`]: the workflow, in parts: the gate, the trail, the broker.
//! - [`tls`]: rustls configuration, client identity, revocation, certificates made with rcgen.
//! - [`metrics`]: Prometheus metrics with `prometheus-client`, on their own listener.
//! - [`server`]: the composition root: build everything from options, then run.
//! - [`scim`]: the SCIM 2.0 endpoint the identity provider pushes the directory of record to.
//! - [`service`]: running under systemd: readiness, watchdog, checks before serving.
//! - [`dev`]: the embedded dev-mode setup: certificates, demo policy and directory.
//! - [`elevated`]: the daemon's command line; [`cli`]: the `elevate` command line.
//! - [`proto`]: generated wire types and stubs.
//!
//! Private: `grpc` (tonic services, the transport, errors to statuses), `expiry` (the timer
//! wheel), `reload` (what `SIGHUP` re-reads), `keyed` (keyed async locks), `crowd` (capped work
//! in progress), `hash`, `process` (running configured programs), `private_file` (the rule for
//! key files, and reading and writing them).

// The public surface: what the two binaries, the tests, the benchmark and tools built on the
// library use. Everything else is an internal of the daemon.
pub mod audit;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod elevated;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod policy;
pub mod provision;
pub mod scim;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;

pub use broker::{Broker, BrokerError, Caller, Settings};
pub use config::Config;
pub use expiry::{Backoff, Expiry};
pub use process::Program;
pub use reload::Reloader;
pub use server::{Options, Server};

// Internals.
mod crowd;
mod expiry;
mod grpc;
mod hash;
mod keyed;
mod pg;
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
