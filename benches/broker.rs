//! `cargo bench --bench broker [-- --quick]`: starts the real daemon in-process with a temporary
//! redb under `target/`, drives it over real mTLS gRPC, prints a table and writes the same
//! figures to `target/elevate-bench.json` as `{"figures": {...}, "machine": "..."}`.
//!
//! Grants go through a no-op provisioner and no notifications are routed, so the figures
//! measure the broker: policy, the group-committed store, the timer wheel and gRPC. Figures this harness does not produce yet
//! are written as `null` with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elevate::broker::Broker;
use elevate::cli::client::{self, ClientFiles, Clients};
use elevate::clock::ManualClock;
use elevate::dev;
use elevate::model::StateKind;
use elevate::proto::v1 as pb;
use elevate::provision::{BoxFuture, LeaseTarget, ProvisionError, Provisioner};
use elevate::server::Server;
use elevate::store::StoreOptions;
use elevate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};
use serde_json::{Map, Value, json};

#[derive(Debug)]
struct Noop;

impl elevate::notify::Notifier for Noop {
    fn deliver<'a>(
        &'a self,
        _: &'a elevate::notify::Event,
    ) -> BoxFuture<'a, Result<(), elevate::notify::NotifyError>> {
        Box::pin(async { Ok(()) })
    }
}

impl Provisioner for Noop {
    fn grant<'a>(
        &'a self,
        _: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<elevate::provision::Granted, ProvisionError>> {
        Box::pin(async { Ok(Default::default()) })
    }
    fn revoke<'a>(&'a self, _: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Sizes of one run.
#[derive(Clone, Copy)]
struct Sizes {
    rtt_samples: usize,
    clients: usize,
    grants_per_client: usize,
    raw_commits: usize,
    approvals: usize,
    burst: usize,
    handshakes: usize,
    audit_events: usize,
}

const QUICK: Sizes = Sizes {
    rtt_samples: 300,
    clients: 64,
    grants_per_client: 40,
    raw_commits: 300,
    approvals: 100,
    burst: 10_000,
    handshakes: 100,
    audit_events: 100_000,
};

const FULL: Sizes = Sizes {
    rtt_samples: 2_000,
    clients: 64,
    grants_per_client: 150,
    raw_commits: 2_000,
    approvals: 500,
    burst: 100_000,
    handshakes: 500,
    audit_events: 1_000_000,
};

struct Env {
    _dir: tempfile::TempDir,
    layout: dev::Layout,
    clock: ManualClock,
}

fn principal(n: usize) -> String {
    format!("p{n}")
}

impl Env {
    /// A state directory with `principals` engineers and `resources` auto-approved resources,
    /// plus as many two-stage routed ones.
    fn new(principals: usize, resources: usize) -> Self {
        std::fs::create_dir_all("target/bench-tmp").unwrap();
        let dir = tempfile::tempdir_in("target/bench-tmp").unwrap();
        let layout = dev::prepare(dir.path()).unwrap();
        let mut policy =
            String::from("auditor_groups = [\"auditors\"]\nadmin_groups = [\"admins\"]\n");
        for r in 0..resources {
            write!(
                policy,
                "[resources.auto-{r}]\nprovisioner = \"files\"\neligible_groups = [\"engineering\"]\n\
                 default_duration = \"1h\"\nmax_duration = \"8h\"\nauto_approve = true\n\
                 [resources.routed-{r}]\nprovisioner = \"files\"\neligible_groups = [\"engineering\"]\n\
                 default_duration = \"1h\"\nmax_duration = \"8h\"\n\
                 [[resources.routed-{r}.stages]]\nname = \"manager\"\napprovers = [\"manager\"]\n\
                 [[resources.routed-{r}.stages]]\nname = \"security\"\napprovers = [\"group:security\"]\n"
            )
            .unwrap();
        }
        std::fs::write(&layout.policy, policy).unwrap();
        let mut directory = String::from(dev::DIRECTORY);
        for n in 0..principals {
            write!(
                directory,
                "[principals.{}]\ngroups = [\"engineering\"]\nmanager = \"manager\"\n",
                principal(n)
            )
            .unwrap();
            issue::issue(
                &layout.certs.0,
                &principal(n),
                DEFAULT_TRUST_DOMAIN,
                1,
                false,
            )
            .unwrap();
        }
        std::fs::write(&layout.directory, directory).unwrap();
        Self {
            _dir: dir,
            layout,
            clock: ManualClock::starting_now(),
        }
    }

    async fn start(&self, max_batch: usize) -> Daemon {
        self.start_with(max_batch, false).await
    }

    /// With `notify`, every event is routed through the outbox to a no-op notifier.
    async fn start_with(&self, max_batch: usize, notify: bool) -> Daemon {
        let mut options = dev::options(&self.layout, Arc::new(self.clock.clone()));
        options.provisioners.insert("files", Arc::new(Noop));
        // The broker itself: no notifications routed (dev mode would log every event).
        options.notifiers = Default::default();
        options.settings.routing = Default::default();
        if notify {
            options.notifiers.insert("noop", Arc::new(Noop));
            options
                .settings
                .routing
                .routes
                .push(elevate::notify::Route {
                    events: vec!["*".to_owned()],
                    min_priority: elevate::notify::Priority::Normal,
                    notifier: "noop".to_owned(),
                });
        }
        options.store_options = StoreOptions {
            max_batch,
            ..StoreOptions::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("https://{}", listener.local_addr().unwrap());
        let server = Server::build(options).await.unwrap();
        let broker = server.broker().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        Daemon {
            endpoint,
            broker,
            certs: self.layout.certs.0.clone(),
            stop,
            task,
        }
    }
}

struct Daemon {
    endpoint: String,
    broker: Broker,
    certs: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), elevate::server::ServeError>>,
}

impl Daemon {
    async fn client(&self, name: &str) -> Clients {
        client::connect(
            &self.endpoint,
            &ClientFiles {
                ca: self.certs.join("ca.crt"),
                cert: self.certs.join(format!("{name}.crt")),
                key: self.certs.join(format!("{name}.key")),
            },
        )
        .await
        .unwrap()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    async fn count(&self, kind: StateKind) -> u64 {
        self.broker
            .store()
            .read(move |r| r.count_in_state(kind))
            .await
            .unwrap()
    }
}

async fn submit(clients: &mut Clients, resource: &str) -> pb::AccessRequest {
    clients
        .access
        .submit_request(pb::SubmitRequestRequest {
            resource: resource.to_owned(),
            duration: "1h".to_owned(),
            reason: "bench".to_owned(),
            ticket: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index].as_secs_f64() * 1000.0
}

/// `clients` principals each submit `per_client` auto-approved requests back to back.
/// Returns grants per second.
async fn sustained_grants(max_batch: usize, notify: bool, sizes: Sizes) -> f64 {
    let env = Env::new(sizes.clients, sizes.grants_per_client);
    let daemon = env.start_with(max_batch, notify).await;
    let mut clients = Vec::new();
    for n in 0..sizes.clients {
        clients.push(daemon.client(&principal(n)).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                for r in 0..sizes.grants_per_client {
                    let granted = submit(&mut client, &format!("auto-{r}")).await;
                    assert_eq!(granted.state, pb::RequestState::Active as i32);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = (sizes.clients * sizes.grants_per_client) as f64 / started.elapsed().as_secs_f64();
    daemon.stop().await;
    rate
}

fn raw_commits_per_s(n: usize) -> f64 {
    let dir = tempfile::tempdir_in("target/bench-tmp").unwrap();
    let db = redb::Database::create(dir.path().join("raw.redb")).unwrap();
    let table: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
    let started = Instant::now();
    for i in 0..n as u64 {
        let txn = db.begin_write().unwrap();
        txn.open_table(table).unwrap().insert(i, i).unwrap();
        txn.commit().unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

struct Quiet;

impl elevate::store::CommitListener for Quiet {
    fn committed(&self, _: &elevate::store::Commit<'_>) {}
}

/// Fills a store with `events` audit entries about 1,000 principals (signed every 1000, as the
/// daemon does), then measures the p99 of fetching one principal's newest 100 events through
/// the query index, and offline verification of the whole file.
async fn audit_figures(events: usize) -> (f64, f64) {
    use elevate::audit::query::Filter;
    use elevate::audit::{Actor, Draft};
    use elevate::store::{Changes, Signing, Store};
    let dir = tempfile::tempdir_in("target").unwrap();
    let path = dir.path().join("audit.redb");
    let key = Arc::new(elevate::audit::key::AuditKey::ephemeral().unwrap());
    let public = key.public();
    let options = StoreOptions {
        signing: Some(Signing { key, every: 1000 }),
        ..StoreOptions::default()
    };
    let store = Store::open(&path, options, Arc::new(Quiet)).unwrap();
    let principals: Vec<elevate::model::Principal> =
        (0..1000).map(|n| principal(n).parse().unwrap()).collect();
    let resource: elevate::model::ResourceName = "prod-db".parse().unwrap();
    let start = 1_800_000_000_000u64;
    let mut written = 0;
    while written < events {
        let batch: Vec<Draft> = (written..(written + 2000).min(events))
            .map(|n| {
                let at = elevate::model::Timestamp::from_unix_millis(start + n as u64);
                let who = principals[n % principals.len()].clone();
                let mut draft = Draft::new(at, Actor::Principal(who.clone()), "lease.expired")
                    .detail("lag_ms", n % 50);
                draft.principal = Some(who);
                draft.resource = Some(resource.clone());
                draft
            })
            .collect();
        written += batch.len();
        store
            .write(move |_| -> Result<_, elevate::store::StoreError> {
                Ok((
                    Changes {
                        events: batch,
                        ..Changes::default()
                    },
                    (),
                ))
            })
            .await
            .unwrap();
    }
    let mut samples = Vec::new();
    for n in 0..500 {
        let filter = Filter {
            principal: Some(principals[(n * 7919) % principals.len()].clone()),
            ..Filter::default()
        };
        let started = Instant::now();
        let page = store
            .read(move |r| r.audit_page(&filter, None, 100, 16_384))
            .await
            .unwrap();
        samples.push(started.elapsed());
        assert_eq!(page.events.len(), 100.min(events / principals.len()));
    }
    store.close(Duration::from_secs(30)).await;
    let started = Instant::now();
    let verified = elevate::store::offline::verify_store(&path, Some(public)).unwrap();
    let rate = verified.summary.events as f64 / started.elapsed().as_secs_f64();
    assert_eq!(verified.summary.events as usize, events);
    (percentile(&mut samples, 0.99), rate)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores, {cpu}, {}", std::env::consts::OS)
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick { QUICK } else { FULL };
    let mut figures = Map::new();
    let mut notes = Map::new();
    let mut put = |name: &str, value: f64| {
        println!("{name:<28} {value:>12.2}");
        figures.insert(name.to_owned(), json!((value * 100.0).round() / 100.0));
    };
    println!(
        "elevate broker benchmark ({}), {}",
        if quick { "quick" } else { "full" },
        machine()
    );
    println!("{:<28} {:>12}", "figure", "value");

    // Latency: one client, auto-approved request → active, and a routed two-stage approval.
    {
        let env = Env::new(1, sizes.rtt_samples.max(sizes.approvals));
        let daemon = env.start(StoreOptions::default().max_batch).await;
        let mut client = daemon.client(&principal(0)).await;
        let mut samples = Vec::new();
        for r in 0..sizes.rtt_samples {
            let started = Instant::now();
            let granted = submit(&mut client, &format!("auto-{r}")).await;
            samples.push(started.elapsed());
            assert_eq!(granted.state, pb::RequestState::Active as i32);
        }
        put("grant_rtt_p50_ms", percentile(&mut samples, 0.50));
        put("grant_rtt_p99_ms", percentile(&mut samples, 0.99));

        let mut manager = daemon.client("manager").await;
        let mut security = daemon.client("security").await;
        let mut samples = Vec::new();
        for r in 0..sizes.approvals {
            let pending = submit(&mut client, &format!("routed-{r}")).await;
            let approve = |id: &str| pb::ApproveRequest {
                id: id.to_owned(),
                comment: String::new(),
            };
            manager
                .approval
                .approve(approve(&pending.id))
                .await
                .unwrap();
            let started = Instant::now();
            let active = security
                .approval
                .approve(approve(&pending.id))
                .await
                .unwrap()
                .into_inner();
            samples.push(started.elapsed());
            assert_eq!(
                active.request.unwrap().state,
                pb::RequestState::Active as i32
            );
        }
        put("approval_rtt_p50_ms", percentile(&mut samples, 0.50));
        put("approval_rtt_p99_ms", percentile(&mut samples, 0.99));

        let files = ClientFiles {
            ca: daemon.certs.join("ca.crt"),
            cert: daemon.certs.join("p0.crt"),
            key: daemon.certs.join("p0.key"),
        };
        let started = Instant::now();
        for _ in 0..sizes.handshakes {
            let mut fresh = client::connect(&daemon.endpoint, &files).await.unwrap();
            fresh.access.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
        }
        put(
            "mtls_handshakes_per_s",
            sizes.handshakes as f64 / started.elapsed().as_secs_f64(),
        );
        daemon.stop().await;
    }

    // Durable throughput with and without group commit, and the disk's fsync limit.
    let batched = sustained_grants(StoreOptions::default().max_batch, false, sizes).await;
    let unbatched = sustained_grants(1, false, sizes).await;
    let notifying = sustained_grants(StoreOptions::default().max_batch, true, sizes).await;
    put("grants_per_s", batched);
    put("grants_per_s_unbatched", unbatched);
    put("group_commit_gain", batched / unbatched);
    put("grants_per_s_notifying", notifying);
    put("raw_commits_per_s", raw_commits_per_s(sizes.raw_commits));

    // Expiry burst: every lease expiring at the same instant.
    {
        let per_client = sizes.burst.div_ceil(sizes.clients);
        let env = Env::new(sizes.clients, per_client);
        let daemon = env.start(StoreOptions::default().max_batch).await;
        let mut clients = Vec::new();
        for n in 0..sizes.clients {
            clients.push(daemon.client(&principal(n)).await);
        }
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                tokio::spawn(async move {
                    for r in 0..per_client {
                        submit(&mut client, &format!("auto-{r}")).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let leases = daemon.count(StateKind::Active).await;
        env.clock.advance(Duration::from_secs(3600));
        let started = Instant::now();
        while daemon.count(StateKind::Expired).await < leases {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        put(
            &format!("expiry_burst_{}k_s", leases / 1000),
            started.elapsed().as_secs_f64(),
        );
        daemon.stop().await;
    }

    // Offboarding: a leaver holding 100 leases loses them all (revoked and committed) within
    // one `admin offboard` call. Five leavers; the median and the slowest.
    {
        const LEAVERS: usize = 5;
        const LEASES: usize = 100;
        let env = Env::new(LEAVERS, LEASES);
        let daemon = env.start(StoreOptions::default().max_batch).await;
        let mut admin = daemon.client("admin").await;
        let mut samples = Vec::new();
        for n in 0..LEAVERS {
            let mut leaver = daemon.client(&principal(n)).await;
            for r in 0..LEASES {
                submit(&mut leaver, &format!("auto-{r}")).await;
            }
            let started = Instant::now();
            let done = admin
                .admin
                .offboard(pb::OffboardRequest {
                    principal: principal(n),
                    reason: "bench".to_owned(),
                })
                .await
                .unwrap()
                .into_inner();
            samples.push(started.elapsed());
            assert_eq!(done.revoked.len(), LEASES);
        }
        assert_eq!(
            daemon.count(StateKind::Revoked).await,
            (LEAVERS * LEASES) as u64
        );
        put("offboard_100_leases_ms", percentile(&mut samples, 0.50));
        put("offboard_100_leases_max_ms", percentile(&mut samples, 1.0));
        daemon.stop().await;
    }

    // The audit trail: one principal's newest events among many, and offline verification.
    {
        let (query_p99, verify_rate) = audit_figures(sizes.audit_events).await;
        put(
            &format!("audit_query_p99_ms_{}k", sizes.audit_events / 1000),
            query_p99,
        );
        put("audit_verify_events_per_s", verify_rate);
    }

    for (name, reason) in [
        (
            "revocation_lag_p99_ms",
            "not measured by this version of the harness",
        ),
        (
            "restart_ready_1m_s",
            "not measured by this version of the harness",
        ),
        (
            "bytes_per_active_lease",
            "not measured by this version of the harness",
        ),
    ] {
        println!("{name:<28} {:>12}  ({reason})", "null");
        figures.insert(name.to_owned(), Value::Null);
        notes.insert(name.to_owned(), json!(reason));
    }
    let report = json!({ "figures": figures, "null_reasons": notes, "machine": machine(), "mode": if quick { "quick" } else { "full" } });
    std::fs::write(
        "target/elevate-bench.json",
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    println!("wrote target/elevate-bench.json");
}
