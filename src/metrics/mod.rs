//! Prometheus metrics, served over plain HTTP on a listener of their own ([`http`]).
//!
//! Three sources, each observed in one place:
//!
//! - **Commits.** [`Metrics`] is a [`CommitListener`]: the store's writer tells it about every
//!   durable transaction, with the requests and the audit events it stored. Counters of the
//!   workflow and its histograms are derived from those events, so they count exactly what the
//!   audit log records, once, after it is durable. The commit's duration and size feed the
//!   store histograms.
//! - **RPCs.** A tower layer on the gRPC server ([`rpc`]) times every call.
//! - **The store, at scrape time.** Gauges of current state (open requests by state, leases,
//!   reviews, the outbox) are counted in a read transaction when scraped ([`census`]), so they
//!   are right after a restart and never drift from the records. The count is kept for
//!   [`CENSUS_TTL`] and taken by one scrape at a time, so a crowd of scrapers costs the store
//!   one read a second.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `elevate_requests_total` | counter | `resource`, `outcome` | steps requests reached (below) |
//! | `elevate_time_to_decision_seconds` | histogram | `decision` | submission to `approved` or `denied` by an approver |
//! | `elevate_revocation_lag_seconds` | histogram | | a lease's expiry time to the target's confirmed revoke |
//! | `elevate_revoke_failures_total` | counter | `resource` | failed revoke attempts |
//! | `elevate_break_glass_grants_total` | counter | `resource` | break-glass leases granted |
//! | `elevate_requests_open` | gauge | `state` | requests in `pending`, `approved`, `active`, `revoke_failing` |
//! | `elevate_leases_active` | gauge | | leases in force (`active`) |
//! | `elevate_leases_revoke_failing` | gauge | | leases whose revoke is being retried; they still hold access |
//! | `elevate_reviews_open` | gauge | | break-glass reviews waiting for a verdict, overdue ones included |
//! | `elevate_reviews_overdue` | gauge | | break-glass reviews past their deadline |
//! | `elevate_notification_outbox_depth` | gauge | | notifications not yet delivered |
//! | `elevate_store_commit_duration_seconds` | histogram | | a write transaction, from its start to its durable commit |
//! | `elevate_store_commit_batch_jobs` | histogram | | write jobs per transaction (group commit) |
//! | `elevate_rpc_duration_seconds` | histogram | `method`, `code` | gRPC calls, by method and status code |
//! | `elevate_rate_limited_total` | counter | `action` | `submit` and `extend` calls refused by a rate limit |
//! | `elevate_tls_handshakes_dropped_total` | counter | `reason` | TLS handshakes dropped: `crowded` (a cap was reached and a newer one took its place) or `timeout` |
//! | `elevate_tls_crl_next_update_timestamp_seconds` | gauge | `file` | each CRL's `nextUpdate`, unix seconds |
//! | `elevate_tls_crl_expired` | gauge | `file` | 1 for a CRL past its `nextUpdate` (still used unless `crl_expired = "refuse"`) |
//!
//! The `outcome` of `elevate_requests_total` is one of `submitted`, `auto_approved`,
//! `approved`, `denied`, `cancelled`, `timed_out`, `granted`, `failed`, `expired`,
//! `released`, `revoked`: each request counts once as `submitted` and once for every later
//! step it reaches, as the audit log records them (`request.submitted`, `request.approved`
//! by the daemon or by an approver, …, `lease.expired`). Asks refused before anything is
//! stored (by the policy, a rate limit, a duplicate) are not requests; they show as error
//! codes of `SubmitRequest` and `BreakGlass` in `elevate_rpc_duration_seconds`.
//! Durations of the workflow (decision, revocation lag) are measured on the daemon's clock;
//! those of commits and calls on a monotonic one. Counters and histograms start from zero
//! when the daemon starts.
//!
//! The families are kept with the `prometheus-client` crate and written by its encoder of the
//! Prometheus text format 0.0.4 ([`families`]), which `promtool check metrics` accepts.

pub mod census;
pub mod families;
pub mod http;
pub mod rpc;

use std::sync::{Arc, OnceLock};

use crate::cluster::Leadership;
use std::time::{Duration, SystemTime};

use crate::broker::Refusals;
use crate::model::{Approval, Ending, Happened, Timestamp};
use crate::store::{Commit, CommitListener, Store, StoreError};
use crate::tls::revocation::Revocations;
use families::{Counter, Exposition, Histogram};

/// Bounds of the decision histogram: ten seconds to a day.
const DECISION_SECONDS: &[f64] = &[
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];
/// Bounds of the revocation lag: a timer fires within moments; minutes mean a failing target
/// or a daemon that was down.
const LAG_SECONDS: &[f64] = &[
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];
/// Bounds of commit latency: an fsync is a fraction of a millisecond to tens of milliseconds.
const COMMIT_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Bounds of the batch size, up to the writer's largest batch.
const COMMIT_JOBS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Bounds of call latency.
const RPC_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How long a census of the store serves scrapes.
pub const CENSUS_TTL: Duration = Duration::from_secs(1);

/// The daemon's metrics: a cheap, cloneable handle; every family takes a short lock to update.
#[derive(Clone, Debug)]
pub struct Metrics {
    families: Arc<Families>,
}

#[derive(Debug)]
struct Families {
    requests: Counter<2>,
    decisions: Histogram<1>,
    revocation_lag: Histogram<0>,
    revoke_failures: Counter<1>,
    break_glass_grants: Counter<1>,
    commit_duration: Histogram<0>,
    commit_jobs: Histogram<0>,
    rpc: Histogram<2>,
    rate_limited: OnceLock<Arc<Refusals>>,
    handshakes_dropped: Counter<1>,
    /// The CRLs whose freshness is reported, once the server has them.
    revocations: OnceLock<Revocations>,
    /// The node's leadership, when it is one of a cluster.
    cluster: OnceLock<Leadership>,
    /// The last census and when it was taken; the async lock makes concurrent scrapes wait for
    /// one read instead of each reading the store.
    census: tokio::sync::Mutex<Option<(std::time::Instant, census::Census)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, with nothing counted yet.
    pub fn new() -> Self {
        let families = Families {
            requests: Counter::new(
                "elevate_requests_total",
                "Steps requests reached, by resource: submitted, auto_approved, approved, denied, cancelled, timed_out, granted, failed, expired, released, revoked.",
                ["resource", "outcome"],
            ),
            decisions: Histogram::new(
                "elevate_time_to_decision_seconds",
                "Time from submission to an approver's final approval or denial.",
                ["decision"],
                DECISION_SECONDS,
            ),
            revocation_lag: Histogram::new(
                "elevate_revocation_lag_seconds",
                "Time from a lease's expiry time to the target's confirmed revoke.",
                [],
                LAG_SECONDS,
            ),
            revoke_failures: Counter::new(
                "elevate_revoke_failures_total",
                "Revoke attempts that failed, by resource; each is retried.",
                ["resource"],
            ),
            break_glass_grants: Counter::new(
                "elevate_break_glass_grants_total",
                "Break-glass leases granted, by resource.",
                ["resource"],
            ),
            commit_duration: Histogram::new(
                "elevate_store_commit_duration_seconds",
                "Store write transactions, from their start to their durable commit.",
                [],
                COMMIT_SECONDS,
            ),
            commit_jobs: Histogram::new(
                "elevate_store_commit_batch_jobs",
                "Write jobs committed together in one store transaction.",
                [],
                COMMIT_JOBS,
            ),
            rpc: Histogram::new(
                "elevate_rpc_duration_seconds",
                "gRPC calls by method and status code; streaming calls until their response headers.",
                ["method", "code"],
                RPC_SECONDS,
            ),
            rate_limited: OnceLock::new(),
            handshakes_dropped: Counter::new(
                "elevate_tls_handshakes_dropped_total",
                "TLS handshakes dropped before completing: crowded (a cap on handshakes in progress was reached and a newer one took its place) or timeout.",
                ["reason"],
            ),
            revocations: OnceLock::new(),
            cluster: OnceLock::new(),
            census: tokio::sync::Mutex::new(None),
        };
        Self {
            families: Arc::new(families),
        }
    }

    /// Records one gRPC call.
    pub fn observe_rpc(&self, method: &str, code: &str, took: Duration) {
        self.families
            .rpc
            .observe([method, code], took.as_secs_f64());
    }

    /// Reports the calls refused by rate limits, as counted in `refusals`, from now on.
    pub fn watch_rate_limits(&self, refusals: Arc<Refusals>) {
        let _ = self.families.rate_limited.set(refusals);
    }

    /// Counts a TLS handshake dropped for `reason`.
    pub fn handshake_dropped(&self, reason: &str) {
        self.families.handshakes_dropped.increment([reason]);
    }

    /// Reports this node's part in `cluster` from now on.
    pub fn watch_cluster(&self, cluster: Leadership) {
        let _ = self.families.cluster.set(cluster);
    }

    /// Reports the freshness of the CRLs of `revocations` from now on.
    pub fn watch_revocations(&self, revocations: Revocations) {
        let _ = self.families.revocations.set(revocations);
    }

    /// The value of `elevate_requests_total` for `resource` and `outcome`.
    pub fn requests(&self, resource: &str, outcome: &str) -> u64 {
        self.families.requests.value([resource, outcome])
    }

    /// The census of `store`, read again when the last one is older than [`CENSUS_TTL`].
    async fn census(&self, store: &Store) -> Result<census::Census, StoreError> {
        let mut cached = self.families.census.lock().await;
        if let Some((at, census)) = &*cached
            && at.elapsed() < CENSUS_TTL
        {
            return Ok(census.clone());
        }
        let census = store.read(census::Census::read).await?;
        *cached = Some((std::time::Instant::now(), census.clone()));
        Ok(census)
    }

    /// Writes every metric, reading the gauges from `store` (at most once a second; a standby
    /// has no store to read).
    pub async fn scrape(&self, store: Option<&Store>) -> Result<String, StoreError> {
        let census = match store {
            Some(store) => Some(self.census(store).await?),
            None => None,
        };
        let families = &self.families;
        let mut out = Exposition::default();
        families.requests.register(&mut out);
        families.decisions.register(&mut out);
        families.revocation_lag.register(&mut out);
        families.revoke_failures.register(&mut out);
        families.break_glass_grants.register(&mut out);
        if let Some(census) = &census {
            census.encode(&mut out);
        }
        families.commit_duration.register(&mut out);
        families.commit_jobs.register(&mut out);
        families.rpc.register(&mut out);
        if let Some(refusals) = families.rate_limited.get() {
            out.counts(
                "elevate_rate_limited_total",
                "Calls refused by a per-principal rate limit, by action (submit, extend).",
                "action",
                refusals
                    .counts()
                    .into_iter()
                    .map(|(action, count)| (action.to_owned(), count)),
            );
        }
        families.handshakes_dropped.register(&mut out);
        if let Some(revocations) = families.revocations.get() {
            encode_crls(revocations, &mut out);
        }
        if let Some(cluster) = families.cluster.get() {
            encode_cluster(cluster, &mut out);
        }
        Ok(out.finish())
    }
}

/// This node's part in its cluster.
fn encode_cluster(cluster: &Leadership, out: &mut Exposition) {
    let counts = cluster.counts();
    out.gauge(
        "elevate_cluster_leader",
        "1 on the node that leads its cluster (its lease holds by its own clock), else 0.",
        u64::from(counts.leading),
    );
    out.gauge(
        "elevate_cluster_epoch",
        "The leadership epoch this node leads in or, on a standby, follows.",
        counts.epoch,
    );
    out.count(
        "elevate_cluster_failovers_total",
        "Times this node took over the leadership.",
        counts.takeovers,
    );
    out.count(
        "elevate_cluster_fenced_writes_total",
        "Write transactions of this node refused because it no longer led (nothing of them was stored).",
        counts.fenced_writes,
    );
}

/// The freshness of each CRL.
fn encode_crls(revocations: &Revocations, out: &mut Exposition) {
    let lists = revocations.crl_lists();
    let now = Timestamp::from_system_time(SystemTime::now());
    out.gauges(
        "elevate_tls_crl_next_update_timestamp_seconds",
        "The nextUpdate of each certificate revocation list, in unix seconds.",
        "file",
        lists.iter().filter_map(|list| {
            let next = list.next_update?;
            Some((
                list.file.display().to_string(),
                i64::try_from(next.unix_millis() / 1000).unwrap_or(i64::MAX),
            ))
        }),
    );
    out.gauges(
        "elevate_tls_crl_expired",
        "1 for a certificate revocation list past its nextUpdate (still used unless crl_expired = \"refuse\"), else 0.",
        "file",
        lists
            .iter()
            .map(|list| (list.file.display().to_string(), i64::from(list.expired(now)))),
    );
}

/// The `outcome` what happened counts as, if it is a step of a request.
fn outcome(happened: &Happened) -> Option<&'static str> {
    Some(match happened {
        Happened::Submitted { .. } => "submitted",
        Happened::Approved {
            how: Approval::Route,
        } => "approved",
        Happened::Approved { .. } => "auto_approved",
        Happened::Denied { .. } => "denied",
        Happened::Cancelled { .. } => "cancelled",
        Happened::TimedOut => "timed_out",
        Happened::Granted { .. } => "granted",
        Happened::Ended { ending, .. } => match ending {
            Ending::Failed => "failed",
            Ending::Expired => "expired",
            Ending::Released => "released",
            Ending::Revoked => "revoked",
        },
        _ => return None,
    })
}

impl CommitListener for Metrics {
    fn committed(&self, commit: &Commit<'_>) {
        let families = &self.families;
        families
            .commit_duration
            .observe([], commit.took.as_secs_f64());
        families.commit_jobs.observe([], commit.jobs as f64);
        for event in commit.events {
            let (Some(request), Some(happened)) = (commit.request_of(event), &event.happened)
            else {
                continue;
            };
            let resource = request.resource.as_str();
            if let Some(outcome) = outcome(happened) {
                families.requests.increment([resource, outcome]);
            }
            let waited = || {
                event
                    .at
                    .saturating_duration_since(request.created_at)
                    .as_secs_f64()
            };
            match happened {
                Happened::Approved {
                    how: Approval::Route,
                } => families.decisions.observe(["approved"], waited()),
                Happened::Denied { .. } => families.decisions.observe(["denied"], waited()),
                Happened::Granted { .. } if request.is_break_glass() => {
                    families.break_glass_grants.increment([resource]);
                }
                Happened::RevokeFailed { .. } => families.revoke_failures.increment([resource]),
                Happened::Ended { lag: Some(lag), .. } => {
                    families.revocation_lag.observe([], lag.as_secs_f64())
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;
    use crate::model::fixtures;
    use crate::store::Recorded;

    fn event(happened: Happened, at: Timestamp) -> Recorded {
        Recorded {
            happened: Some(happened),
            at,
            request: Some(0),
        }
    }

    #[test]
    fn commits_count_steps_decisions_and_revocation_lag() {
        let metrics = Metrics::new();
        let mut request = fixtures::two_stage();
        let created = request.created_at;
        let decided = created.saturating_add(Duration::from_secs(90));
        let commit = |request: &crate::model::AccessRequest, events: &[Recorded]| {
            metrics.committed(&Commit {
                requests: std::slice::from_ref(request),
                events,
                queued: 0,
                jobs: 2,
                took: Duration::from_millis(3),
            });
        };
        commit(
            &request,
            &[event(
                Happened::Submitted {
                    needs_approval_because: None,
                },
                created,
            )],
        );
        commit(
            &request,
            &[event(
                Happened::Approved {
                    how: Approval::Route,
                },
                decided,
            )],
        );
        let expires = decided.saturating_add(Duration::from_secs(600));
        request.expires_at = Some(expires);
        request.state = State::Ended {
            ending: Ending::Expired,
        };
        let revoked = expires.saturating_add(Duration::from_secs(4));
        commit(
            &request,
            &[event(
                Happened::Ended {
                    ending: Ending::Expired,
                    grant_kept_for: None,
                    reason: None,
                    lag: Some(Duration::from_secs(4)),
                },
                revoked,
            )],
        );
        // An event about no stored request counts for nothing.
        metrics.committed(&Commit {
            requests: &[],
            events: &[event(
                Happened::Denied {
                    stage: 0,
                    stage_name: "manager".into(),
                    reason: crate::model::Reason::parse("no").unwrap(),
                },
                decided,
            )],
            queued: 0,
            jobs: 1,
            took: Duration::ZERO,
        });

        let resource = request.resource.as_str();
        assert_eq!(metrics.requests(resource, "submitted"), 1);
        assert_eq!(metrics.requests(resource, "approved"), 1);
        assert_eq!(metrics.requests(resource, "auto_approved"), 0);
        assert_eq!(metrics.requests(resource, "expired"), 1);
        assert_eq!(metrics.requests(resource, "denied"), 0);
        let decisions = metrics.families.decisions.series(["approved"]);
        assert_eq!((decisions.count, decisions.sum), (1, 90.0));
        let lag = metrics.families.revocation_lag.series([]);
        assert_eq!((lag.count, lag.sum), (1, 4.0));
        let jobs = metrics.families.commit_jobs.series([]);
        assert_eq!((jobs.count, jobs.sum), (4, 7.0));
    }

    #[test]
    fn automatic_approvals_are_not_decisions() {
        let metrics = Metrics::new();
        let request = fixtures::two_stage();
        metrics.committed(&Commit {
            requests: std::slice::from_ref(&request),
            events: &[event(
                Happened::Approved {
                    how: Approval::Auto,
                },
                request.created_at,
            )],
            queued: 0,
            jobs: 1,
            took: Duration::ZERO,
        });
        assert_eq!(
            metrics.requests(request.resource.as_str(), "auto_approved"),
            1
        );
        assert_eq!(metrics.families.decisions.series(["approved"]).count, 0);
    }
}
