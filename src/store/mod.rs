//! Durable state: the requests, the hash-chained audit trail, the outbox and the offboarded
//! principals, written by jobs that commit atomically with their audit events.
//!
//! [`Store`] is the handle the rest of the daemon holds. Its work goes through the seam
//! ([`seam`]): write jobs that read through a [`View`] and return [`Changes`], reads through
//! [`Reads`], and the [`CommitListener`] told about every durable commit. Behind the seam is a
//! backend: today [`embedded`], the whole store in one redb file with a group-committing writer
//! thread. A second backend is a module beside it implementing [`seam::Backend`], [`View`] and
//! [`Reads`], and one more way to open a [`Store`].

mod batch;
mod embedded;
pub mod idempotency;
pub mod postgres;
pub mod records;
pub mod seam;

/// What the embedded store's file is called where elevate picks the name (dev mode).
pub const EMBEDDED_FILE_NAME: &str = "elevate.redb";

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

pub use embedded::offline;
pub use seam::{Fence, Reads, View};

use crate::audit::key::{AuditKey, PublicKey};
use crate::audit::{Draft, Event};
use crate::model::{AccessRequest, Offboarding, Principal, Timestamp};

/// Where a store lives.
#[derive(Clone, Debug)]
pub enum Location {
    /// One redb file.
    Embedded(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<postgres::Target>),
}

impl Location {
    /// The store a configuration section names (reading its password file and certificates).
    pub fn from_config(store: &crate::config::StoreConfig) -> Result<Self, String> {
        match (store.kind, &store.path) {
            (crate::config::StoreKind::Redb, Some(path)) => Ok(Self::Embedded(path.clone())),
            (crate::config::StoreKind::Redb, None) => {
                Err("path: required (the store's redb file)".to_owned())
            }
            (crate::config::StoreKind::Postgres, _) => {
                postgres::Target::new(store).map(|target| Self::Postgres(Box::new(target)))
            }
        }
    }
}

/// A notification waiting in the outbox for one notifier. The store keeps it opaque.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outgoing {
    /// The notifier (from the daemon configuration) that delivers it.
    pub notifier: String,
    /// The event, as JSON.
    pub event: serde_json::Value,
    /// When it was queued.
    pub queued_at: Timestamp,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When to try next.
    pub next_attempt_at: Timestamp,
    /// What the last failed attempt said.
    pub last_error: Option<String>,
}

/// What [`Reads::outbox_due`] found.
#[derive(Debug)]
pub struct OutboxDue {
    /// Entries due now, soonest first.
    pub due: Vec<(u64, Outgoing)>,
    /// When the next entry (of the notifiers asked about) falls due, if known.
    pub next: Option<Timestamp>,
    /// Whether the scan covered the whole outbox.
    pub complete: bool,
}

/// Where the next page of an audit query starts: before this (time, sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditCursor {
    /// Unix milliseconds.
    pub at: u64,
    /// Sequence number.
    pub seq: u64,
}

/// One page of an audit query.
#[derive(Debug)]
pub struct AuditPage {
    /// Matching events, newest first.
    pub events: Vec<Event>,
    /// Where the next page starts; `None` when the answer is complete.
    pub next: Option<AuditCursor>,
}

/// Something went wrong in the store. The details are for the operator's log, not for peers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb reported an error.
    #[error("storage error: {0}")]
    Redb(#[from] redb::Error),
    /// A stored value could not be decoded.
    #[error("corrupt record in table {table}: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What the decoder said.
        message: String,
    },
    /// Another process holds the file.
    #[error("store {} is in use by another process", .0.display())]
    InUse(PathBuf),
    /// The file was written by an incompatible version.
    #[error("store {} has schema version {found}; this elevated understands {expected}", file.display())]
    Schema {
        /// The file.
        file: PathBuf,
        /// What the file says.
        found: u64,
        /// What this build writes.
        expected: u64,
    },
    /// The store was closed (the daemon is shutting down).
    #[error("the store is closed")]
    Closed,
    /// The writer thread ended without being closed.
    #[error("the store writer stopped unexpectedly")]
    WriterGone,
    /// A write transaction failed as a whole; nothing of it was stored.
    #[error("write transaction failed: {0}")]
    Failed(String),
    /// The database cannot be reached (or the connection broke): retry shortly.
    #[error("the store is unreachable: {0}")]
    Unreachable(String),
    /// This daemon is not (or no longer) the leader: its write was refused and nothing of it
    /// was stored.
    #[error("not the leader: {0}")]
    Fenced(String),
    /// The call's idempotency key was claimed already (by this claim): nothing was changed.
    #[error("idempotency key '{}' was used already", .0.key)]
    Replayed(Box<idempotency::Claim>),
    /// A read job panicked.
    #[error("a store read failed unexpectedly")]
    ReadPanicked,
    /// The store's checkpoints were signed by another audit key.
    #[error(
        "store {} records audit key {recorded}, but the daemon's audit key is {given}; \
         restore the original key file (a new key cannot vouch for the old checkpoints)",
        file.display()
    )]
    AuditKey {
        /// The file.
        file: PathBuf,
        /// The key the store was first used with.
        recorded: PublicKey,
        /// The key given now.
        given: PublicKey,
    },
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(error: $ty) -> Self {
                StoreError::Redb(redb::Error::from(error))
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

/// What upgrading a store of an earlier layout in place rewrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgraded {
    /// The layout found.
    pub from: u64,
    /// The layout now.
    pub to: u64,
    /// Request records rewritten.
    pub requests: u64,
    /// Audit entries rewritten (their chain hashes kept as stored).
    pub entries: u64,
    /// How long it took.
    pub took: Duration,
}

impl Upgraded {
    /// An upgrade from layout `from` to `to` that began at `started` and rewrote `requests`
    /// request records and `entries` audit entries.
    pub(crate) fn since(
        started: std::time::Instant,
        (from, to): (u64, u64),
        requests: u64,
        entries: u64,
    ) -> Self {
        Self {
            from,
            to,
            requests,
            entries,
            took: started.elapsed(),
        }
    }
}

impl std::fmt::Display for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "upgraded the store from layout {} to {}: {} requests and {} audit entries rewritten \
             in the binary encoding in {:.1} s",
            self.from,
            self.to,
            self.requests,
            self.entries,
            self.took.as_secs_f64()
        )
    }
}

/// What a write job wants stored, applied atomically with the rest of its batch.
#[derive(Debug, Default)]
pub struct Changes {
    /// New versions of requests (new requests included), in order.
    pub requests: Vec<AccessRequest>,
    /// Audit events recording the changes.
    pub events: Vec<Draft>,
    /// Requests to announce to the commit listener again, unchanged and not written: the
    /// listener then learns their current state in commit order, never a stale one.
    pub touched: Vec<AccessRequest>,
    /// Notifications to queue in the outbox, durably, with the change that caused them.
    pub outgoing: Vec<Outgoing>,
    /// Outbox entries delivered (or given up on): removed.
    pub delivered: Vec<u64>,
    /// Outbox entries to try again later, with their new attempt count, time and error.
    pub retried: Vec<(u64, Outgoing)>,
    /// Sign a checkpoint of the audit chain's head (made at this time) after these changes,
    /// unless the head is already covered.
    pub checkpoint: Option<Timestamp>,
    /// Principals offboarded by an administrator.
    pub offboarded: Vec<Offboarding>,
    /// Principals reinstated: their offboarding is removed.
    pub reinstated: Vec<Principal>,
    /// Idempotency keys claimed by the calls these changes are the first writes of.
    pub claims: Vec<idempotency::Claim>,
    /// Resources of the directory of record written or removed.
    pub directory: Vec<DirectoryWrite>,
}

/// Which kind of resource of the directory of record (the SCIM one) a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DirectoryKind {
    /// A person.
    User,
    /// A group and its members.
    Group,
}

impl DirectoryKind {
    /// The name stored beside the record (the SCIM resource type).
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::User => "User",
            DirectoryKind::Group => "Group",
        }
    }

    /// The kind stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "User" => Some(DirectoryKind::User),
            "Group" => Some(DirectoryKind::Group),
            _ => None,
        }
    }
}

/// One resource of the directory of record as stored: its kind, its id and its JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryRecord {
    /// User or group.
    pub kind: DirectoryKind,
    /// Its id (stable and opaque).
    pub id: String,
    /// The resource, as JSON bytes.
    pub resource: Vec<u8>,
}

/// A change to the directory of record: a resource stored (created or replaced) or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryWrite {
    /// Stored under its kind and id.
    Put(DirectoryRecord),
    /// Removed.
    Remove(DirectoryKind, String),
}

impl Changes {
    /// Adds `other`'s changes after these, in one transaction.
    pub fn absorb(&mut self, other: Changes) {
        self.requests.extend(other.requests);
        self.events.extend(other.events);
        self.touched.extend(other.touched);
        self.outgoing.extend(other.outgoing);
        self.delivered.extend(other.delivered);
        self.retried.extend(other.retried);
        self.checkpoint = self.checkpoint.max(other.checkpoint);
        self.offboarded.extend(other.offboarded);
        self.reinstated.extend(other.reinstated);
        self.claims.extend(other.claims);
        self.directory.extend(other.directory);
    }

    /// Whether these changes store something of the workflow (a request or an audit event),
    /// so that they are what a call's idempotency key is claimed with.
    fn store_something(&self) -> bool {
        !self.requests.is_empty() || !self.events.is_empty()
    }

    /// Announces `request` as it is, storing nothing.
    pub fn touch(request: AccessRequest) -> Self {
        Self {
            touched: vec![request],
            ..Self::default()
        }
    }
}

/// One durably committed write transaction, as the commit listener sees it.
#[derive(Debug)]
pub struct Commit<'a> {
    /// Requests stored (or announced again unchanged), in commit order.
    pub requests: &'a [AccessRequest],
    /// The audit events recorded, in order.
    pub events: &'a [Recorded],
    /// Notifications added to the outbox.
    pub queued: usize,
    /// Write jobs in the transaction, refused ones included.
    pub jobs: usize,
    /// From the start of the transaction to its durable commit.
    pub took: Duration,
}

impl Commit<'_> {
    /// The request `event` is about, as stored together with it.
    pub fn request_of(&self, event: &Recorded) -> Option<&AccessRequest> {
        event.request.and_then(|index| self.requests.get(index))
    }
}

/// An audit event of a commit in brief: what happened, when, and to which of its requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// What happened, typed, when the entry was made from a domain event (its action is
    /// `audit::entry::action` of it).
    pub happened: Option<crate::model::Happened>,
    /// When it happened.
    pub at: Timestamp,
    /// Where the request it concerns is in [`Commit::requests`], when the same job stored it.
    pub request: Option<usize>,
}

impl Recorded {
    /// Each of `events` in brief, its typed event moved out (it is not stored), pointing at
    /// where its request stands among `committed[first..]` (the requests of its own job).
    pub(super) fn of<'a>(
        events: &'a mut [Draft],
        committed: &'a [AccessRequest],
        first: usize,
    ) -> impl Iterator<Item = Recorded> + 'a {
        events.iter_mut().map(move |draft| Recorded {
            happened: draft.happened.take(),
            at: draft.at,
            request: draft.request.and_then(|id| {
                committed[first..]
                    .iter()
                    .rposition(|request| request.id == id)
                    .map(|index| first + index)
            }),
        })
    }
}

/// `job`, for the call whose idempotency slot is `slot` (if any): while the slot's key is not
/// yet claimed, a key claimed already refuses the job, and the first of its writes that stores
/// something claims it, with the request it stores first.
fn claiming<T, E, F>(
    slot: Option<idempotency::Slot>,
    job: F,
) -> impl FnOnce(&dyn View) -> Result<(Changes, T), E> + Send + 'static
where
    F: FnOnce(&dyn View) -> Result<(Changes, T), E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    move |view| {
        let Some((slot, key)) = slot.and_then(|slot| slot.pending().map(|key| (slot, key))) else {
            return job(view);
        };
        if let Some(first) = view.claimed(&key)? {
            return Err(E::from(StoreError::Replayed(Box::new(first))));
        }
        let (mut changes, answer) = job(view)?;
        if changes.store_something()
            && let Some(mut claim) = slot.take()
        {
            claim.request = changes
                .requests
                .first()
                .or(changes.touched.first())
                .map(|request| request.id);
            changes.claims.push(claim);
        }
        Ok((changes, answer))
    }
}

/// Told about every committed batch, in commit order, on the writer thread. Must not block.
pub trait CommitListener: Send + Sync + 'static {
    /// `commit` is durable.
    fn committed(&self, commit: &Commit<'_>);
}

/// A commit listener that hears nothing: for tools that open a store without a daemon.
#[derive(Debug)]
pub struct Unheard;

impl CommitListener for Unheard {
    fn committed(&self, _: &Commit<'_>) {}
}

/// How the audit chain's head is signed.
#[derive(Clone, Debug)]
pub struct Signing {
    /// The daemon's audit key.
    pub key: Arc<AuditKey>,
    /// A checkpoint is signed in the same transaction once this many events are not covered
    /// by one (besides the periodic and shutdown checkpoints the daemon asks for).
    pub every: u64,
    /// Where every checkpoint also goes, through the outbox, in the transaction that signs it.
    pub witness: Option<Witness>,
}

/// A notifier outside the store that receives every signed checkpoint, so that a store cut
/// back or rewritten after one is caught by comparing it with what the witness kept.
#[derive(Clone, Debug)]
pub struct Witness {
    /// The notifier's name.
    pub notifier: String,
    /// The outbox event (JSON) announcing a checkpoint.
    pub event: fn(&crate::audit::key::Checkpoint) -> serde_json::Value,
}

/// How the writer batches and signs.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most jobs in one transaction; 1 disables group commit.
    pub max_batch: usize,
    /// Checkpoint signing; `None` writes no checkpoints.
    pub signing: Option<Signing>,
    /// With several daemons on one store: the leadership every write transaction checks.
    pub fence: Option<Arc<dyn Fence>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            signing: None,
            fence: None,
        }
    }
}

/// Counters of the writer, for metrics and benchmarks, and the faults it is told to inject.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Jobs answered.
    pub jobs: AtomicU64,
    /// Audit entries committed.
    pub entries: AtomicU64,
    /// Write transactions refused because this daemon was no longer the leader.
    pub fenced: AtomicU64,
    /// Whether commits are refused after their jobs ran, as a full disk would refuse them
    /// ([`Store::refuse_commits`]).
    refuse_commits: std::sync::atomic::AtomicBool,
}

impl StoreStats {
    /// Whether to refuse this commit.
    fn refuse_commit(&self) -> bool {
        self.refuse_commits.load(Ordering::SeqCst)
    }
}

/// A cheap, cloneable handle to the store, whatever its backend.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn seam::Backend>,
    stats: Arc<StoreStats>,
    /// Set by [`Store::close`], to tell a closed store from a writer that died.
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.backend.path())
            .finish()
    }
}

impl Store {
    /// Opens (creating when missing) the embedded store, one redb file at `path`, and starts
    /// its writer.
    pub fn open(
        path: &Path,
        options: StoreOptions,
        listener: Arc<dyn CommitListener>,
    ) -> Result<Self, StoreError> {
        let stats = Arc::new(StoreStats::default());
        let backend = embedded::Embedded::open(path, options, listener, stats.clone())?;
        Ok(Self {
            backend: Arc::new(backend),
            stats,
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Opens the PostgreSQL store at `target` (creating its schema when missing, refusing one
    /// this build does not understand) and starts its writer.
    pub async fn open_postgres(
        target: postgres::Target,
        options: StoreOptions,
        listener: Arc<dyn CommitListener>,
    ) -> Result<Self, StoreError> {
        let stats = Arc::new(StoreStats::default());
        let backend = postgres::Postgres::open(target, options, listener, stats.clone()).await?;
        Ok(Self {
            backend: Arc::new(backend),
            stats,
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Upgrades the store at `location` (held by no daemon) to this release's layout when it
    /// is of an earlier one; `None` when it was current already. Every daemon does the same
    /// at start; this does it ahead of time.
    pub async fn upgrade(location: &Location) -> Result<Option<Upgraded>, StoreError> {
        match location {
            Location::Embedded(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || embedded::Embedded::upgrade(&path))
                    .await
                    .map_err(|_| StoreError::ReadPanicked)?
            }
            Location::Postgres(target) => postgres::initialize(target, None).await,
        }
    }

    /// Opens the store at `location`.
    pub async fn open_at(
        location: &Location,
        options: StoreOptions,
        listener: Arc<dyn CommitListener>,
    ) -> Result<Self, StoreError> {
        match location {
            Location::Embedded(path) => Self::open(path, options, listener),
            Location::Postgres(target) => {
                Self::open_postgres((**target).clone(), options, listener).await
            }
        }
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        self.backend.path()
    }

    /// Writer counters.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Write jobs waiting for the writer (not counting the batch it is committing).
    pub fn queued_jobs(&self) -> usize {
        self.backend.queued_jobs()
    }

    /// While `refuse` holds, every write transaction fails at its commit, after its jobs ran,
    /// as a full or failing disk would: for fault tests of what callers do when a commit
    /// fails (nothing of a failed transaction may stay in force, in the store or in memory).
    pub fn refuse_commits(&self, refuse: bool) {
        self.stats.refuse_commits.store(refuse, Ordering::SeqCst);
    }

    /// Runs `job` inside the next write transaction. `job` reads through the [`View`] and
    /// returns the changes to store and its answer; the answer is returned only once the
    /// transaction is durably committed. An `Err` from `job` stores nothing.
    pub async fn write<T, E, F>(&self, job: F) -> Result<T, E>
    where
        F: FnOnce(&dyn View) -> Result<(Changes, T), E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job = seam::erase(claiming(idempotency::carried(), job), answer);
        if self.backend.submit(job).await.is_err() {
            return Err(E::from(self.stopped()));
        }
        match answered.await {
            Ok(answer) => answer,
            // The job was dropped unanswered: it panicked, or an earlier job of its batch failed
            // to apply (both logged by the writer), or the store closed meanwhile.
            Err(_) if self.closed.load(Ordering::SeqCst) => Err(E::from(StoreError::Closed)),
            Err(_) => Err(E::from(StoreError::Failed(
                "the write was discarded; the daemon log says why".to_owned(),
            ))),
        }
    }

    /// The idempotency key `key` as claimed, if it was.
    pub async fn claimed(&self, key: &str) -> Result<Option<idempotency::Claim>, StoreError> {
        let key = key.to_owned();
        self.read(move |reads| reads.claimed(&key)).await
    }

    fn stopped(&self) -> StoreError {
        if self.closed.load(Ordering::SeqCst) {
            StoreError::Closed
        } else {
            StoreError::WriterGone
        }
    }

    /// Runs `query` with a consistent snapshot, on a blocking thread.
    pub async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        F: FnOnce(&dyn Reads) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || {
            let mut answer = Err(StoreError::ReadPanicked);
            backend.read(Box::new(|reads| answer = reads.and_then(query)));
            answer
        })
        .await
        .map_err(|_| StoreError::ReadPanicked)?
    }

    /// Finishes the jobs already queued, stops the writer, waits for reads in progress, and
    /// releases the storage, so that it can be opened again at once — waiting at most
    /// `within`. Later calls fail with [`StoreError::Closed`].
    pub async fn close(&self, within: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        self.backend.close(within).await;
    }

    /// Signs a checkpoint of the audit chain's head unless the head is covered already.
    pub async fn checkpoint(&self, at: Timestamp) -> Result<(), StoreError> {
        self.write(move |_| -> Result<_, StoreError> {
            Ok((
                Changes {
                    checkpoint: Some(at),
                    ..Changes::default()
                },
                (),
            ))
        })
        .await
    }

    /// Count of committed transactions and answered jobs so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.stats.commits.load(Ordering::Relaxed),
            self.stats.jobs.load(Ordering::Relaxed),
        )
    }
}
