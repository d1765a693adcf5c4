//! The embedded backend: the whole store in one redb file.
//!
//! redb allows one write transaction at a time and its calls block, so all writes go through
//! one writer thread ([`writer`]) that drains every queued job into a single write transaction
//! and a single fsync (group commit), then answers each caller. A job reads what it needs inside
//! that transaction and returns the changes it wants; the writer applies them together with
//! their audit events and index updates ([`tables`]). A refused job returns no changes, so it
//! cannot leave half a write behind. Reads use their own read transactions ([`reader`]) on
//! blocking threads and never wait for the writer. [`offline`] verifies a file's audit trail
//! without a daemon.

pub mod offline;
mod reader;
mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::Database;

use super::batch::Queue;
use super::seam::{Backend, Job, Read};
use super::{CommitListener, Outgoing, Signing, StoreError, StoreOptions, StoreStats};
use crate::BoxFuture;
pub(super) use reader::Reader;
pub(super) use tables::{review_code, state_code};

/// The redb file and the channel to its writer thread.
pub(super) struct Embedded {
    /// The open database; taken out by [`Backend::close`], after which reads fail with
    /// `Closed`. A std lock, held only to clone or take the `Arc`.
    db: RwLock<Option<Arc<Database>>>,
    jobs: Queue,
    path: PathBuf,
}

impl Embedded {
    /// Opens (creating when missing) the file at `path` and starts its writer thread.
    pub(super) fn open(
        path: &Path,
        options: StoreOptions,
        listener: Arc<dyn CommitListener>,
        stats: Arc<StoreStats>,
    ) -> Result<Self, StoreError> {
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse(path.to_path_buf()));
            }
            Err(error) => return Err(StoreError::Redb(error.into())),
        };
        let key = options.signing.as_ref().map(|signing| signing.key.public());
        if let Some(upgraded) = tables::initialize(&db, path, key)? {
            tracing::info!(store = %path.display(), "{upgraded}");
        }
        let db = Arc::new(db);
        let jobs = writer::spawn(db.clone(), options, listener, stats)?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            jobs,
            path: path.to_path_buf(),
        })
    }

    /// Upgrades the file at `path` (which must exist and be held by no daemon) to this
    /// release's layout, if it is of an earlier one.
    pub(super) fn upgrade(path: &Path) -> Result<Option<super::Upgraded>, StoreError> {
        let db = match Database::open(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse(path.to_path_buf()));
            }
            Err(error) => return Err(StoreError::Redb(error.into())),
        };
        tables::initialize(&db, path, None)
    }

    fn database(&self) -> Result<Arc<Database>, StoreError> {
        let db = match self.db.read() {
            Ok(db) => db.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        db.ok_or(StoreError::Closed)
    }
}

impl Backend for Embedded {
    fn submit(&self, job: Job) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.jobs.submit(job))
    }

    fn read(&self, read: Read<'_>) {
        match self.database().and_then(|db| Reader::begin(&*db)) {
            Ok(reader) => read(Ok(&reader)),
            Err(error) => read(Err(error)),
        }
    }

    fn close(&self, within: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + within;
            self.jobs.close(deadline).await;
            let db = match self.db.write() {
                Ok(mut db) => db.take(),
                Err(poisoned) => poisoned.into_inner().take(),
            };
            let Some(db) = db else { return };
            // The writer thread and reads in progress let go within moments.
            while Arc::strong_count(&db) > 1 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if Arc::strong_count(&db) > 1 {
                tracing::warn!("a store read did not finish; the file closes when it does");
            }
            drop(db);
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn queued_jobs(&self) -> usize {
        self.jobs.queued()
    }
}
