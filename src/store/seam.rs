//! The seam between the workflow and storage. The broker (and the outbox, the metrics, the
//! tools) talk to a [`Store`](super::Store), which hands their work to a [`Backend`]: write jobs
//! that read through a [`View`] and return their [`Changes`], reads through [`Reads`], the
//! [`CommitListener`](super::CommitListener) told about every commit, and the recovery scans
//! among the reads. A second backend implements these three traits in a module of its own
//! beside [`embedded`](super::embedded) (the redb file); nothing above the store changes.
//!
//! What every backend guarantees:
//! - A job sees the state as of the jobs committed before it, its own batch's earlier jobs
//!   included, and its changes are applied atomically with their audit events (chained in
//!   order, with the checkpoints [`Signing`](super::Signing) asks for) and their outbox
//!   entries. A refused job (no changes) writes nothing.
//! - A job's answer is given only once its transaction is durable; the commit listener is told
//!   about commits in commit order before any of their answers.
//! - Reads see a consistent snapshot and never wait for writes.

use std::path::Path;
use std::time::Duration;

use super::idempotency::Claim;
use super::{AuditCursor, AuditPage, Changes, DirectoryRecord, OutboxDue, Outgoing, StoreError};
use crate::BoxFuture;
use crate::audit::Event;
use crate::audit::key::{Checkpoint, PublicKey};
use crate::audit::query::Filter;
use crate::model::{
    AccessRequest, Offboarding, Page, Principal, RequestId, ResourceName, ReviewState, StateKind,
    Timestamp,
};

/// What a read sees: one consistent snapshot of the store.
pub trait Reads {
    /// The request with `id`.
    fn request(&self, id: RequestId) -> Result<Option<AccessRequest>, StoreError>;

    /// Requests of `principal`, newest first, optionally only in one state.
    fn requests_of(
        &self,
        principal: &Principal,
        state: Option<StateKind>,
        page: Page,
    ) -> Result<Vec<AccessRequest>, StoreError>;

    /// Every principal's requests, newest first, optionally only in one state.
    fn requests(
        &self,
        state: Option<StateKind>,
        page: Page,
    ) -> Result<Vec<AccessRequest>, StoreError>;

    /// Every request in `kind`, oldest first.
    fn requests_in_state(&self, kind: StateKind) -> Result<Vec<AccessRequest>, StoreError>;

    /// The ids of every request in `kind`, oldest first, without reading the requests.
    fn ids_in_state(&self, kind: StateKind) -> Result<Vec<RequestId>, StoreError>;

    /// The ids of the open requests whose (requester, resource) pair `keep` accepts, read from
    /// the open-request index alone: `keep` is asked once per distinct pair and no request is
    /// decoded, so a sweep over a million open leases costs an index scan.
    fn open_ids_where(
        &self,
        keep: &mut dyn FnMut(&str, &str) -> bool,
    ) -> Result<Vec<RequestId>, StoreError>;

    /// How many requests are in `kind`, without reading them.
    fn count_in_state(&self, kind: StateKind) -> Result<u64, StoreError>;

    /// Active leases whose extension waits for approvals, oldest first.
    fn extensions_pending(&self) -> Result<Vec<AccessRequest>, StoreError>;

    /// The open requests of `principal` for `resource` (or any resource when `None`) other
    /// than `except`, decoding only those: a lease alone on its grant costs an index read.
    fn open_of_except(
        &self,
        principal: &Principal,
        resource: Option<&ResourceName>,
        except: RequestId,
    ) -> Result<Vec<AccessRequest>, StoreError>;

    /// Every scheduled deadline, soonest first: what the timer wheel must hold.
    fn deadlines(&self) -> Result<Vec<(Timestamp, RequestId)>, StoreError>;

    /// Break-glass requests whose review is in one of `states`, oldest first.
    fn reviews(&self, states: &[ReviewState]) -> Result<Vec<AccessRequest>, StoreError>;

    /// How many break-glass reviews are in `state`, without reading them.
    fn count_reviews(&self, state: ReviewState) -> Result<u64, StoreError>;

    /// Outbox entries due at `now` for notifiers not in `skip`, soonest first, at most
    /// `limit`; and when the next entry for such a notifier falls due. Looks at no more than
    /// `scan` entries (then the next time is unknown and `complete` is false).
    fn outbox_due(
        &self,
        now: Timestamp,
        limit: usize,
        skip: &std::collections::BTreeSet<String>,
        scan: usize,
    ) -> Result<OutboxDue, StoreError>;

    /// Every principal an administrator offboarded (and has not reinstated).
    fn offboarded(&self) -> Result<Vec<Offboarding>, StoreError>;

    /// Every resource of the directory of record, by kind and id.
    fn directory(&self) -> Result<Vec<DirectoryRecord>, StoreError>;

    /// How many notifications wait in the outbox.
    fn outbox_len(&self) -> Result<u64, StoreError>;

    /// Every audit event about request `id`, oldest first.
    fn events_of(&self, id: RequestId) -> Result<Vec<Event>, StoreError>;

    /// Audit events stored under keys from `from`, with their keys, at most `limit`, in key
    /// order (for verification, which checks that each key matches its event).
    fn events_with_keys(&self, from: u64, limit: usize) -> Result<Vec<(u64, Event)>, StoreError>;

    /// Up to `limit` audit entries from `from` on, with their keys, as stored (undecoded).
    fn event_records(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// The links of the audit entries stored under keys from `from` (from the first stored
    /// key at or after it), at most `limit`, in key order, each one's content hashed
    /// ([`records::Link`](super::records::Link)): what verification walks. A backend may read
    /// and hash in parallel.
    fn event_links(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, super::records::Link)>, StoreError> {
        super::records::links_of_page(self.event_records(from, limit)?)
    }

    /// The store's recorded audit head (the last entry's hash).
    fn audit_head(&self) -> Result<[u8; 32], StoreError>;

    /// Audit events with sequence numbers from `from`, at most `limit`, oldest first.
    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .events_with_keys(from, limit)?
            .into_iter()
            .map(|(_, event)| event)
            .collect())
    }

    /// One page of the events matching `filter`, newest first (by time, then sequence
    /// number), strictly before `cursor` when given. Looks at no more than `scan` index rows, so
    /// a selective filter over a long log answers in bounded time; `next` says where to go on.
    fn audit_page(
        &self,
        filter: &Filter,
        cursor: Option<AuditCursor>,
        limit: usize,
        scan: usize,
    ) -> Result<AuditPage, StoreError>;

    /// Every checkpoint with `from <= seq`, oldest first, at most `limit`.
    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<Checkpoint>, StoreError>;

    /// The checkpoint of entry `seq`, if one was signed.
    fn checkpoint_at(&self, seq: u64) -> Result<Option<Checkpoint>, StoreError>;

    /// The newest checkpoint.
    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;

    /// The last audit event, if any.
    fn last_event(&self) -> Result<Option<Event>, StoreError>;

    /// The audit key the store was first used with.
    fn audit_key(&self) -> Result<Option<PublicKey>, StoreError>;

    /// The store's audit counter: how many events were ever appended (the next sequence
    /// number minus one).
    fn audit_count(&self) -> Result<u64, StoreError>;

    /// The idempotency key `key` as claimed, if it was.
    fn claimed(&self, key: &str) -> Result<Option<Claim>, StoreError>;

    /// Every claimed idempotency key (to copy a store).
    fn claims(&self) -> Result<Vec<Claim>, StoreError>;

    /// Requests with ids above `after`, oldest first, at most `limit`.
    fn requests_after(
        &self,
        after: Option<RequestId>,
        limit: usize,
    ) -> Result<Vec<AccessRequest>, StoreError>;
}

/// What a write job may read: the state as of the jobs committed before it, including the
/// earlier jobs of its own batch.
pub trait View {
    /// The request with `id`.
    fn request(&self, id: RequestId) -> Result<Option<AccessRequest>, StoreError>;

    /// The open (pending, approved, active or revoke-failing) requests of `principal` for
    /// `resource`, oldest first.
    fn open_requests(
        &self,
        principal: &Principal,
        resource: &ResourceName,
    ) -> Result<Vec<AccessRequest>, StoreError>;

    /// Every break-glass request of `principal`, newest first.
    fn break_glass_of(&self, principal: &Principal) -> Result<Vec<AccessRequest>, StoreError>;

    /// The outbox entry `seq`, if still queued.
    fn outgoing(&self, seq: u64) -> Result<Option<Outgoing>, StoreError>;

    /// The id the next new request gets.
    fn next_request_id(&self) -> Result<RequestId, StoreError>;

    /// The idempotency key `key` as claimed, if it was (by an earlier job of this batch too).
    fn claimed(&self, key: &str) -> Result<Option<Claim>, StoreError>;
}

/// Told a job's outcome once its transaction committed (or failed).
pub type Responder = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// A write job, type-erased.
pub trait Work: Send {
    /// Reads through the view, then yields its changes (none when it refused) and its
    /// responder.
    fn run(self: Box<Self>, view: &dyn View) -> (Option<Changes>, Responder);

    /// Answers the caller with `error` without running: the transaction could not start, or
    /// an earlier job of the batch failed to apply.
    fn refuse(self: Box<Self>, error: &StoreError);
}

/// A type-erased write job.
pub type Job = Box<dyn Work>;

/// A read, type-erased: runs on a blocking thread with a snapshot.
pub type Read<'a> = Box<dyn FnOnce(Result<&dyn Reads, StoreError>) + Send + 'a>;

/// Who may write, when several daemons share one store: only the leader, in its epoch, and
/// only while its lease holds by its own clock. A backend checks the epoch inside every write
/// transaction.
pub trait Fence: Send + Sync + 'static {
    /// The epoch this daemon leads in, while its lease holds by its own monotonic clock;
    /// `None` once it may no longer act.
    fn current(&self) -> Option<u64>;

    /// The leadership lease: a transaction left open longer than a fraction of it is ended by
    /// the database, so that a stopped leader cannot hold up a takeover.
    fn lease(&self) -> Duration;

    /// A write was refused because a newer epoch took over: this daemon is deposed.
    fn deposed(&self);

    /// This daemon's node name, recorded with what it writes.
    fn node(&self) -> &str;
}

impl std::fmt::Debug for dyn Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("epoch", &self.current())
            .finish_non_exhaustive()
    }
}

/// A storage backend.
pub trait Backend: Send + Sync + 'static {
    /// Queues `job` for a coming write transaction; waits while the queue is full. Fails
    /// (dropping the job unanswered) when the backend stopped.
    fn submit(&self, job: Job) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Runs `read` with a snapshot, on the calling (blocking) thread.
    fn read(&self, read: Read<'_>);

    /// Finishes the jobs already queued, stops writing and releases the storage, waiting at
    /// most `within`. Later submissions and reads fail with [`StoreError::Closed`].
    fn close(&self, within: Duration) -> BoxFuture<'_, ()>;

    /// Where the store lives, for messages.
    fn path(&self) -> &Path;

    /// Write jobs waiting (not counting the batch being committed).
    fn queued_jobs(&self) -> usize;
}

/// Wraps a typed job so a backend can run it without knowing its types.
pub(super) fn erase<T, E, F>(job: F, answer: tokio::sync::oneshot::Sender<Result<T, E>>) -> Job
where
    F: FnOnce(&dyn View) -> Result<(Changes, T), E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    Box::new(Typed { job, answer })
}

/// A job and where its answer goes.
struct Typed<F, T, E> {
    job: F,
    answer: tokio::sync::oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Work for Typed<F, T, E>
where
    F: FnOnce(&dyn View) -> Result<(Changes, T), E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, view: &dyn View) -> (Option<Changes>, Responder) {
        let Typed { job, answer } = *self;
        match job(view) {
            Ok((changes, value)) => {
                let respond: Responder = Box::new(move |commit| {
                    let _ = answer.send(match commit {
                        Ok(()) => Ok(value),
                        Err(error) => Err(E::from(copy(error))),
                    });
                });
                (Some(changes), respond)
            }
            Err(error) => {
                let respond: Responder = Box::new(move |_| {
                    let _ = answer.send(Err(error));
                });
                (None, respond)
            }
        }
    }

    fn refuse(self: Box<Self>, error: &StoreError) {
        let _ = self.answer.send(Err(E::from(copy(error))));
    }
}

/// Each caller of a failed batch gets its own copy of the error.
fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Closed => StoreError::Closed,
        StoreError::WriterGone => StoreError::WriterGone,
        StoreError::Unreachable(why) => StoreError::Unreachable(why.clone()),
        StoreError::Fenced(why) => StoreError::Fenced(why.clone()),
        other => StoreError::Failed(other.to_string()),
    }
}
