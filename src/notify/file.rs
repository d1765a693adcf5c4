//! The `file` notifier: appends each event as one JSON line to a file. Dev mode writes
//! `notifications.jsonl` in its state directory, so that who was told what can be seen.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Event, Notifier, NotifyError};
use crate::BoxFuture;

/// Appends events to a JSON-lines file.
#[derive(Debug)]
pub struct FileNotifier {
    path: PathBuf,
    /// Serializes appends so that lines never interleave; held only around a blocking write.
    lock: Arc<Mutex<()>>,
}

impl FileNotifier {
    /// Appends to `path`, creating it when missing.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Arc::new(Mutex::new(())),
        }
    }
}

fn append(lock: &Mutex<()>, path: &Path, line: &[u8]) -> std::io::Result<()> {
    let _held = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line)?;
    file.sync_data()
}

impl Notifier for FileNotifier {
    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let mut line = serde_json::to_vec(event).unwrap_or_default();
            line.push(b'\n');
            let (lock, path) = (self.lock.clone(), self.path.clone());
            tokio::task::spawn_blocking(move || append(&lock, &path, &line))
                .await
                .map_err(|_| NotifyError("the append was interrupted".to_owned()))?
                .map_err(|e| NotifyError(format!("cannot append to {}: {e}", self.path.display())))
        })
    }
}
