//! What the writer threads of every backend share: the queue of jobs, group commit (take the
//! first queued job, drain whatever else is queued up to the batch limit), running a batch's
//! jobs in order inside one transaction, and, once the transaction committed or failed,
//! telling the commit listener and answering every caller.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::idempotency::Claim;
use super::seam::{Job, Responder, View};
use super::{
    Changes, Commit, CommitListener, DirectoryWrite, Outgoing, Recorded, StoreError, StoreStats,
};
use crate::audit::Draft;
use crate::model::{AccessRequest, Offboarding, Principal, Timestamp};

/// What a writer thread is sent.
pub(super) enum Message {
    /// A job for a coming transaction.
    Job(Job),
    /// Finish the queued jobs, then stop; answered once stopped.
    Close(oneshot::Sender<()>),
}

/// Queued jobs beyond this make callers wait (backpressure).
pub(super) const QUEUE: usize = 8192;

/// A backend's write transaction, as a batch's jobs use it: they read it as a [`View`], and
/// what each returns is applied to it ([`Transaction::apply`], the same for every backend)
/// before the next one runs. A backend supplies the steps.
pub(super) trait Transaction: View {
    /// Stores a new version of a request (a new request included), with its indexes.
    fn put_request(&mut self, request: &AccessRequest) -> Result<(), StoreError>;

    /// Chains and appends audit events (signing a checkpoint when enough are uncovered).
    fn append_events(&mut self, drafts: Vec<Draft>) -> Result<(), StoreError>;

    /// Signs the chain's head as of `at` when at least `after` events are not yet covered.
    fn checkpoint(&mut self, at: Timestamp, after: u64) -> Result<(), StoreError>;

    /// Adds a notification to the outbox under the next sequence number.
    fn queue(&mut self, outgoing: &Outgoing) -> Result<(), StoreError>;

    /// Replaces outbox entry `seq` (a retry later), when it is still queued.
    fn reschedule(&mut self, seq: u64, outgoing: &Outgoing) -> Result<(), StoreError>;

    /// Removes outbox entry `seq` (delivered, or given up on).
    fn remove_outgoing(&mut self, seq: u64) -> Result<(), StoreError>;

    /// Records an administrator's offboarding.
    fn offboard(&mut self, offboarding: &Offboarding) -> Result<(), StoreError>;

    /// Removes the offboarding of `principal`.
    fn reinstate(&mut self, principal: &Principal) -> Result<(), StoreError>;

    /// Records a claimed idempotency key.
    fn claim(&mut self, claim: &Claim) -> Result<(), StoreError>;

    /// Stores or removes a resource of the directory of record.
    fn put_directory(&mut self, write: &DirectoryWrite) -> Result<(), StoreError>;

    /// Stores `changes`, appending each stored (or touched) request to `committed` and each
    /// audit event, in brief, to `recorded`.
    fn apply(
        &mut self,
        mut changes: Changes,
        committed: &mut Vec<AccessRequest>,
        recorded: &mut Vec<Recorded>,
    ) -> Result<(), StoreError> {
        let first = committed.len();
        for request in changes.requests {
            self.put_request(&request)?;
            committed.push(request);
        }
        committed.extend(changes.touched);
        // The typed event is not stored: it moves to the commit listener.
        recorded.extend(Recorded::of(&mut changes.events, committed, first));
        if !changes.events.is_empty() {
            self.append_events(changes.events)?;
        }
        if let Some(at) = changes.checkpoint {
            self.checkpoint(at, 1)?;
        }
        for outgoing in &changes.outgoing {
            self.queue(outgoing)?;
        }
        for (seq, outgoing) in &changes.retried {
            self.reschedule(*seq, outgoing)?;
        }
        for seq in changes.delivered {
            self.remove_outgoing(seq)?;
        }
        for offboarding in &changes.offboarded {
            self.offboard(offboarding)?;
        }
        for principal in &changes.reinstated {
            self.reinstate(principal)?;
        }
        for claim in &changes.claims {
            self.claim(claim)?;
        }
        for write in &changes.directory {
            self.put_directory(write)?;
        }
        Ok(())
    }
}

/// The writer thread's loop: commits batches with `commit` until the store is closed (or
/// every sender is gone), then drops what was queued after the close (its callers see
/// `Closed`) and says it stopped.
pub(super) fn serve(
    mut receiver: mpsc::Receiver<Message>,
    max_batch: usize,
    stats: &StoreStats,
    mut commit: impl FnMut(Vec<Job>),
) {
    let max_batch = max_batch.max(1);
    let mut close = None;
    while close.is_none() {
        let mut batch = Vec::new();
        match receiver.blocking_recv() {
            Some(Message::Job(job)) => batch.push(job),
            Some(Message::Close(done)) => close = Some(done),
            None => break,
        }
        while close.is_none() && batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Close(done)) => close = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let jobs = batch.len() as u64;
            commit(batch);
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.jobs.fetch_add(jobs, Ordering::Relaxed);
        }
    }
    receiver.close();
    while receiver.try_recv().is_ok() {}
    if let Some(done) = close {
        let _ = done.send(());
    }
}

/// One batch of jobs: their answers, and what the listener is told once it committed.
pub(super) struct Batch {
    started: Instant,
    jobs: usize,
    responders: Vec<Responder>,
    committed: Vec<AccessRequest>,
    recorded: Vec<Recorded>,
    /// Outbox entries queued in the transaction.
    pub(super) queued: usize,
}

impl Batch {
    /// A batch of `jobs` jobs, timed from now.
    pub(super) fn new(jobs: usize) -> Self {
        Self {
            started: Instant::now(),
            jobs,
            responders: Vec::with_capacity(jobs),
            committed: Vec::new(),
            recorded: Vec::new(),
            queued: 0,
        }
    }

    /// Runs `jobs` in order against `txn`, applying each one's changes before the next runs.
    /// A panicking job is discarded (logged) without touching the others; on a failed apply
    /// the remaining jobs are refused with the error, which is returned, to abort the
    /// transaction for everybody.
    pub(super) fn run(
        &mut self,
        jobs: Vec<Job>,
        txn: &mut dyn Transaction,
    ) -> Result<(), StoreError> {
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            let view: &dyn View = txn;
            match catch_unwind(AssertUnwindSafe(|| job.run(view))) {
                Ok((changes, respond)) => {
                    self.responders.push(respond);
                    if let Some(changes) = changes
                        && let Err(error) =
                            txn.apply(changes, &mut self.committed, &mut self.recorded)
                    {
                        refuse(jobs, &error);
                        return Err(error);
                    }
                }
                Err(_) => tracing::error!("a store job panicked; its changes were discarded"),
            }
        }
        Ok(())
    }

    /// Tells `listener` about the commit (when `outcome` says it committed), then answers
    /// every caller with the outcome.
    pub(super) fn finish(
        self,
        outcome: Result<(), StoreError>,
        listener: &dyn CommitListener,
        stats: &StoreStats,
    ) {
        if outcome.is_ok() {
            stats
                .entries
                .fetch_add(self.recorded.len() as u64, Ordering::Relaxed);
            listener.committed(&Commit {
                requests: &self.committed,
                events: &self.recorded,
                queued: self.queued,
                jobs: self.jobs,
                took: self.started.elapsed(),
            });
        }
        for respond in self.responders {
            respond(outcome.as_ref().map(|_| ()));
        }
    }
}

/// Answers every one of `jobs` with `error` without running them (a transaction that could
/// not start).
pub(super) fn refuse(jobs: impl IntoIterator<Item = Job>, error: &StoreError) {
    for job in jobs {
        job.refuse(error);
    }
}

/// The sending side of a writer thread's queue.
pub(super) struct Queue(mpsc::Sender<Message>);

impl Queue {
    /// Starts `writer` on a thread of its own, reading the queue.
    pub(super) fn spawn(
        writer: impl FnOnce(mpsc::Receiver<Message>) + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || writer(receiver))
            .map_err(|error| {
                StoreError::Failed(format!("cannot start the writer thread: {error}"))
            })?;
        Ok(Self(sender))
    }

    /// Queues `job`; waits while the queue is full.
    pub(super) async fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.0
            .send(Message::Job(job))
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Asks the writer to finish the queued jobs and stop, waiting for it until `deadline`.
    pub(super) async fn close(&self, deadline: tokio::time::Instant) {
        let (done, closed) = oneshot::channel();
        if self.0.send(Message::Close(done)).await.is_ok()
            && tokio::time::timeout_at(deadline, closed).await.is_err()
        {
            tracing::warn!("the store writer is still committing; it finishes on its own");
        }
    }

    /// Jobs waiting (not counting the batch being committed).
    pub(super) fn queued(&self) -> usize {
        self.0.max_capacity() - self.0.capacity()
    }
}
