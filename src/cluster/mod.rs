//! Several daemons on one PostgreSQL store: one leader at a time, the others hot standbys.
//!
//! Leadership is the one row of `elevate_leader`: an epoch that only grows, the leader's node
//! and address, and an expiry taken from the database's clock. A standby takes the row once it
//! expired, bumping the epoch ([`Leadership::campaign`]); the leader renews it every quarter of
//! the lease ([`Leadership::hold`]). [`Leadership`] is the store's [`Fence`]: every write
//! transaction takes the row and checks the epoch, so nothing of an older epoch commits after a
//! takeover. By its own monotonic clock, a leader counts its lease from when it *sent* its last
//! successful renewal and stops acting a fifth of the lease before then — before any standby
//! can see the row expire — and [`Fenced`] provisioners refuse to call targets from that
//! moment on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::BoxFuture;
use crate::model::ResourceName;
use crate::provision::{Granted, Holding, LeaseTarget, ProvisionError, Provisioner};
use crate::store::postgres::Target;
use crate::store::{Fence, StoreError};

/// Who leads, as the leadership row says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leader {
    /// The leader's epoch.
    pub epoch: u64,
    /// Its node name.
    pub node: String,
    /// Where clients reach it.
    pub advertise: String,
}

/// This node's part in the leadership: the fence of its store while it leads.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    advertise: String,
    lease: Duration,
    target: Target,
    /// The epoch this node leads in and until when it may act, by its own clock.
    term: Mutex<Option<(u64, Instant)>>,
    /// The leader as last read (for standbys' hints).
    leader: watch::Sender<Leader>,
    /// Signalled when this node stops leading.
    deposed: tokio::sync::Notify,
    /// Times this node took over.
    takeovers: AtomicU64,
    /// Write transactions refused because this node no longer led.
    fenced_writes: AtomicU64,
}

/// This node's leadership in numbers, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Whether it leads (its lease holds by its own clock).
    pub leading: bool,
    /// The epoch it leads in or follows.
    pub epoch: u64,
    /// Times it took over.
    pub takeovers: u64,
    /// Its writes refused because it no longer led.
    pub fenced_writes: u64,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("node", &self.inner.node)
            .field("term", &self.inner.term.lock().ok().and_then(|t| *t))
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// Node `node`, reached at `advertise`, with a lease of `lease`, on the store at `target`.
    /// Its leadership sessions are named `elevated-NODE-leadership` in PostgreSQL.
    pub fn new(node: String, advertise: String, lease: Duration, target: Target) -> Self {
        let target = target.named(&format!("elevated-{node}-leadership"));
        Self {
            inner: Arc::new(Inner {
                node,
                advertise,
                lease,
                target,
                term: Mutex::new(None),
                leader: watch::Sender::new(Leader::default()),
                deposed: tokio::sync::Notify::new(),
                takeovers: AtomicU64::new(0),
                fenced_writes: AtomicU64::new(0),
            }),
        }
    }

    /// The cluster's nodes as the store records them.
    pub async fn status(&self) -> Result<crate::proto::v1::ClusterStatusResponse, StoreError> {
        status(&self.inner.target).await
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The leader as last seen, updated as it changes.
    pub fn leader(&self) -> watch::Receiver<Leader> {
        self.inner.leader.subscribe()
    }

    /// How long before the lease's end (by this node's clock) it stops acting.
    fn margin(&self) -> Duration {
        self.inner.lease / 5
    }

    /// How often the leader renews, and standbys look.
    fn beat(&self) -> Duration {
        (self.inner.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(2))
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        let limit = self.beat();
        self.inner.target.connect(limit, limit).await
    }

    /// Waits until this node is the leader (a standby's life): records the node as seen,
    /// follows who leads, and takes the row once it expired. Returns the new epoch.
    pub async fn campaign(&self) -> u64 {
        let mut client: Option<Client> = None;
        loop {
            if client.as_ref().is_none_or(Client::is_closed) {
                client = self.connect().await.ok();
            }
            if let Some(db) = &client {
                match self.try_take(db).await {
                    Ok(Some(epoch)) => return epoch,
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot reach the store to follow the leader");
                        client = None;
                    }
                }
            }
            tokio::time::sleep(self.beat()).await;
        }
    }

    async fn try_take(&self, db: &Client) -> Result<Option<u64>, StoreError> {
        let failed = |e: tokio_postgres::Error| StoreError::Unreachable(crate::pg::describe(&e));
        db.execute(
            "INSERT INTO elevate_nodes (node, advertise, seen_at) VALUES ($1, $2, clock_timestamp()) \
             ON CONFLICT (node) DO UPDATE SET advertise = EXCLUDED.advertise, seen_at = EXCLUDED.seen_at",
            &[&self.inner.node, &self.inner.advertise],
        )
        .await
        .map_err(failed)?;
        // Read first, without a lock: a standby never queues behind the leader's writes (each
        // of which holds the row `FOR SHARE`), so it learns a new leader at once and costs the
        // leader nothing; only an expired row is worth taking.
        let row = db
            .query_one(
                "SELECT epoch, node, advertise, expires_at < clock_timestamp() \
                 FROM elevate_leader WHERE id = 1",
                &[],
            )
            .await
            .map_err(failed)?;
        let leader = Leader {
            epoch: row.get::<_, i64>(0) as u64,
            node: row.get(1),
            advertise: row.get(2),
        };
        self.inner.leader.send_if_modified(|seen| {
            let changed = *seen != leader;
            *seen = leader;
            changed
        });
        if !row.get::<_, bool>(3) {
            return Ok(None);
        }
        let sent = Instant::now();
        let lease_ms = self.inner.lease.as_millis() as f64;
        let taken = db
            .query_opt(
                // The epoch's history row in the same statement: who led from when.
                "WITH taken AS (UPDATE elevate_leader SET epoch = epoch + 1, node = $1, \
                 advertise = $2, expires_at = clock_timestamp() + $3 * interval '1 millisecond', \
                 renewed_at = clock_timestamp() \
                 WHERE id = 1 AND expires_at < clock_timestamp() RETURNING epoch, node, advertise) \
                 INSERT INTO elevate_epochs (epoch, node, advertise, began_at) \
                 SELECT epoch, node, advertise, clock_timestamp() FROM taken RETURNING epoch",
                &[&self.inner.node, &self.inner.advertise, &lease_ms],
            )
            .await
            .map_err(failed)?;
        Ok(taken.map(|row| {
            let epoch = row.get::<_, i64>(0) as u64;
            self.begin(epoch, sent);
            epoch
        }))
    }

    /// This node's leadership in numbers.
    pub fn counts(&self) -> Counts {
        Counts {
            leading: self.current().is_some(),
            epoch: self.inner.leader.borrow().epoch,
            takeovers: self.inner.takeovers.load(Ordering::Relaxed),
            fenced_writes: self.inner.fenced_writes.load(Ordering::Relaxed),
        }
    }

    /// Stops leading at once (a takeover that failed, or the daemon deposed).
    pub fn stand_down(&self) {
        let epoch = self
            .inner
            .term
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.0);
        if let Some(epoch) = epoch {
            self.step_down(epoch);
        }
    }

    fn begin(&self, epoch: u64, sent: Instant) {
        self.inner.takeovers.fetch_add(1, Ordering::Relaxed);
        let until = sent + self.inner.lease - self.margin();
        *self.inner.term.lock().unwrap_or_else(|p| p.into_inner()) = Some((epoch, until));
        self.inner.leader.send_replace(Leader {
            epoch,
            node: self.inner.node.clone(),
            advertise: self.inner.advertise.clone(),
        });
        tracing::info!(epoch, node = %self.inner.node, "this node is the leader");
    }

    /// Keeps the lease of `epoch` renewed while this node leads; returns once it does not
    /// (another epoch took over, the lease lapsed by this node's clock, or a write found it
    /// deposed). From then on [`Fence::current`] is `None`.
    pub async fn hold(&self, epoch: u64) {
        let mut client: Option<Client> = None;
        while let Some(until) = self.until(epoch) {
            let now = Instant::now();
            if now >= until {
                tracing::error!(
                    epoch,
                    "the leadership lease lapsed before it could be renewed"
                );
                break;
            }
            if client.as_ref().is_none_or(Client::is_closed) {
                client = tokio::time::timeout(until - now, self.connect())
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
            if let Some(db) = &client {
                let sent = Instant::now();
                let lease_ms = self.inner.lease.as_millis() as f64;
                let renewed = tokio::time::timeout(
                    until.saturating_duration_since(sent),
                    db.query_opt(
                        "UPDATE elevate_leader SET expires_at = clock_timestamp() + $3 * interval '1 millisecond', \
                         renewed_at = clock_timestamp() WHERE id = 1 AND epoch = $1 AND node = $2 \
                         RETURNING epoch",
                        &[&(epoch as i64), &self.inner.node, &lease_ms],
                    ),
                )
                .await;
                match renewed {
                    Ok(Ok(Some(_))) => {
                        let mut term = self.inner.term.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some((current, until)) = term.as_mut()
                            && *current == epoch
                        {
                            *until = sent + self.inner.lease - self.margin();
                        }
                    }
                    Ok(Ok(None)) => {
                        tracing::warn!(epoch, "another node took over the leadership");
                        break;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(error = %crate::pg::describe(&error), "cannot renew the leadership");
                        client = None;
                    }
                    Err(_) => {
                        client = None;
                    }
                }
            }
            let next = self
                .until(epoch)
                .map_or(Duration::ZERO, |until| {
                    until.saturating_duration_since(Instant::now())
                })
                .min(self.beat());
            tokio::select! {
                () = tokio::time::sleep(next) => {}
                () = self.inner.deposed.notified() => {}
            }
        }
        self.step_down(epoch);
    }

    /// Gives up the leadership of `epoch` at once (a clean stop), so that a standby takes over
    /// without waiting for the lease to run out.
    pub async fn release(&self, epoch: u64) {
        self.step_down(epoch);
        let released = async {
            let db = self.connect().await?;
            db.execute(
                "UPDATE elevate_leader SET expires_at = clock_timestamp()                  WHERE id = 1 AND epoch = $1 AND node = $2",
                &[&(epoch as i64), &self.inner.node],
            )
            .await
            .map_err(|e| StoreError::Unreachable(crate::pg::describe(&e)))
        };
        match released.await {
            Ok(_) => tracing::info!(epoch, "released the leadership"),
            Err(error) => {
                tracing::warn!(%error, "could not release the leadership; it expires by itself")
            }
        }
    }

    fn until(&self, epoch: u64) -> Option<Instant> {
        match *self.inner.term.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((current, until)) if current == epoch => Some(until),
            _ => None,
        }
    }

    fn step_down(&self, epoch: u64) {
        let mut term = self.inner.term.lock().unwrap_or_else(|p| p.into_inner());
        if term.is_some_and(|(current, _)| current == epoch) {
            *term = None;
            tracing::warn!(epoch, "this node stopped leading and stands by");
        }
        drop(term);
        self.inner.deposed.notify_waiters();
    }

    /// Waits until this node stops leading.
    pub async fn deposed_from(&self, epoch: u64) {
        loop {
            let notified = self.inner.deposed.notified();
            if self.until(epoch).is_none() {
                return;
            }
            notified.await;
        }
    }
}

impl Fence for Leadership {
    fn current(&self) -> Option<u64> {
        match *self.inner.term.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((epoch, until)) if Instant::now() < until => Some(epoch),
            _ => None,
        }
    }

    fn lease(&self) -> Duration {
        self.inner.lease
    }

    fn deposed(&self) {
        self.inner.fenced_writes.fetch_add(1, Ordering::Relaxed);
        self.stand_down();
    }

    fn node(&self) -> &str {
        &self.inner.node
    }
}

/// A provisioner that calls its target only while this node leads: a deposed or lapsed
/// leader's grants, revokes and repairs fail at once without reaching the target (the new
/// leader redoes what they were for).
#[derive(Debug)]
pub struct Fenced {
    inner: Arc<dyn Provisioner>,
    fence: Leadership,
}

impl Fenced {
    /// `inner`, called only while `fence` holds.
    pub fn new(inner: Arc<dyn Provisioner>, fence: Leadership) -> Self {
        Self { inner, fence }
    }

    /// `call` on the inner provisioner, made only while this node leads: checked when the
    /// returned future first runs, and by the provisioner again right before it reaches the
    /// target (after waiting for its locks, see `provision::fence`).
    fn fenced<'a, T: 'a>(
        &'a self,
        call: impl FnOnce(&'a dyn Provisioner) -> BoxFuture<'a, Result<T, ProvisionError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, ProvisionError>> {
        Box::pin(async move {
            if self.fence.current().is_none() {
                return Err(ProvisionError(
                    "this node is not the leader; the target was not called".to_owned(),
                ));
            }
            // Asked again by the provisioner once it waited for its locks.
            let fence = self.fence.clone();
            let allowed: crate::provision::fence::Allowed =
                Arc::new(move || fence.current().is_some());
            crate::provision::fence::within(allowed, call(&*self.inner)).await
        })
    }
}

impl Provisioner for Fenced {
    fn grant<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        self.fenced(move |inner| inner.grant(target))
    }

    fn revoke<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>> {
        self.fenced(move |inner| inner.revoke(target))
    }

    fn extend<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        self.fenced(move |inner| inner.extend(target))
    }

    fn restore<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        self.fenced(move |inner| inner.restore(target))
    }

    fn grant_key(&self, target: &LeaseTarget) -> String {
        self.inner.grant_key(target)
    }

    fn needs_ssh_key(&self) -> bool {
        self.inner.needs_ssh_key()
    }

    fn expiry_note(&self) -> Option<&'static str> {
        self.inner.expiry_note()
    }

    fn keys_span_resources(&self) -> bool {
        self.inner.keys_span_resources()
    }

    fn list<'a>(
        &'a self,
        resources: &'a [ResourceName],
    ) -> BoxFuture<'a, Result<Option<Vec<Holding>>, ProvisionError>> {
        self.fenced(move |inner| inner.list(resources))
    }

    fn remove<'a>(&'a self, holding: &'a Holding) -> BoxFuture<'a, Result<(), ProvisionError>> {
        self.fenced(move |inner| inner.remove(holding))
    }
}

/// The nodes of a cluster as the store records them, as `elevate admin cluster` and
/// `elevated cluster status` show them.
pub async fn status(
    target: &Target,
) -> Result<crate::proto::v1::ClusterStatusResponse, StoreError> {
    let (leader, nodes) = nodes(target).await?;
    let leading = nodes
        .iter()
        .find(|node| node.leader)
        .map(|node| node.node.clone());
    Ok(crate::proto::v1::ClusterStatusResponse {
        nodes: nodes
            .into_iter()
            .map(|node| crate::proto::v1::ClusterNode {
                role: if node.leader { "leader" } else { "standby" }.to_owned(),
                node: node.node,
                advertise: node.advertise,
                epoch: leader.epoch,
                last_seen_ms: node.seen_at_ms,
            })
            .collect(),
        epoch: leader.epoch,
        leader: leading.unwrap_or_default(),
    })
}

/// The leadership row and every node seen.
async fn nodes(target: &Target) -> Result<(Leader, Vec<NodeSeen>), StoreError> {
    let db = target.connect_plain().await?;
    let failed = |e: tokio_postgres::Error| StoreError::Unreachable(crate::pg::describe(&e));
    let row = db
        .query_one(
            "SELECT epoch, node, advertise, \
             CASE WHEN isfinite(renewed_at) THEN (extract(epoch FROM renewed_at) * 1000)::bigint END, \
             expires_at > clock_timestamp() FROM elevate_leader WHERE id = 1",
            &[],
        )
        .await
        .map_err(failed)?;
    let leader = Leader {
        epoch: row.get::<_, i64>(0) as u64,
        node: row.get(1),
        advertise: row.get(2),
    };
    let renewed: Option<i64> = row.try_get(3).ok();
    let live: bool = row.get(4);
    let rows = db
        .query(
            "SELECT node, advertise, (extract(epoch FROM seen_at) * 1000)::bigint \
             FROM elevate_nodes ORDER BY node",
            &[],
        )
        .await
        .map_err(failed)?;
    let nodes = rows
        .iter()
        .map(|row| {
            let node: String = row.get(0);
            let leading = live && node == leader.node;
            NodeSeen {
                advertise: row.get(1),
                seen_at_ms: if leading {
                    renewed.unwrap_or(row.get(2))
                } else {
                    row.get(2)
                },
                leader: leading,
                node,
            }
        })
        .collect();
    Ok((leader, nodes))
}

/// One node as the store saw it last.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeSeen {
    /// Its name.
    pub node: String,
    /// Where clients reach it.
    pub advertise: String,
    /// When it last renewed (the leader) or looked (a standby), unix milliseconds.
    pub seen_at_ms: i64,
    /// Whether it leads (and its lease has not expired).
    pub leader: bool,
}
