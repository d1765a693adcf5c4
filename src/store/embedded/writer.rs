//! The writer thread: group commit. It takes the first queued job, drains whatever else is
//! queued (up to the batch limit) into the same write transaction, commits once (one fsync),
//! tells the commit listener, then answers every caller. Durable throughput therefore grows with
//! concurrency instead of being capped at one fsync per transition.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use redb::Database;
use tokio::sync::{mpsc, oneshot};

use super::tables::{Tables, TablesView};
use crate::model::AccessRequest;
use crate::store::seam::Job;
use crate::store::{
    Commit, CommitListener, Recorded, Signing, StoreError, StoreOptions, StoreStats,
};

pub(super) enum Message {
    Job(Job),
    Close(oneshot::Sender<()>),
}

/// Queued jobs beyond this make callers wait (backpressure).
pub(super) const QUEUE: usize = 8192;

pub(super) fn spawn(
    db: Arc<Database>,
    options: StoreOptions,
    listener: Arc<dyn CommitListener>,
    stats: Arc<StoreStats>,
) -> Result<mpsc::Sender<Message>, StoreError> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("store-writer".to_owned())
        .spawn(move || run(&db, options, receiver, &*listener, &stats))
        .map_err(|error| StoreError::Failed(format!("cannot start the writer thread: {error}")))?;
    Ok(sender)
}

fn run(
    db: &Database,
    options: StoreOptions,
    mut receiver: mpsc::Receiver<Message>,
    listener: &dyn CommitListener,
    stats: &StoreStats,
) {
    let max_batch = options.max_batch.max(1);
    let signing = options.signing.as_ref();
    let mut close = None;
    while close.is_none() {
        let mut batch = Vec::new();
        match receiver.blocking_recv() {
            Some(Message::Job(job)) => batch.push(job),
            Some(Message::Close(done)) => {
                close = Some(done);
            }
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
            commit_batch(db, batch, listener, signing, stats);
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.jobs.fetch_add(jobs, Ordering::Relaxed);
        }
    }
    receiver.close();
    // Jobs queued after the close are answered by dropping them: their callers see Closed.
    while receiver.try_recv().is_ok() {}
    if let Some(done) = close {
        let _ = done.send(());
    }
}

fn commit_batch(
    db: &Database,
    batch: Vec<Job>,
    listener: &dyn CommitListener,
    signing: Option<&Signing>,
    stats: &StoreStats,
) {
    let started = Instant::now();
    let jobs = batch.len();
    let mut responders = Vec::with_capacity(jobs);
    let mut committed: Vec<AccessRequest> = Vec::new();
    let mut recorded: Vec<Recorded> = Vec::new();
    let mut queued = 0;
    let outcome = (|| -> Result<(), StoreError> {
        let txn = db.begin_write()?;
        {
            let mut tables = Tables::open(&txn, signing)?;
            let mut jobs = batch.into_iter();
            for job in jobs.by_ref() {
                let view = TablesView { tables: &tables };
                match catch_unwind(AssertUnwindSafe(|| job(&view))) {
                    Ok((changes, respond)) => {
                        responders.push(respond);
                        if let Some(changes) = changes {
                            // On failure the remaining jobs are dropped (their callers see
                            // Closed) and the transaction is aborted for everybody.
                            tables.apply(changes, &mut committed, &mut recorded)?;
                        }
                    }
                    Err(_) => {
                        tracing::error!("a store job panicked; its changes were discarded");
                    }
                }
            }
            queued = tables.queued;
        }
        if stats.refuse_commit() {
            // Dropping the transaction aborts it.
            return Err(StoreError::Failed(
                "the commit was refused (injected fault)".to_owned(),
            ));
        }
        txn.commit()?;
        Ok(())
    })();
    match &outcome {
        Ok(()) => listener.committed(&Commit {
            requests: &committed,
            events: &recorded,
            queued,
            jobs,
            took: started.elapsed(),
        }),
        Err(error) => tracing::error!(%error, "store commit failed"),
    }
    for respond in responders {
        respond(outcome.as_ref().map(|_| ()));
    }
}
