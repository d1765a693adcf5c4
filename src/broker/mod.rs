//! The workflow: one state machine per request, from submission through approval, grant and
//! expiry to its end.
//!
//! - Decisions (submit, approve, deny, cancel) are pure transitions checked and committed in
//!   one store write transaction together with their audit events.
//! - Side effects on targets (grant, revoke) run under the request's lock ([`KeyedLocks`]); the
//!   outcome is committed afterwards, re-checking the state inside the transaction. A request
//!   is marked active only after its grant succeeded, and ended only after the target
//!   confirmed the revoke.
//! - Every commit tells the timer wheel the request's next deadline (see `CommitFanout`); when it
//!   comes, [`Broker::drive`] does whatever is due: time out, retry the grant, expire, retry the
//!   revoke. Startup recovery drives every overdue request before serving.

mod admin;
mod break_glass;
mod caller;
mod commit;
mod credentials;
mod decide;
mod directory;
mod effects;
mod error;
mod expire;
mod extend;
mod gate;
mod governance;
mod lease;
mod limits;
mod query;
mod record;
mod standing;
mod submit;
mod sweep;
mod trail;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin::{Correction, Reconciliation};
pub use caller::Caller;
pub use directory::DirectoryUpdate;
pub use error::{BrokerError, StorageFailure};
pub use gate::Gate;
pub use governance::Reloaded;
pub use limits::{Limited, RateLimits, Refusals};
pub use query::Watch;
pub use sweep::Enforcement;
pub use trail::{ByteStream, EventStream, Trail};

use crate::clock::SharedClock;
use crate::expiry::{Backoff, Expiry};
use crate::keyed::KeyedLocks;
use crate::model::RequestId;
use crate::notify::Routing;
use crate::notify::outbox::{Delivery, Wake};
use crate::policy::Live;
use crate::provision::Provisioners;
use crate::store::{Commit, CommitListener, Store};

/// Tunables of the workflow.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Grant attempts before a request ends as `failed`.
    pub grant_attempts: u32,
    /// Delays between grant and revoke retries.
    pub backoff: Backoff,
    /// Most grants and revokes in flight at once.
    pub max_concurrent_effects: usize,
    /// Where notifications go, and when reminders fall due.
    pub routing: Routing,
    /// How notifications are retried.
    pub delivery: Delivery,
    /// How often the audit chain's head is signed when events were added.
    pub checkpoint_interval: Duration,
    /// How often targets are reconciled with the leases (`None`: only on demand).
    pub reconcile_every: Option<Duration>,
    /// The files a reload reads again (`None`: reloads are refused).
    pub rule_files: Option<RuleFiles>,
    /// Per-principal rates of submissions and extensions.
    pub rate_limits: RateLimits,
}

/// The policy and directory files the rules in force came from.
#[derive(Clone, Debug)]
pub struct RuleFiles {
    /// The policy file.
    pub policy: std::path::PathBuf,
    /// The directory file; `None` when the directory of record is the SCIM one (a reload
    /// then reads the policy alone, and the directory in force stays).
    pub directory: Option<std::path::PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grant_attempts: 5,
            backoff: Backoff::default(),
            max_concurrent_effects: 256,
            routing: Routing::default(),
            delivery: Delivery::default(),
            checkpoint_interval: Duration::from_secs(60),
            reconcile_every: Some(Duration::from_secs(300)),
            rule_files: None,
            rate_limits: RateLimits::default(),
        }
    }
}

/// What startup recovery found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Requests whose deadline passed while the daemon was down, driven before serving.
    pub overdue: usize,
    /// Requests scheduled in the timer wheel.
    pub scheduled: usize,
}

/// A cheap, cloneable handle to the workflow.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

/// What the workflow's parts share. Each field says what it is shared with and how.
struct Inner {
    /// The store; shared with the trail, the outbox and the metrics (one writer for all).
    store: Store,
    /// The audit trail: the daemon's own entries go through it.
    trail: Trail,
    /// Who may call; shared with every gRPC service.
    gate: Gate,
    /// The policy and directory in force; swapped whole by reloads, read by everyone.
    rules: Live,
    /// The daemon's one clock.
    clock: SharedClock,
    /// The timer wheel; told every deadline by the commit listener ([`CommitFanout`]).
    expiry: Expiry,
    /// Ids of committed requests, for watchers; the commit listener sends on it.
    changes: broadcast::Sender<RequestId>,
    settings: Settings,
    /// Stores records with their notice times and notifications.
    record: record::Record,
    /// What grants and revokes share: targets, locks, slots, tasks, credentials.
    effects: effects::Effects,
    /// Cancelled when shutdown begins: watchers end their streams (the trail's queries too).
    closing: CancellationToken,
    /// The offboarded principals; shared with the gate, which checks them on every call.
    standing: standing::Standing,
    /// Held by reloads, offboardings and the sweeps after them, one at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Per-principal rate limits.
    limiter: limits::Limiter,
}

/// What the workflow is built from: the parts the composition root (`crate::server`) opened
/// and started.
pub struct Parts {
    /// The open store, whose commit listener is a [`CommitFanout`] over `expiry` and `changes`.
    pub store: Store,
    /// The audit trail over the same store.
    pub trail: Trail,
    /// The policy and directory in force.
    pub rules: Live,
    /// The daemon's one clock.
    pub clock: SharedClock,
    /// The targets.
    pub provisioners: Provisioners,
    /// The running timer wheel.
    pub expiry: Expiry,
    /// Where the commit listener announces committed requests.
    pub changes: broadcast::Sender<RequestId>,
    /// Tracks grants, revokes and deliveries in flight.
    pub effects: TaskTracker,
    /// Cancelled when shutdown begins.
    pub closing: CancellationToken,
    /// Tunables.
    pub settings: Settings,
}

/// Tells the timer wheel and watchers about every commit, in commit order, wakes the outbox
/// when notifications were queued, and passes the commit on to the observer (the metrics).
pub struct CommitFanout {
    /// Told every request's next deadline.
    pub expiry: Expiry,
    /// Told every committed request's id.
    pub changes: broadcast::Sender<RequestId>,
    /// Woken when notifications were queued.
    pub outbox: Wake,
    /// Told about every commit after the rest.
    pub observer: Arc<dyn CommitListener>,
}

impl CommitListener for CommitFanout {
    fn committed(&self, commit: &Commit<'_>) {
        if commit.queued > 0 {
            self.outbox.queued();
        }
        for request in commit.requests {
            match request.next_deadline() {
                Some(deadline) => self.expiry.schedule(request.id, deadline),
                None => self.expiry.cancel(request.id),
            }
            let _ = self.changes.send(request.id);
        }
        self.observer.committed(commit);
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// The workflow over `parts`. Call [`Broker::run_timers`] with the wheel's due ids, and
    /// [`Broker::recover`] before serving.
    pub fn new(parts: Parts) -> Self {
        let Parts {
            store,
            trail,
            rules,
            clock,
            provisioners,
            expiry,
            changes,
            effects,
            closing,
            settings,
        } = parts;
        let record = record::Record {
            routing: Arc::new(settings.routing.clone()),
            rules: rules.clone(),
        };
        let standing = standing::Standing::new(rules.clone());
        let gate = Gate::new(
            rules.clone(),
            standing.clone(),
            clock.clone(),
            trail.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                store,
                trail,
                gate,
                rules,
                clock,
                expiry,
                changes,
                record,
                effects: effects::Effects {
                    provisioners,
                    requests: KeyedLocks::default(),
                    grants: KeyedLocks::default(),
                    slots: Arc::new(Semaphore::new(settings.max_concurrent_effects.max(1))),
                    tasks: effects,
                    credentials: Default::default(),
                },
                closing,
                settings,
                standing,
                reloading: tokio::sync::Mutex::new(()),
                limiter: Default::default(),
            }),
        }
    }

    /// One of the slots that bound the grants and revokes in flight; waits for one.
    pub(super) async fn effect_slot(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, BrokerError> {
        self.inner
            .effects
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BrokerError::ShuttingDown)
    }

    /// The gate every call passes (shares the directory and offboardings with the workflow).
    pub fn gate(&self) -> Gate {
        self.inner.gate.clone()
    }

    /// The audit trail.
    pub fn trail(&self) -> &Trail {
        &self.inner.trail
    }

    /// Writes one audit entry that concerns no request.
    async fn record(&self, draft: crate::audit::Draft) -> Result<(), BrokerError> {
        self.inner.trail.record(draft).await
    }

    /// Drives every due id the timer hands out until the wheel stops: whatever is due together
    /// (up to [`expire::BATCH`]) as one batch ([`Broker::drive_due`]) on a task of its own, so
    /// that a batch waiting on a slow target holds back no other; the effect slots bound the
    /// work on targets in flight.
    pub fn run_timers(&self, mut due: mpsc::UnboundedReceiver<RequestId>) {
        let broker = self.clone();
        tokio::spawn(async move {
            while let Some(first) = due.recv().await {
                let mut ids = vec![first];
                while ids.len() < expire::BATCH {
                    match due.try_recv() {
                        Ok(id) => ids.push(id),
                        Err(_) => break,
                    }
                }
                let driver = broker.clone();
                broker.inner.effects.tasks.spawn(async move {
                    driver.drive_due(ids).await;
                });
            }
        });
    }

    /// After a failed drive (the store failed), try again later rather than never.
    fn rearm_later(&self, id: RequestId) {
        let retry = self
            .inner
            .clock
            .now()
            .saturating_add(self.inner.settings.backoff.delay(1));
        self.inner.expiry.schedule(id, retry);
    }

    /// Rebuilds the timer wheel from the store. Requests whose deadline passed while the daemon
    /// was down (expired leases above all) are driven now, before this returns; the rest are
    /// scheduled.
    pub async fn recover(&self) -> Result<Recovery, BrokerError> {
        self.load_offboarded().await?;
        let mut deadlines = self.inner.store.read(|reader| reader.deadlines()).await?;
        let now = self.inner.clock.now();
        let split = deadlines.partition_point(|(deadline, _)| *deadline <= now);
        let later = deadlines.split_off(split);
        let scheduled = later.len();
        self.inner.expiry.schedule_many(later);
        // Answers once the wheel holds them all: "recovered" means scheduled, not queued.
        self.inner.expiry.inspect(RequestId::FIRST).await;
        let overdue = deadlines;
        // Batched as the timer does (those that fail are re-armed); done when all are.
        let mut one_by_one = Vec::new();
        for batch in overdue.chunks(expire::BATCH) {
            let ids = batch.iter().map(|&(_, id)| id).collect();
            one_by_one.extend(self.drive_due(ids).await);
        }
        for handle in one_by_one {
            let _ = handle.await;
        }
        Ok(Recovery {
            overdue: overdue.len(),
            scheduled,
        })
    }

    /// Shutdown begins: watch streams end so that draining connections does not wait for them.
    pub fn begin_shutdown(&self) {
        self.inner.closing.cancel();
    }

    /// Waits for grants and revokes in flight, then closes the store, all within `grace`
    /// (plus up to half a second for a commit in progress, which a clean close beats a crash
    /// recovery for).
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.inner.effects.tasks.close();
        if tokio::time::timeout_at(deadline, self.inner.effects.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "grants or revokes still running after the grace period; they resume at the next start"
            );
        }
        self.inner.trail.record_stop().await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.inner
            .store
            .close(left.max(Duration::from_millis(500)))
            .await;
    }

    /// The ids of requests as their changes commit, in commit order (for tools and
    /// benchmarks; a receiver that falls behind skips ahead).
    pub fn committed_ids(&self) -> broadcast::Receiver<RequestId> {
        self.inner.changes.subscribe()
    }

    /// The policy and directory in force.
    pub fn rules(&self) -> &Live {
        &self.inner.rules
    }
}
