//! The outbox dispatcher: delivers queued notifications in the background.
//!
//! One dispatcher task finds the entries that are due and hands each notifier's entries to a
//! worker of that notifier. A worker delivers them in order and records the outcomes in small
//! groups: delivered entries leave the outbox; failed ones are tried again with capped
//! exponential backoff and jitter until `give_up_after`, then dropped with an audit event. A
//! slow or dead notifier therefore only delays itself, never the others. The dispatcher wakes
//! when a commit queues something, when a worker finishes, when the next retry is due, and at
//! startup, so what was queued before a restart is delivered after it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Event, Notifier, Notifiers};
use crate::audit::{Actor, Draft, entry};
use crate::clock::SharedClock;
use crate::expiry::Backoff;
use crate::model::{Happened, RequestId, Timestamp};
use crate::store::{Changes, Outgoing, Store, StoreError};

/// Most entries handed out per round.
const BATCH: usize = 256;
/// Most outbox rows looked at per round (a large backlog of a busy notifier is skipped over).
const SCAN: usize = 10_000;
/// A worker records its outcomes after this many deliveries...
const FLUSH_EVERY: usize = 64;
/// ...or after this long, whichever comes first.
const FLUSH_AFTER: Duration = Duration::from_secs(1);

/// Retry settings of deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Delays between attempts.
    pub backoff: Backoff,
    /// After this long in the outbox, a notification is dropped (and the drop audited).
    pub give_up_after: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(600),
            },
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// Wakes the dispatcher when something was queued.
#[derive(Clone, Debug, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// Something was queued (or a worker finished).
    pub fn queued(&self) {
        self.0.notify_one();
    }
}

/// What the dispatcher and its workers share.
#[derive(Clone)]
struct Dispatcher {
    store: Store,
    notifiers: Notifiers,
    clock: SharedClock,
    delivery: Delivery,
    wake: Wake,
    /// Notifiers with a worker running; a std mutex, never held across an await.
    busy: Arc<Mutex<BTreeSet<String>>>,
    shutdown: CancellationToken,
}

/// Starts the dispatcher on `tracker`; it stops when `shutdown` is cancelled or the store
/// closes.
pub fn spawn(
    store: Store,
    notifiers: Notifiers,
    clock: SharedClock,
    delivery: Delivery,
    wake: Wake,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let dispatcher = Dispatcher {
        store,
        notifiers,
        clock,
        delivery,
        wake,
        busy: Arc::default(),
        shutdown,
    };
    let workers = tracker.clone();
    tracker.spawn(async move { dispatcher.run(&workers).await });
}

impl Dispatcher {
    fn busy(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn run(self, workers: &TaskTracker) {
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let now = self.clock.now();
            let skip = self.busy().clone();
            let found = match self
                .store
                .read(move |r| r.outbox_due(now, BATCH, &skip, SCAN))
                .await
            {
                Ok(found) => found,
                Err(StoreError::Closed) => return,
                Err(error) => {
                    tracing::warn!(%error, "the notification outbox could not be read; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let mut by_notifier: BTreeMap<String, Vec<(u64, Outgoing)>> = BTreeMap::new();
            for (seq, outgoing) in found.due {
                by_notifier
                    .entry(outgoing.notifier.clone())
                    .or_default()
                    .push((seq, outgoing));
            }
            for (name, entries) in by_notifier {
                self.busy().insert(name.clone());
                let worker = self.clone();
                workers.spawn(async move {
                    worker.deliver_all(&name, entries).await;
                    worker.busy().remove(&name);
                    worker.wake.queued();
                });
            }
            // Wait for new work, a worker finishing, the next retry, or shutdown. A scan that
            // stopped early does not know the next time: look again within a second.
            let sleep = match (found.next, found.complete) {
                (Some(at), _) => Some(self.clock.sleep_until(at)),
                (None, false) => {
                    Some(Box::pin(tokio::time::sleep(Duration::from_secs(1))) as crate::clock::Sleep)
                }
                (None, true) => None,
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = self.wake.0.notified() => {}
                () = async {
                    match sleep {
                        Some(sleep) => sleep.await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Delivers one notifier's entries in order. Outcomes are recorded in small groups (every
    /// [`FLUSH_EVERY`] outcomes or [`FLUSH_AFTER`], and at the end), so a fast notifier does
    /// not cost one commit per event; a crash before a flush only means those are delivered
    /// again (at least once).
    async fn deliver_all(&self, name: &str, entries: Vec<(u64, Outgoing)>) {
        let notifier = self.notifiers.get(name).cloned();
        let mut pending = Changes::default();
        let mut held = 0;
        let mut since = tokio::time::Instant::now();
        for (seq, outgoing) in entries {
            if self.shutdown.is_cancelled() {
                break;
            }
            let result = attempt(notifier.as_ref(), &outgoing).await;
            pending.absorb(self.outcome(seq, outgoing, result));
            held += 1;
            if held >= FLUSH_EVERY || since.elapsed() >= FLUSH_AFTER {
                if !self.record(std::mem::take(&mut pending)).await {
                    return;
                }
                held = 0;
                since = tokio::time::Instant::now();
            }
        }
        if held > 0 {
            self.record(pending).await;
        }
    }

    /// Stores delivery outcomes; false once the store is closed.
    async fn record(&self, changes: Changes) -> bool {
        match self
            .store
            .write(move |_| Ok::<_, StoreError>((changes, ())))
            .await
        {
            Ok(()) => true,
            Err(StoreError::Closed) => false,
            Err(error) => {
                tracing::warn!(%error, "could not record deliveries; they are retried");
                true
            }
        }
    }

    /// The change recording one attempt: delivered, retried later, or dropped.
    fn outcome(&self, seq: u64, outgoing: Outgoing, result: Result<(), String>) -> Changes {
        let mut changes = Changes::default();
        let now = self.clock.now();
        match result {
            Ok(()) => changes.delivered.push(seq),
            Err(error) => {
                let attempts = outgoing.attempts + 1;
                let waited = now.saturating_duration_since(outgoing.queued_at);
                if waited >= self.delivery.give_up_after {
                    tracing::warn!(notifier = %outgoing.notifier, %error, attempts, "notification dropped");
                    changes.delivered.push(seq);
                    changes
                        .events
                        .push(dropped(&outgoing, &error, attempts, now));
                } else {
                    tracing::info!(notifier = %outgoing.notifier, %error, attempts, "notification not delivered; retrying");
                    let next_attempt_at = now.saturating_add(self.delivery.backoff.delay(attempts));
                    changes.retried.push((
                        seq,
                        Outgoing {
                            attempts,
                            next_attempt_at,
                            last_error: Some(error),
                            ..outgoing
                        },
                    ));
                }
            }
        }
        changes
    }
}

async fn attempt(notifier: Option<&Arc<dyn Notifier>>, outgoing: &Outgoing) -> Result<(), String> {
    let Some(notifier) = notifier else {
        return Err(format!(
            "notifier '{}' is not configured",
            outgoing.notifier
        ));
    };
    let event: Event = serde_json::from_value(outgoing.event.clone())
        .map_err(|error| format!("unreadable event: {error}"))?;
    notifier.deliver(&event).await.map_err(|e| e.0)
}

fn dropped(outgoing: &Outgoing, error: &str, attempts: u32, now: Timestamp) -> Draft {
    let event: Option<Event> = serde_json::from_value(outgoing.event.clone()).ok();
    let request = event
        .as_ref()
        .and_then(|event| event.request.as_ref())
        .and_then(|request| request.id.parse::<RequestId>().ok());
    entry::of(
        now,
        Actor::System,
        Happened::NotificationDropped {
            notifier: outgoing.notifier.clone(),
            attempts,
            error: error.to_owned(),
            request,
            notification: event.map(|event| (event.kind, event.id)),
        },
    )
}
