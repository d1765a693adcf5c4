//! The writer thread: group commit. It takes the first queued job, drains whatever else is
//! queued (up to the batch limit) into the same write transaction, commits once (one fsync),
//! tells the commit listener, then answers every caller. Durable throughput therefore grows with
//! concurrency instead of being capped at one fsync per transition.

use std::sync::Arc;

use redb::Database;
use tokio::sync::mpsc;

use super::tables::Tables;
use crate::store::batch::{self, Batch, Message, Queue};
use crate::store::seam::Job;
use crate::store::{CommitListener, Signing, StoreError, StoreOptions, StoreStats};

pub(super) fn spawn(
    db: Arc<Database>,
    options: StoreOptions,
    listener: Arc<dyn CommitListener>,
    stats: Arc<StoreStats>,
) -> Result<Queue, StoreError> {
    Queue::spawn(move |receiver| run(&db, options, receiver, &*listener, &stats))
}

fn run(
    db: &Database,
    options: StoreOptions,
    receiver: mpsc::Receiver<Message>,
    listener: &dyn CommitListener,
    stats: &StoreStats,
) {
    let signing = options.signing.as_ref();
    batch::serve(receiver, options.max_batch, stats, |jobs| {
        commit_batch(db, jobs, listener, signing, stats);
    });
}

fn commit_batch(
    db: &Database,
    jobs: Vec<Job>,
    listener: &dyn CommitListener,
    signing: Option<&Signing>,
    stats: &StoreStats,
) {
    let mut batch = Batch::new(jobs.len());
    // Taken when they run; refused when the transaction could not even start.
    let mut jobs = Some(jobs);
    let outcome = (|| -> Result<(), StoreError> {
        let txn = db.begin_write()?;
        {
            let mut tables = Tables::open(&txn, signing)?;
            batch.run(jobs.take().unwrap_or_default(), &mut tables)?;
            batch.queued = tables.queued;
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
    if let Err(error) = &outcome {
        tracing::error!(%error, "store commit failed");
    }
    if let (Some(jobs), Err(error)) = (jobs, &outcome) {
        batch::refuse(jobs, error);
    }
    batch.finish(outcome, listener, stats);
}
