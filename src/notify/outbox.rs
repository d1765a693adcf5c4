//! The outbox dispatcher: one task that delivers queued notifications. It takes the entries
//! that are due, delivers them concurrently (each notifier bounded by its own timeout), and
//! records the outcomes in one write: delivered entries leave the outbox; failed ones are tried
//! again with capped exponential backoff and jitter until `give_up_after`, then dropped with an
//! audit event. It wakes when a commit queues something, when the next retry is due, and at
//! startup, so what was queued before a restart is delivered after it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Event, Notifiers};
use crate::audit::{Actor, Draft};
use crate::clock::SharedClock;
use crate::expiry::Backoff;
use crate::model::RequestId;
use crate::store::{Changes, Outgoing, Store, StoreError};

/// Most entries delivered in one round.
const BATCH: usize = 64;

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
    /// Something was queued.
    pub fn queued(&self) {
        self.0.notify_one();
    }
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
    tracker.spawn(async move {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match round(&store, &notifiers, &clock, delivery).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(StoreError::Closed) => return,
                Err(error) => {
                    tracing::warn!(%error, "the notification outbox could not be read; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
            let next = store.read(|r| r.outbox_next()).await.ok().flatten();
            let sleep = next.map(|at| clock.sleep_until(at));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.0.notified() => {}
                () = async {
                    match sleep {
                        Some(sleep) => sleep.await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    });
}

/// Delivers what is due now; `Ok(true)` when it delivered or dropped something.
async fn round(
    store: &Store,
    notifiers: &Notifiers,
    clock: &SharedClock,
    delivery: Delivery,
) -> Result<bool, StoreError> {
    let now = clock.now();
    let due = store.read(move |r| r.outbox_due(now, BATCH)).await?;
    if due.is_empty() {
        return Ok(false);
    }
    let mut attempts = tokio::task::JoinSet::new();
    for (seq, outgoing) in due {
        let notifier = notifiers.get(&outgoing.notifier).cloned();
        attempts.spawn(async move {
            let result = match (
                notifier,
                serde_json::from_value::<Event>(outgoing.event.clone()),
            ) {
                (None, _) => Err(format!(
                    "notifier '{}' is not configured",
                    outgoing.notifier
                )),
                (_, Err(error)) => Err(format!("unreadable event: {error}")),
                (Some(notifier), Ok(event)) => notifier.deliver(&event).await.map_err(|e| e.0),
            };
            (seq, outgoing, result)
        });
    }
    let mut changes = Changes::default();
    let now = clock.now();
    while let Some(joined) = attempts.join_next().await {
        let Ok((seq, outgoing, result)) = joined else {
            continue;
        };
        match result {
            Ok(()) => changes.delivered.push(seq),
            Err(error) => {
                let waited = now.saturating_duration_since(outgoing.queued_at);
                let attempts = outgoing.attempts + 1;
                if waited >= delivery.give_up_after {
                    tracing::warn!(notifier = %outgoing.notifier, %error, attempts, "notification dropped");
                    changes.delivered.push(seq);
                    changes
                        .events
                        .push(dropped(&outgoing, &error, attempts, now));
                } else {
                    tracing::info!(notifier = %outgoing.notifier, %error, attempts, "notification not delivered; retrying");
                    let next_attempt_at = now.saturating_add(delivery.backoff.delay(attempts));
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
    }
    store
        .write(move |_| Ok::<_, StoreError>((changes, ())))
        .await?;
    Ok(true)
}

fn dropped(outgoing: &Outgoing, error: &str, attempts: u32, now: crate::model::Timestamp) -> Draft {
    let event: Option<Event> = serde_json::from_value(outgoing.event.clone()).ok();
    let mut draft = Draft::new(now, Actor::System, "notification.dropped")
        .detail("notifier", &outgoing.notifier)
        .detail("attempts", attempts)
        .detail("error", error);
    if let Some(event) = event {
        draft.request = event.request.id.parse::<RequestId>().ok();
        draft = draft
            .detail("event", &event.kind)
            .detail("event_id", &event.id);
    }
    draft
}
