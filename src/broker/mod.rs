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
mod audit;
mod break_glass;
mod credentials;
mod decide;
mod error;
mod extend;
mod governance;
mod lease;
mod limits;
mod query;
mod record;
mod standing;
mod submit;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin::{Correction, Reconciliation};
pub use audit::{ByteStream, EventStream};
pub use error::{BrokerError, StorageFailure};
pub use governance::{Enforcement, Reloaded};
pub use limits::{Limited, RateLimits, Refusals};
pub use query::Watch;

use crate::clock::SharedClock;
use crate::expiry::{Backoff, Expiry};
use crate::keyed::KeyedLocks;
use crate::model::{GroupName, Principal, RequestId};
use crate::notify::outbox::{self, Delivery, Wake};
use crate::notify::{Notifiers, Routing};
use crate::policy::Live;
use crate::provision::Provisioners;
use crate::store::{Commit, CommitListener, Store, StoreOptions};

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
    /// The directory file.
    pub directory: std::path::PathBuf,
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

/// An authenticated caller, with the roles the directory gives them now.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// Their groups.
    pub groups: Vec<GroupName>,
    /// Their manager.
    pub manager: Option<Principal>,
    /// Member of an auditor group.
    pub auditor: bool,
    /// Member of an admin group.
    pub admin: bool,
}

impl Caller {
    /// Whether the caller may see every request.
    pub fn sees_all(&self) -> bool {
        self.auditor || self.admin
    }

    /// Whether the caller may see `request`: its requester, its approvers (of the route or of
    /// an extension), the reviewers of a break-glass request (its review group), auditors and
    /// admins. Everyone else is answered as if it did not exist.
    pub fn may_see(&self, request: &crate::model::AccessRequest) -> bool {
        request.requester == self.principal
            || request.is_approver(&self.principal)
            || request
                .break_glass
                .as_ref()
                .is_some_and(|b| self.groups.contains(&b.review_group))
            || self.sees_all()
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

struct Inner {
    store: Store,
    rules: Live,
    clock: SharedClock,
    provisioners: Provisioners,
    expiry: Expiry,
    /// Held around each grant or revoke and the commit of its outcome.
    locks: KeyedLocks<RequestId>,
    /// Ids of committed requests, for watchers.
    changes: broadcast::Sender<RequestId>,
    settings: Settings,
    /// Stores records with their notice times and notifications.
    record: record::Record,
    /// Grant and revoke tasks, so shutdown can wait for them.
    effects: TaskTracker,
    /// Cancelled when shutdown begins: watchers end their streams.
    closing: CancellationToken,
    effect_slots: Arc<Semaphore>,
    /// Signs checkpoints and exports.
    audit_key: Option<Arc<crate::audit::key::AuditKey>>,
    /// When each refused principal was last recorded, so a client retrying in a loop does
    /// not flood the audit log.
    refusals: std::sync::Mutex<std::collections::HashMap<Principal, crate::model::Timestamp>>,
    /// Credentials waiting for their holders.
    credentials: credentials::Vault,
    /// Held around every change of a grant on a target, by provisioner and grant key, so that
    /// leases sharing a grant decide one at a time whether it stays.
    grants: KeyedLocks<(String, String)>,
    /// The directory in force and the offboarded principals.
    standing: standing::Standing,
    /// Held by reloads, offboardings and the sweeps after them, one at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Per-principal rate limits.
    limiter: limits::Limiter,
}

/// Tells the timer wheel and watchers about every commit, in commit order, wakes the outbox
/// when notifications were queued, and passes the commit on to the observer (the metrics).
struct CommitFanout {
    expiry: Expiry,
    changes: broadcast::Sender<RequestId>,
    outbox: Wake,
    observer: Arc<dyn CommitListener>,
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
    /// Opens the store at `path`, starts the timer task and the notification outbox;
    /// `shutdown` stops both. `observer` is told about every commit too. Call
    /// [`Broker::recover`] before serving.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        path: &std::path::Path,
        store_options: StoreOptions,
        rules: Live,
        clock: SharedClock,
        provisioners: Provisioners,
        notifiers: Notifiers,
        settings: Settings,
        observer: Arc<dyn CommitListener>,
        shutdown: CancellationToken,
    ) -> Result<Self, BrokerError> {
        let (expiry, due) = Expiry::spawn(clock.clone(), shutdown.clone());
        let (changes, _) = broadcast::channel(4096);
        let wake = Wake::default();
        let fanout = Arc::new(CommitFanout {
            expiry: expiry.clone(),
            changes: changes.clone(),
            outbox: wake.clone(),
            observer,
        });
        let audit_key = store_options
            .signing
            .as_ref()
            .map(|signing| signing.key.clone());
        let store = Store::open(path, store_options, fanout)?;
        let effects = TaskTracker::new();
        outbox::spawn(
            store.clone(),
            notifiers,
            clock.clone(),
            settings.delivery,
            wake,
            &effects,
            shutdown.clone(),
        );
        let settings_slots = settings.max_concurrent_effects.max(1);
        let record = record::Record {
            routing: Arc::new(settings.routing.clone()),
            rules: rules.clone(),
        };
        let standing = standing::Standing::new(rules.clone());
        let broker = Self {
            inner: Arc::new(Inner {
                store,
                rules,
                clock,
                provisioners,
                expiry,
                locks: KeyedLocks::default(),
                changes,
                record,
                settings,
                effects,
                closing: CancellationToken::new(),
                effect_slots: Arc::new(Semaphore::new(settings_slots)),
                audit_key,
                refusals: Default::default(),
                credentials: Default::default(),
                grants: KeyedLocks::default(),
                standing,
                reloading: tokio::sync::Mutex::new(()),
                limiter: Default::default(),
            }),
        };
        broker.dispatch(due);
        if let Some(every) = broker.inner.settings.reconcile_every {
            broker.spawn_reconciliation(every, shutdown.clone());
        }
        broker.spawn_checkpoints(shutdown);
        Ok(broker)
    }

    /// Drives every due id the timer hands out, a bounded number at a time.
    fn dispatch(&self, mut due: mpsc::UnboundedReceiver<RequestId>) {
        let broker = self.clone();
        tokio::spawn(async move {
            while let Some(id) = due.recv().await {
                let Ok(slot) = broker.inner.effect_slots.clone().acquire_owned().await else {
                    return;
                };
                let driver = broker.clone();
                broker.inner.effects.spawn(async move {
                    if let Err(error) = driver.drive(id).await {
                        tracing::warn!(%id, %error, "timer action failed; it will be retried");
                        driver.rearm_later(id);
                    }
                    drop(slot);
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
        let mut running = tokio::task::JoinSet::new();
        for &(_, id) in &overdue {
            let slot = self
                .inner
                .effect_slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| BrokerError::ShuttingDown)?;
            let broker = self.clone();
            running.spawn(async move {
                let outcome = broker.drive(id).await;
                drop(slot);
                (id, outcome)
            });
        }
        while let Some(joined) = running.join_next().await {
            if let Ok((id, Err(error))) = joined {
                tracing::warn!(%id, %error, "recovery could not act on an overdue request; retrying later");
                self.rearm_later(id);
            }
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
        self.inner.effects.close();
        if tokio::time::timeout_at(deadline, self.inner.effects.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "grants or revokes still running after the grace period; they resume at the next start"
            );
        }
        self.record_stop().await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.inner
            .store
            .close(left.max(Duration::from_millis(500)))
            .await;
    }

    /// Checks the caller against the directory in force and returns their roles.
    pub fn authenticate(&self, principal: Principal) -> Result<Caller, BrokerError> {
        let snapshot = self.inner.rules.current();
        if let Err(error) = self.inner.standing.check(&principal) {
            let why = match &error {
                BrokerError::UnknownPrincipal(_) => "not in the directory",
                BrokerError::Offboarded { .. } => "offboarded",
                _ => "suspended",
            };
            self.record_refusal(&principal, why);
            return Err(error);
        }
        let Some(person) = snapshot.directory.person(&principal) else {
            return Err(BrokerError::UnknownPrincipal(principal));
        };
        Ok(Caller {
            groups: person.groups.iter().cloned().collect(),
            manager: person.manager.clone(),
            auditor: snapshot.is_auditor(&principal),
            admin: snapshot.is_admin(&principal),
            principal,
        })
    }

    /// Records that a caller with a valid certificate was refused, at most once a minute per
    /// principal.
    pub(crate) fn record_refusal(&self, principal: &Principal, why: &'static str) {
        let now = self.inner.clock.now();
        {
            let mut seen = match self.inner.refusals.lock() {
                Ok(seen) => seen,
                Err(poisoned) => poisoned.into_inner(),
            };
            if seen
                .get(principal)
                .is_some_and(|last| now.saturating_duration_since(*last) < Duration::from_secs(60))
            {
                return;
            }
            if seen.len() >= 10_000 {
                seen.clear();
            }
            seen.insert(principal.clone(), now);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let draft = crate::audit::entry::of(
            now,
            crate::audit::Actor::Principal(principal.clone()),
            crate::model::Happened::AuthRefused {
                principal: principal.clone(),
                reason: why,
            },
        );
        let broker = self.clone();
        runtime.spawn(async move {
            if let Err(error) = broker.record(draft).await {
                tracing::warn!(%error, "could not record a refused caller");
            }
        });
    }

    /// The store (for inspection by tools and tests).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The ids of requests as their changes commit, in commit order (for tools and
    /// benchmarks; a receiver that falls behind skips ahead).
    pub fn committed_ids(&self) -> broadcast::Receiver<RequestId> {
        self.inner.changes.subscribe()
    }

    /// The timer wheel's handle (for inspection by tools and tests).
    pub fn expiry(&self) -> &Expiry {
        &self.inner.expiry
    }

    /// The policy and directory in force.
    pub fn rules(&self) -> &Live {
        &self.inner.rules
    }
}
