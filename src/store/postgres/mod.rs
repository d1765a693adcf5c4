//! The PostgreSQL backend: the whole store in one PostgreSQL database, for one daemon or
//! several (one leader at a time, the others standing by).
//!
//! Like the embedded backend, writes go through one writer thread ([`writer`]) that drains
//! every queued job into one transaction (group commit: one PostgreSQL transaction and one
//! durable commit per batch) and answers the callers once it committed. A job's reads see the
//! earlier jobs of its batch because they run in the same transaction. Every transaction first
//! takes the leadership row `FOR SHARE` and checks that its epoch is this daemon's
//! ([`Fence`](super::seam::Fence)): a takeover (which updates that row) either waits for it or
//! makes it fail, so nothing of an older epoch commits after a newer leader started. Reads use
//! `REPEATABLE READ READ ONLY` transactions ([`reader`]) on pooled connections and never wait
//! for the writer. The tables are in [`schema`].
//!
//! The store's code is synchronous (jobs and reads run on threads of their own), while
//! `tokio-postgres` is async: each statement is run with the daemon runtime's
//! `Handle::block_on`, which those threads may call.

mod reader;
mod schema;
mod writer;

pub use writer::Imported;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_postgres::Client;

use super::batch::Queue;
use super::seam::{Backend, Job, Read};
use super::{CommitListener, StoreError, StoreOptions, StoreStats};
use crate::BoxFuture;
use crate::config::StoreConfig;
use crate::pg::tls::RustlsConnector;

/// Most read connections open at once; further reads wait for one.
const READERS: usize = 8;

/// Where a PostgreSQL store is and how to log in, checked and with its secrets read.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    tls: Option<RustlsConnector>,
    timeout: Duration,
    shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("at", &self.shown)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The store a `kind = "postgres"` section names; reads its password file and
    /// certificates now, so that unusable ones stop the daemon before it serves.
    pub fn new(store: &StoreConfig) -> Result<Self, String> {
        store.check()?;
        let login = store
            .login()
            .ok_or("kind: the store is not a PostgreSQL store")?;
        let settings = login.settings()?;
        let mut config = settings.config;
        config
            .application_name("elevated")
            .connect_timeout(login.timeout)
            .ssl_mode(if settings.tls.is_some() {
                tokio_postgres::config::SslMode::Require
            } else {
                tokio_postgres::config::SslMode::Disable
            });
        Ok(Self {
            config,
            tls: settings.tls,
            timeout: login.timeout,
            shown: format!("postgres://{}", settings.shown),
        })
    }

    /// The same store, its sessions named `name` in PostgreSQL (`application_name`, seen in
    /// `pg_stat_activity` and the server's log).
    pub fn named(mut self, name: &str) -> Self {
        self.config.application_name(name);
        self
    }

    /// `postgres://host:port/database`, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Logs in, with statements limited to `statement` (and idle transactions to `idle`:
    /// the server ends a transaction whose daemon stopped in the middle of it). The
    /// connection is driven by a task on the current runtime.
    pub(crate) async fn connect(
        &self,
        statement: Duration,
        idle: Duration,
    ) -> Result<Client, StoreError> {
        let mut config = self.config.clone();
        config.options(format!(
            "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={} \
             -c client_min_messages=warning",
            statement.as_millis(),
            statement.as_millis(),
            idle.as_millis().max(1),
        ));
        let unreachable = |error: &dyn std::fmt::Display| {
            StoreError::Unreachable(format!("cannot connect to {}: {error}", self.shown))
        };
        let connecting = async {
            match &self.tls {
                Some(tls) => {
                    let (client, connection) = config.connect(tls.clone()).await?;
                    tokio::spawn(drive(connection));
                    Ok::<_, tokio_postgres::Error>(client)
                }
                None => {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(drive(connection));
                    Ok(client)
                }
            }
        };
        tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| unreachable(&format!("timed out after {:?}", self.timeout)))?
            .map_err(|error| unreachable(&crate::pg::describe(&error)))
    }

    /// Logs in with the configured timeout for statements and idle transactions.
    pub(crate) async fn connect_plain(&self) -> Result<Client, StoreError> {
        self.connect(self.timeout, self.timeout).await
    }
}

/// Runs a connection until its client is dropped or the server goes away.
async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "PostgreSQL store connection ended with an error");
    }
}

/// A failed statement: unreachable when the connection is gone or the server is going away or
/// coming back (SQLSTATE classes 08 and 57P, and 53: out of connections or memory), else the
/// server's message. Unreachable means "retry shortly" to callers.
pub(super) fn failed(what: &str, error: &tokio_postgres::Error) -> StoreError {
    let transient = match error.as_db_error() {
        None => true,
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
        }
    };
    let text = format!("{what}: {}", crate::pg::describe(error));
    if transient || error.is_closed() {
        StoreError::Unreachable(text)
    } else {
        StoreError::Failed(text)
    }
}

/// Creates the schema when missing and checks its version (upgrading a store of the previous
/// layout in place, in one transaction) and audit key: what `elevated store init` and
/// `elevated store upgrade` do, and every daemon at start. Says what an upgrade rewrote.
pub async fn initialize(
    target: &Target,
    key: Option<crate::audit::key::PublicKey>,
) -> Result<Option<super::Upgraded>, StoreError> {
    let mut client = target.connect_plain().await?;
    let upgraded = schema::initialize(&mut client, &target.shown, key).await?;
    if let Some(upgraded) = &upgraded {
        tracing::info!(store = %target.shown, "{upgraded}");
    }
    Ok(upgraded)
}

/// Verifies the audit trail of the store at `target` in one consistent snapshot (while
/// daemons keep writing), with `key` or else the key the store recorded, also keeping the
/// hashes of the entries numbered in `wanted` (for a witness).
pub async fn verify(
    target: &Target,
    key: Option<crate::audit::key::PublicKey>,
    wanted: std::collections::BTreeSet<u64>,
) -> Result<super::offline::StoreVerified, super::offline::OfflineError> {
    let client = target.connect_plain().await?;
    let shown = target.shown.clone();
    let runtime = Handle::current();
    tokio::task::spawn_blocking(move || {
        let snapshot = reader::Snapshot::begin(client, &runtime)?;
        let verified = super::offline::verify_reads(&snapshot, &shown, key, &wanted);
        drop(snapshot.finish());
        verified
    })
    .await
    .map_err(|_| StoreError::ReadPanicked)?
}

/// Copies the redb store file at `from` (no daemon may hold it) into the empty store at
/// `target`, recording the file's audit key; the PostgreSQL store then holds the same chain
/// with the same head.
pub async fn migrate(
    target: &Target,
    from: &Path,
) -> Result<writer::Imported, super::offline::OfflineError> {
    let key = super::offline::read_file(from, |reads| Ok(reads.audit_key()?))?.0;
    initialize(target, key).await?;
    let (target, from, runtime) = (target.clone(), from.to_path_buf(), Handle::current());
    tokio::task::spawn_blocking(move || {
        super::offline::read_file(&from, |reads| Ok(writer::import(&target, &runtime, reads)?))
            .map(|(imported, _)| imported)
    })
    .await
    .map_err(|_| StoreError::ReadPanicked)?
}

/// The PostgreSQL store: its writer thread and a pool of read connections.
pub(super) struct Postgres {
    target: Arc<Target>,
    readers: Mutex<Readers>,
    /// Signalled when a read connection is given back (or closed).
    returned: Condvar,
    runtime: Handle,
    jobs: Queue,
    shown: PathBuf,
    closed: AtomicBool,
    /// The session holding this daemon's claim on the database ([`claim`]); closed with the
    /// store.
    claim: Mutex<Option<Client>>,
}

/// The advisory lock that says which daemons use a database.
pub(super) const IN_USE: i64 = 7_265_747;

/// Claims the database for this daemon, on a session of its own held while the store is
/// open: alone (a daemon without `[cluster]`, which fences nothing, must have the database to
/// itself, as a redb file is held by one process) or `shared` with the other nodes of its
/// cluster (whose writes the leadership epoch fences). Either kind keeps the other out.
async fn claim(target: &Target, shared: bool) -> Result<Client, StoreError> {
    let client = target.connect_plain().await?;
    let sql = if shared {
        "SELECT pg_try_advisory_lock_shared($1)"
    } else {
        "SELECT pg_try_advisory_lock($1)"
    };
    let held: bool = client
        .query_one(sql, &[&IN_USE])
        .await
        .map_err(|e| failed("claiming the database", &e))?
        .get(0);
    if !held {
        return Err(StoreError::InUse(PathBuf::from(format!(
            "{} (another elevated {}; a daemon without [cluster] needs the database to itself, \
             and the nodes of a cluster share it only with each other)",
            target.shown,
            if shared {
                "without [cluster] uses it"
            } else {
                "uses it"
            }
        ))));
    }
    Ok(client)
}

impl Postgres {
    /// Creates or checks the schema and starts the writer thread.
    pub(super) async fn open(
        target: Target,
        options: StoreOptions,
        listener: Arc<dyn CommitListener>,
        stats: Arc<StoreStats>,
    ) -> Result<Self, StoreError> {
        let key = options.signing.as_ref().map(|signing| signing.key.public());
        initialize(&target, key).await?;
        let claim = claim(&target, options.fence.is_some()).await?;
        let target = Arc::new(target);
        let runtime = Handle::current();
        let jobs = writer::spawn(target.clone(), runtime.clone(), options, listener, stats)?;
        Ok(Self {
            shown: PathBuf::from(&target.shown),
            target,
            readers: Mutex::new(Readers::default()),
            returned: Condvar::new(),
            runtime,
            jobs,
            closed: AtomicBool::new(false),
            claim: Mutex::new(Some(claim)),
        })
    }

    /// A read connection: an idle one, a new one while fewer than [`READERS`] are open, else
    /// the next one given back.
    fn reader(&self) -> Result<Client, StoreError> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return Err(StoreError::Closed);
            }
            while let Some(client) = readers.idle.pop() {
                if !client.is_closed() {
                    return Ok(client);
                }
                readers.open -= 1;
            }
            if readers.open < READERS {
                readers.open += 1;
                drop(readers);
                let client = self.runtime.block_on(self.target.connect_plain());
                if client.is_err() {
                    self.give_back(None);
                }
                return client;
            }
            readers = self
                .returned
                .wait(readers)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Returns a read connection to the pool (`None`: it was closed).
    fn give_back(&self, client: Option<Client>) {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        match client {
            Some(client) if !self.closed.load(Ordering::SeqCst) => readers.idle.push(client),
            _ => readers.open -= 1,
        }
        self.returned.notify_one();
    }
}

/// The read connections.
#[derive(Default)]
struct Readers {
    idle: Vec<Client>,
    /// Idle ones and those in use.
    open: usize,
}

impl Backend for Postgres {
    fn submit(&self, job: Job) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.jobs.submit(job))
    }

    fn read(&self, read: Read<'_>) {
        let client = match self.reader() {
            Ok(client) => client,
            Err(error) => return read(Err(error)),
        };
        let snapshot = match reader::Snapshot::begin(client, &self.runtime) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                self.give_back(None);
                return read(Err(error));
            }
        };
        read(Ok(&snapshot));
        self.give_back(snapshot.finish());
    }

    fn close(&self, within: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.jobs.close(tokio::time::Instant::now() + within).await;
            self.closed.store(true, Ordering::SeqCst);
            // Released now, not when the server notices the session ended: a daemon started
            // right after this one stopped finds the database free.
            let claim = self.claim.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(claim) = claim {
                let _ = claim.batch_execute("SELECT pg_advisory_unlock_all()").await;
            }
            let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            readers.open -= readers.idle.len();
            readers.idle.clear();
            self.returned.notify_all();
        })
    }

    fn path(&self) -> &Path {
        &self.shown
    }

    fn queued_jobs(&self) -> usize {
        self.jobs.queued()
    }
}
