//! `cargo bench --bench broker [-- --quick]`: starts the real daemon in-process with a temporary
//! redb under `target/`, drives it over real mTLS gRPC, prints a table and writes the same
//! figures to `target/elevate-bench.json` as `{"figures": {...}, "machine": "..."}`.
//!
//! Grants go through a no-op provisioner and no notifications are routed, so the figures
//! measure the broker: policy, the group-committed store, the timer wheel and gRPC. Figures this harness does not produce yet
//! are written as `null` with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

/// Throwaway PostgreSQL clusters, as the integration tests start them.
#[allow(dead_code)]
#[path = "../tests/it/pg.rs"]
mod pg;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elevate::broker::Broker;
use elevate::cli::client::{self, ClientFiles, Clients};
use elevate::clock::{Clock, ManualClock};
use elevate::dev;
use elevate::model::StateKind;
use elevate::proto::v1 as pb;
use elevate::provision::{BoxFuture, LeaseTarget, ProvisionError, Provisioner};
use elevate::server::Server;
use elevate::store::StoreOptions;
use elevate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};
use serde_json::{Map, json};

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
    /// Active leases for the restart, memory and revocation-lag figures.
    scale_leases: usize,
    lag_samples: usize,
}

const QUICK: Sizes = Sizes {
    rtt_samples: 300,
    clients: 64,
    grants_per_client: 40,
    raw_commits: 300,
    approvals: 100,
    burst: 100_000,
    handshakes: 100,
    audit_events: 100_000,
    scale_leases: 1_000_000,
    lag_samples: 200,
};

/// The audit log size the `audit_query_p99_ms` target is set for.
const FULL_AUDIT_EVENTS: usize = 10_000_000;

/// The audit log size the `audit_query_p99_ms_postgres` target is set for (the full run's).
const FULL_POSTGRES_AUDIT_EVENTS: usize = 1_000_000;

const FULL: Sizes = Sizes {
    rtt_samples: 2_000,
    clients: 64,
    grants_per_client: 150,
    raw_commits: 2_000,
    approvals: 500,
    burst: 100_000,
    handshakes: 500,
    audit_events: FULL_AUDIT_EVENTS,
    scale_leases: 1_000_000,
    lag_samples: 500,
};

struct Env {
    _dir: tempfile::TempDir,
    layout: dev::Layout,
    clock: ManualClock,
    /// Where the daemon's store lives instead of the layout's redb file.
    store: Option<elevate::store::Location>,
}

fn principal(n: usize) -> String {
    format!("p{n}")
}

impl Env {
    /// A state directory with `principals` engineers and `resources` auto-approved resources,
    /// plus as many two-stage routed ones.
    fn new(principals: usize, resources: usize) -> Self {
        Self::with_certificates(principals, principals, resources)
    }

    /// Like [`Env::new`], with client certificates for the first `certified` principals only.
    fn with_certificates(principals: usize, certified: usize, resources: usize) -> Self {
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
            if n < certified {
                issue::issue(
                    &layout.certs.0,
                    &principal(n),
                    DEFAULT_TRUST_DOMAIN,
                    1,
                    false,
                )
                .unwrap();
            }
        }
        std::fs::write(&layout.directory, directory).unwrap();
        Self {
            _dir: dir,
            layout,
            clock: ManualClock::starting_now(),
            store: None,
        }
    }

    /// The same, with the daemon's store at `store`.
    fn on(mut self, store: Option<elevate::store::Location>) -> Self {
        self.store = store;
        self
    }

    async fn start(&self, max_batch: usize) -> Daemon {
        self.start_with(max_batch, false).await
    }

    /// A daemon whose directory of record is the SCIM one (empty at first), and where its
    /// SCIM endpoint listens; the bearer token is [`SCIM_TOKEN`].
    async fn start_scim(&self) -> (Daemon, std::net::SocketAddr) {
        let token = self.layout.root.join("scim.token");
        std::fs::write(&token, SCIM_TOKEN).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let daemon = self
            .launch(
                StoreOptions::default().max_batch,
                false,
                Some((token, listener)),
            )
            .await;
        (daemon, address)
    }

    /// With `notify`, every event is routed through the outbox to a no-op notifier.
    async fn start_with(&self, max_batch: usize, notify: bool) -> Daemon {
        self.launch(max_batch, notify, None).await
    }

    /// Starts the daemon; with `scim` (a token file and a listener), its directory of record
    /// is the SCIM one, served there.
    async fn launch(
        &self,
        max_batch: usize,
        notify: bool,
        scim: Option<(PathBuf, tokio::net::TcpListener)>,
    ) -> Daemon {
        let mut options = dev::options(&self.layout, Arc::new(self.clock.clone()));
        if let Some(store) = &self.store {
            options.store = store.clone();
        }
        options.provisioners.insert("files", Arc::new(Noop));
        // The broker itself: no notifications routed (dev mode would log every event).
        options.notifiers = Default::default();
        options.settings.routing = Default::default();
        // The figures are of the broker's throughput, not of one principal's rate limit.
        let unlimited: elevate::model::Rate = "1000000/1s".parse().unwrap();
        options.settings.rate_limits = elevate::broker::RateLimits {
            submit: unlimited,
            extend: unlimited,
        };
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
        let scim_listener = scim.map(|(token, listener)| {
            options.directory = None;
            options.scim_token = Some(token);
            listener
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("https://{}", listener.local_addr().unwrap());
        let mut server = Server::build(options).await.unwrap();
        if let Some(scim_listener) = scim_listener {
            server = server.with_scim(scim_listener).unwrap();
        }
        let broker = server.broker().clone();
        let store = server.store().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        Daemon {
            endpoint,
            broker,
            store,
            certs: self.layout.certs.0.clone(),
            stop,
            task,
        }
    }
}

struct Daemon {
    endpoint: String,
    broker: Broker,
    store: elevate::store::Store,
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

    /// A lease the daemon really granted (principal 0 on `auto-0`), as stored: what the
    /// seeded leases are copies of.
    async fn granted_template(&self) -> elevate::model::AccessRequest {
        let mut client = self.client(&principal(0)).await;
        let granted = submit(&mut client, "auto-0").await;
        self.store
            .read(move |r| r.request(granted.id.parse().unwrap()))
            .await
            .unwrap()
            .unwrap()
    }

    async fn count(&self, kind: StateKind) -> u64 {
        self.store
            .read(move |r| r.count_in_state(kind))
            .await
            .unwrap()
    }
}

async fn submit(clients: &mut Clients, resource: &str) -> pb::AccessRequest {
    clients
        .access
        .submit_request(pb::SubmitRequestRequest {
            ssh_key: String::new(),
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

/// The p50 and p99 of `samples` auto-approved requests, each from submission to active.
async fn grant_rtts(client: &mut Clients, samples: usize) -> (f64, f64) {
    let mut taken = Vec::new();
    for r in 0..samples {
        let started = Instant::now();
        let granted = submit(client, &format!("auto-{r}")).await;
        taken.push(started.elapsed());
        assert_eq!(granted.state, pb::RequestState::Active as i32);
    }
    (percentile(&mut taken, 0.50), percentile(&mut taken, 0.99))
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index].as_secs_f64() * 1000.0
}

/// `clients` principals each submit `per_client` auto-approved requests back to back.
/// Returns grants per second.
async fn sustained_grants(
    max_batch: usize,
    notify: bool,
    sizes: Sizes,
    store: Option<elevate::store::Location>,
) -> f64 {
    let env = Env::new(sizes.clients, sizes.grants_per_client).on(store);
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
async fn audit_figures(events: usize, on: Option<elevate::store::Location>) -> (f64, f64) {
    use elevate::audit::query::Filter;
    use elevate::audit::{Actor, Draft};
    use elevate::store::{Changes, Location, Signing, Store};
    let dir = tempfile::tempdir_in("target").unwrap();
    let path = dir.path().join("audit.redb");
    let location = on.unwrap_or_else(|| Location::Embedded(path.clone()));
    let key = Arc::new(elevate::audit::key::AuditKey::ephemeral().unwrap());
    let public = key.public();
    let options = StoreOptions {
        signing: Some(Signing {
            key,
            every: 1000,
            witness: None,
        }),
        ..StoreOptions::default()
    };
    let store = Store::open_at(&location, options, Arc::new(Quiet))
        .await
        .unwrap();
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
    if std::env::var_os("ELEVATE_BENCH_PAUSE").is_some() {
        // Lets a profiler attach to the verification alone.
        eprintln!(
            "verifying {events} entries in 2 s (pid {})",
            std::process::id()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let started = Instant::now();
    let verified = match &location {
        Location::Embedded(path) => elevate::store::offline::verify_store(path, Some(public)),
        Location::Postgres(target) => {
            elevate::store::postgres::verify(target, Some(public), Default::default()).await
        }
    }
    .unwrap();
    let rate = verified.summary.events as f64 / started.elapsed().as_secs_f64();
    assert_eq!(verified.summary.events as usize, events);
    (percentile(&mut samples, 0.99), rate)
}

/// Writes `count` active leases straight into the daemon's store, each a copy of `template`
/// (a lease the daemon granted) with its own id, holder, resource and end, `batch` per write
/// transaction. Ends are spread evenly over `spread` from `first_end`. Returns leases written
/// per second.
async fn seed_leases(
    store: &elevate::store::Store,
    template: &elevate::model::AccessRequest,
    count: usize,
    principals: usize,
    resources: usize,
    first_end: elevate::model::Timestamp,
    spread: Duration,
) -> f64 {
    let spread_ms = spread.as_millis() as u64;
    const BATCH: usize = 20_000;
    let started = Instant::now();
    let mut written = 0;
    while written < count {
        let n = BATCH.min(count - written);
        let template = template.clone();
        let offset = written;
        store
            .write(move |view| -> Result<_, elevate::store::StoreError> {
                let first = view.next_request_id()?.raw();
                let requests = (0..n)
                    .map(|k| {
                        let i = offset + k;
                        let mut lease = template.clone();
                        lease.id = elevate::model::RequestId::from_raw(first + k as u64);
                        // Principal 0 is left free for the measurements.
                        lease.requester = principal(1 + i % (principals - 1)).parse().unwrap();
                        // The account is fixed at submission: the holder's own.
                        lease.account = template
                            .account
                            .as_ref()
                            .map(|_| lease.requester.to_string());
                        lease.resource = format!("auto-{}", (i / principals) % resources)
                            .parse()
                            .unwrap();
                        lease.expires_at = Some(first_end.saturating_add(Duration::from_millis(
                            (i as u64 * spread_ms) / count as u64,
                        )));
                        lease.notices = Default::default();
                        lease
                    })
                    .collect();
                Ok((
                    elevate::store::Changes {
                        requests,
                        ..Default::default()
                    },
                    (),
                ))
            })
            .await
            .unwrap();
        written += n;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Seconds from the instant `leases` active leases expire (all within one second) until all
/// are committed as expired: revoked through the (no-op) provisioner, recorded and audited.
/// The leases are copies of one the daemon granted, written straight into the store: granting
/// them one by one over gRPC would measure the grant path again and take minutes.
async fn expiry_burst(leases: usize, store: Option<elevate::store::Location>) -> f64 {
    const PRINCIPALS: usize = 1000;
    const RESOURCES: usize = 100;
    let env = Env::with_certificates(PRINCIPALS, 1, RESOURCES).on(store);
    let daemon = env.start(StoreOptions::default().max_batch).await;
    let template = daemon.granted_template().await;
    let end = env.clock.now().saturating_add(Duration::from_secs(7200));
    seed_leases(
        &daemon.store,
        &template,
        leases,
        PRINCIPALS,
        RESOURCES,
        end,
        Duration::from_secs(1),
    )
    .await;
    // Committing them scheduled them on the wheel, as for any grant.
    let active = daemon.count(StateKind::Active).await;
    assert_eq!(active, leases as u64 + 1);
    if std::env::var_os("ELEVATE_BENCH_PAUSE").is_some() {
        // Lets a profiler attach to the burst alone.
        eprintln!(
            "expiring {leases} leases in 2 s (pid {})",
            std::process::id()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let stats = daemon.store.stats();
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let (commits, jobs, entries) = (
        load(&stats.commits),
        load(&stats.jobs),
        load(&stats.entries),
    );
    env.clock.set(end.saturating_add(Duration::from_secs(1)));
    let started = Instant::now();
    // Each expiry commits one audit entry (`lease.expired`): wait on the writer's counter (free
    // to read) rather than scan the state index over and over (which would compete with the
    // burst), then confirm.
    while load(&stats.entries) - entries < active {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while daemon.count(StateKind::Expired).await < active {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  (expiry burst: {} write transactions, {} write jobs for {} leases)",
        load(&stats.commits) - commits,
        load(&stats.jobs) - jobs,
        active
    );
    daemon.stop().await;
    seconds
}

/// A daemon child process (`elevated serve --dev` on `layout`'s state directory) and when it
/// told its supervisor it was ready (over a `NOTIFY_SOCKET` datagram socket, as systemd's).
struct Child {
    process: std::process::Child,
    ready_after: Duration,
}

impl Child {
    fn start(layout: &dev::Layout) -> Self {
        let socket_path = layout.root.join("notify.sock");
        let _ = std::fs::remove_file(&socket_path);
        let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let started = Instant::now();
        let process = std::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0", "--state-dir"])
            .arg(&layout.root)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket
                .recv(&mut buffer)
                .expect("the daemon did not become ready");
            if String::from_utf8_lossy(&buffer[..n])
                .lines()
                .any(|line| line == "READY=1")
            {
                break;
            }
        }
        Self {
            process,
            ready_after: started.elapsed(),
        }
    }

    /// Resident memory in bytes.
    fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        kib * 1024
    }

    /// SIGTERM, and waits for the clean stop.
    fn stop(mut self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.process),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        assert!(self.process.wait().unwrap().success());
    }
}

/// Figures at scale: `leases` active leases (a real granted lease copied into the store),
/// then
/// - a restart of the daemon as a child process: seconds until it is ready (recovered, every
///   lease scheduled, listening), and its resident memory against an empty store's;
/// - in-process on the same store with the manual clock, one lease at a time expiring while
///   the others stay scheduled: time from its expiry to the revoked state reaching a watcher.
async fn scale_figures(leases: usize, lag_samples: usize) -> (f64, f64, f64, f64) {
    const PRINCIPALS: usize = 1000;
    const RESOURCES: usize = 100;
    let env = Env::with_certificates(PRINCIPALS, 1, RESOURCES);
    // The empty daemon's footprint (same policy, directory and certificates).
    let empty = Child::start(&env.layout);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let empty_rss = empty.rss();
    empty.stop();

    let daemon = env.start(StoreOptions::default().max_batch).await;
    let template = daemon.granted_template().await;
    let first_end = env
        .clock
        .now()
        .saturating_add(Duration::from_secs(30 * 86_400));
    let seeded = seed_leases(
        &daemon.store,
        &template,
        leases,
        PRINCIPALS,
        RESOURCES,
        first_end,
        Duration::from_secs(86_400),
    )
    .await;
    println!("  (seeded {leases} leases at {seeded:.0}/s)");
    daemon.stop().await;

    let full = Child::start(&env.layout);
    let ready = full.ready_after.as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_lease = full.rss().saturating_sub(empty_rss) as f64 / leases as f64;
    full.stop();

    // Revocation lag with every other lease scheduled.
    let daemon = env.start(StoreOptions::default().max_batch).await;
    let mut client = daemon.client(&principal(0)).await;
    let mut samples = Vec::new();
    for r in 0..lag_samples {
        // Each expires before the next starts: no overlap with the one before (nor with the
        // template on auto-0, which expires with the first).
        let lease = submit(&mut client, &format!("auto-{}", (r + 1) % RESOURCES)).await;
        assert_eq!(lease.state, pb::RequestState::Active as i32);
        let id: elevate::model::RequestId = lease.id.parse().unwrap();
        let mut committed = daemon.broker.committed_ids();
        env.clock.advance(Duration::from_secs(3600));
        let started = Instant::now();
        // Every commit of the lease until it is expired (the revoke may commit a state on the
        // way).
        loop {
            while committed.recv().await.unwrap() != id {}
            let now = daemon
                .store
                .read(move |r| r.request(id))
                .await
                .unwrap()
                .unwrap();
            if now.kind() == StateKind::Expired {
                break;
            }
        }
        samples.push(started.elapsed());
    }
    let scheduled = daemon.count(StateKind::Active).await;
    assert!(scheduled >= leases as u64);
    daemon.stop().await;
    (
        ready,
        per_lease,
        percentile(&mut samples, 0.99),
        percentile(&mut samples, 0.50),
    )
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
    // `--only=NAME[,NAME]` runs just those sections (latency, throughput, expiry, offboard,
    // scim, audit, scale).
    let only: Option<Vec<String>> = std::env::args().find_map(|a| {
        a.strip_prefix("--only=")
            .map(|s| s.split(',').map(str::to_owned).collect())
    });
    let run = |section: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == section));
    let sizes = if quick { QUICK } else { FULL };
    let mut figures = Map::new();
    let mut notes = Map::new();
    // Figures this run does not produce, with why (printed and written as null).
    let mut absent: Vec<(&str, String)> = Vec::new();
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
    if run("latency") {
        let env = Env::new(1, sizes.rtt_samples.max(sizes.approvals));
        let daemon = env.start(StoreOptions::default().max_batch).await;
        let mut client = daemon.client(&principal(0)).await;
        let (p50, p99) = grant_rtts(&mut client, sizes.rtt_samples).await;
        put("grant_rtt_p50_ms", p50);
        put("grant_rtt_p99_ms", p99);

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
    if run("throughput") {
        let batched = sustained_grants(StoreOptions::default().max_batch, false, sizes, None).await;
        let unbatched = sustained_grants(1, false, sizes, None).await;
        let notifying =
            sustained_grants(StoreOptions::default().max_batch, true, sizes, None).await;
        put("grants_per_s", batched);
        put("grants_per_s_unbatched", unbatched);
        put("group_commit_gain", batched / unbatched);
        put("grants_per_s_notifying", notifying);
        let raw = raw_commits_per_s(sizes.raw_commits);
        put("raw_commits_per_s", raw);
        // Above 1, a grant costs less than one bare fsync'd commit of redb on this disk.
        put("grants_per_raw_commit", batched / raw);
    }

    // Expiry burst: `burst` leases expiring in the same second.
    if run("expiry") {
        let seconds = expiry_burst(sizes.burst, None).await;
        put(&format!("expiry_burst_{}k_s", sizes.burst / 1000), seconds);
    }

    // Offboarding: a leaver holding 100 leases loses them all (revoked and committed) within
    // one `admin offboard` call. Five leavers; the median and the slowest.
    if run("offboard") {
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

    // The directory of record over SCIM: Okta's PATCH active=false of a user holding 100
    // leases, answered once all of them are revoked and committed. Five leavers.
    if run("scim") {
        const LEAVERS: usize = 5;
        const LEASES: usize = 100;
        let env = Env::new(LEAVERS, LEASES);
        let (daemon, scim) = env.start_scim().await;
        let idp = Idp::new(scim, &daemon.certs);
        let mut ids = Vec::new();
        for n in 0..LEAVERS {
            let (status, user) = idp
                .call(
                    "POST",
                    "/Users",
                    json!({"schemas": [SCIM_USER], "userName": principal(n), "active": true}),
                )
                .await;
            assert_eq!(status, 201, "{user}");
            ids.push(user["id"].as_str().unwrap().to_owned());
        }
        let members: Vec<_> = ids.iter().map(|id| json!({"value": id})).collect();
        let (status, group) = idp
            .call(
                "POST",
                "/Groups",
                json!({"schemas": [SCIM_GROUP], "displayName": "engineering", "members": members}),
            )
            .await;
        assert_eq!(status, 201, "{group}");
        let mut samples = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            let mut leaver = daemon.client(&principal(n)).await;
            for r in 0..LEASES {
                submit(&mut leaver, &format!("auto-{r}")).await;
            }
            let deactivate = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}],
            });
            let started = Instant::now();
            let (status, answer) = idp.call("PATCH", &format!("/Users/{id}"), deactivate).await;
            samples.push(started.elapsed());
            assert_eq!(status, 200, "{answer}");
            assert_eq!(
                daemon.count(StateKind::Revoked).await,
                ((n + 1) * LEASES) as u64,
                "every lease revoked and committed before the answer"
            );
        }
        put(
            "scim_deactivate_100_leases_ms",
            percentile(&mut samples, 0.50),
        );
        put(
            "scim_deactivate_100_leases_max_ms",
            percentile(&mut samples, 1.0),
        );
        daemon.stop().await;
    }

    // The audit trail: one principal's newest events among many, and offline verification.
    if run("audit") {
        let (query_p99, verify_rate) = audit_figures(sizes.audit_events, None).await;
        if sizes.audit_events == FULL_AUDIT_EVENTS {
            put("audit_query_p99_ms", query_p99);
        } else {
            let scaled = format!("audit_query_p99_ms_{}k", sizes.audit_events / 1000);
            put(&scaled, query_p99);
            absent.push((
                "audit_query_p99_ms",
                format!("quick mode fills {} events, reported as {scaled}; the full run fills 10,000,000", sizes.audit_events),
            ));
        }
        put("audit_verify_events_per_s", verify_rate);
    }

    if run("scale") {
        let (ready, per_lease, lag_p99, lag_p50) =
            scale_figures(sizes.scale_leases, sizes.lag_samples).await;
        put("restart_ready_1m_s", ready);
        put("bytes_per_active_lease", per_lease);
        put("revocation_lag_p50_ms", lag_p50);
        put("revocation_lag_p99_ms", lag_p99);
    }
    // The same on PostgreSQL (durable: fsync and synchronous commit on), and what a takeover
    // costs.
    if run("postgres") {
        let figures = postgres_figures(sizes).await;
        put("grant_rtt_p50_ms_postgres", figures.rtt.0);
        put("grant_rtt_p99_ms_postgres", figures.rtt.1);
        put("grants_per_s_postgres", figures.grants_per_s);
        put(
            "grants_per_s_unbatched_postgres",
            figures.grants_per_s_unbatched,
        );
        put(
            "group_commit_gain_postgres",
            figures.grants_per_s / figures.grants_per_s_unbatched,
        );
        put("raw_commits_per_s_postgres", figures.raw_commits_per_s);
        put(
            "grants_per_raw_commit_postgres",
            figures.grants_per_s / figures.raw_commits_per_s,
        );
        put(
            &format!("expiry_burst_{}k_s_postgres", sizes.burst / 1000),
            figures.expiry_burst,
        );
        let events = postgres_audit_events(sizes);
        if events == FULL_POSTGRES_AUDIT_EVENTS {
            put("audit_query_p99_ms_postgres", figures.audit_query);
        } else {
            let scaled = format!("audit_query_p99_ms_postgres_{}k", events / 1000);
            put(&scaled, figures.audit_query);
            absent.push((
                "audit_query_p99_ms_postgres",
                format!(
                    "quick mode fills {} events, reported as {scaled}; the full run fills \
                     {FULL_POSTGRES_AUDIT_EVENTS}",
                    events
                ),
            ));
        }
        put("audit_verify_events_per_s_postgres", figures.audit_verify);
        put("takeover_ready_100k_s", figures.takeover);
        put("failover_s", figures.failover.0);
        put("failover_s_max", figures.failover.1);
    }
    for (name, reason) in absent {
        println!("{name:<28} {:>12}  ({reason})", "null");
        figures.insert(name.to_owned(), serde_json::Value::Null);
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

/// What the `postgres` section measures.
struct PostgresFigures {
    rtt: (f64, f64),
    grants_per_s: f64,
    grants_per_s_unbatched: f64,
    raw_commits_per_s: f64,
    expiry_burst: f64,
    audit_query: f64,
    audit_verify: f64,
    takeover: f64,
    /// Median and slowest.
    failover: (f64, f64),
}

/// The store in database `name` of `cluster` (made here), reached over its Unix socket.
async fn postgres_store(cluster: &pg::Cluster, name: &str) -> elevate::store::Location {
    cluster.sql(&format!("CREATE DATABASE {name}")).await;
    #[derive(serde::Deserialize)]
    struct File {
        store: elevate::config::StoreConfig,
    }
    let file: File = toml::from_str(&format!(
        "[store]\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\ndatabase = \"{name}\"\nuser = \"postgres\"\n",
        cluster.socket_dir().display(),
        cluster.port()
    ))
    .unwrap();
    elevate::store::Location::from_config(&file.store).unwrap()
}

/// Events in the PostgreSQL store's audit log for the query and verify figures.
fn postgres_audit_events(sizes: Sizes) -> usize {
    sizes.audit_events.min(FULL_POSTGRES_AUDIT_EVENTS)
}

async fn postgres_figures(sizes: Sizes) -> PostgresFigures {
    let cluster = pg::Cluster::start();
    // Durable, as a production server is (the test clusters trade that for speed).
    for setting in [
        "fsync = on",
        "synchronous_commit = on",
        "full_page_writes = on",
    ] {
        cluster.sql(&format!("ALTER SYSTEM SET {setting}")).await;
    }
    cluster.sql("SELECT pg_reload_conf()").await;

    let env = Env::new(1, sizes.rtt_samples).on(Some(postgres_store(&cluster, "latency").await));
    let daemon = env.start(StoreOptions::default().max_batch).await;
    let mut client = daemon.client(&principal(0)).await;
    let rtt = grant_rtts(&mut client, sizes.rtt_samples).await;
    daemon.stop().await;

    let store = postgres_store(&cluster, "throughput").await;
    let grants_per_s =
        sustained_grants(StoreOptions::default().max_batch, false, sizes, Some(store)).await;
    let store = postgres_store(&cluster, "unbatched").await;
    let grants_per_s_unbatched = sustained_grants(1, false, sizes, Some(store)).await;
    let raw_commits_per_s = postgres_raw_commits_per_s(&cluster, sizes.raw_commits).await;
    let store = postgres_store(&cluster, "expiry").await;
    let expiry_burst = expiry_burst(sizes.burst, Some(store)).await;

    let store = postgres_store(&cluster, "audit").await;
    let (audit_query, audit_verify) =
        audit_figures(postgres_audit_events(sizes), Some(store)).await;

    // A takeover: what a standby does once it holds the leadership — open the store, rebuild
    // the wheel from the deadlines (100,000 active leases), recover, start serving.
    const LEASES: usize = 100_000;
    const PRINCIPALS: usize = 1000;
    const RESOURCES: usize = 100;
    let env = Env::with_certificates(PRINCIPALS, 1, RESOURCES)
        .on(Some(postgres_store(&cluster, "takeover").await));
    let daemon = env.start(StoreOptions::default().max_batch).await;
    let template = daemon.granted_template().await;
    let first_end = env.clock.now().saturating_add(Duration::from_secs(86_400));
    let seeded = seed_leases(
        &daemon.store,
        &template,
        LEASES,
        PRINCIPALS,
        RESOURCES,
        first_end,
        Duration::from_secs(86_400),
    )
    .await;
    println!("  (seeded {LEASES} leases in PostgreSQL at {seeded:.0}/s)");
    daemon.stop().await;
    let started = Instant::now();
    let daemon = env.start(StoreOptions::default().max_batch).await;
    let takeover = started.elapsed().as_secs_f64();
    assert!(daemon.count(StateKind::Active).await > LEASES as u64);
    daemon.stop().await;
    let failover = failovers(&env, &cluster, "takeover", FAILOVERS).await;
    PostgresFigures {
        rtt,
        grants_per_s,
        grants_per_s_unbatched,
        raw_commits_per_s,
        expiry_burst,
        audit_query,
        audit_verify,
        takeover,
        failover,
    }
}

/// Bare durable commits of one small row each on `cluster`, one transaction each, over one
/// connection: the database's fsync limit, as `raw_commits_per_s` is redb's.
async fn postgres_raw_commits_per_s(cluster: &pg::Cluster, n: usize) -> f64 {
    cluster.sql("CREATE DATABASE raw").await;
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(cluster.socket_dir())
        .port(cluster.port())
        .user("postgres")
        .dbname("raw");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE t (k bigint PRIMARY KEY, v bigint NOT NULL)")
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO t (k, v) VALUES ($1, $1)")
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..n as i64 {
        // Outside a transaction block each statement commits (and waits for its fsync).
        client.execute(&insert, &[&i]).await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// An `elevated` node process, killed with SIGKILL when dropped (a panicking run leaves none).
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Failovers measured per run.
const FAILOVERS: usize = 3;

/// The leadership lease of the failover figure's nodes.
const FAILOVER_LEASE: &str = "3s";

/// Two real `elevated` nodes on the store `database` of `cluster` (with its 100,000 leases):
/// `samples` times the leader is killed with SIGKILL and the time until a grant succeeds
/// through the CLI's client given both nodes is taken; the killed node then comes back as a
/// standby. Returns the median and the slowest, in seconds.
async fn failovers(env: &Env, cluster: &pg::Cluster, database: &str, samples: usize) -> (f64, f64) {
    let root = &env.layout.root;
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let configs: Vec<PathBuf> = ["a", "b"]
        .iter()
        .zip(&ports)
        .map(|(node, port)| {
            let file = root.join(format!("{node}.toml"));
            std::fs::write(
                &file,
                format!(
                    "listen = \"127.0.0.1:{port}\"\nallow_root = true\n\
                     [tls]\nca = \"certs/ca.crt\"\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n\
                     [store]\nkind = \"postgres\"\nhost = \"{socket}\"\nport = {pg}\ndatabase = \"{database}\"\nuser = \"postgres\"\n\
                     [cluster]\nnode = \"{node}\"\nadvertise = \"https://127.0.0.1:{port}\"\nlease = \"{FAILOVER_LEASE}\"\n\
                     [policy]\npolicy = \"policy.toml\"\ndirectory = \"directory.toml\"\n\
                     [audit]\nkey = \"audit.key\"\n\
                     [provisioners.files]\nkind = \"file\"\ndir = \"targets\"\n",
                    socket = cluster.socket_dir().display(),
                    pg = cluster.port(),
                ),
            )
            .unwrap();
            file
        })
        .collect();
    let start = |index: usize| {
        std::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(["serve", "--config"])
            .arg(&configs[index])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(Node)
            .unwrap()
    };
    let endpoints = ports
        .iter()
        .map(|port| format!("https://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let files = ClientFiles {
        ca: env.layout.certs.0.join("ca.crt"),
        cert: env.layout.certs.0.join("p0.crt"),
        key: env.layout.certs.0.join("p0.key"),
    };
    let mut nodes = vec![Some(start(0)), None];
    // The first leads before the second stands by.
    let mut client = client::connect(&endpoints, &files).await.unwrap();
    submit(&mut client, "auto-1").await;
    nodes[1] = Some(start(1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut taken = Vec::new();
    for sample in 0..samples {
        // Which one leads, as the leadership row says.
        let (db, connection) = {
            let mut config = tokio_postgres::Config::new();
            config
                .host_path(cluster.socket_dir())
                .port(cluster.port())
                .user("postgres")
                .dbname(database);
            config.connect(tokio_postgres::NoTls).await.unwrap()
        };
        tokio::spawn(connection);
        let node: String = db
            .query_one(
                "SELECT node FROM elevate_leader WHERE expires_at > clock_timestamp()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let leader = usize::from(node == "b");
        let killed = nodes[leader].take().unwrap();
        let started = Instant::now();
        drop(killed);
        let mut client = client::connect(&endpoints, &files).await.unwrap();
        let granted = submit(&mut client, &format!("auto-{}", 2 + sample)).await;
        taken.push(started.elapsed());
        println!(
            "  (failover {}: {:.2} s)",
            sample + 1,
            started.elapsed().as_secs_f64()
        );
        assert_eq!(granted.state, pb::RequestState::Active as i32);
        nodes[leader] = Some(start(leader));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(nodes);
    let slowest = taken.iter().max().unwrap().as_secs_f64();
    (percentile(&mut taken, 0.5) / 1000.0, slowest)
}

/// The bearer token of the benchmark's SCIM endpoint.
const SCIM_TOKEN: &str = "bench-token-0123456789abcdef0123456789abcdef";
const SCIM_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const SCIM_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// An identity provider's SCIM client: HTTPS trusting the daemon's CA, a connection per call
/// (as provisioning jobs often do).
struct Idp {
    address: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

impl Idp {
    fn new(address: std::net::SocketAddr, certs: &std::path::Path) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in elevate::tls::load_certs(&certs.join("ca.crt")).unwrap() {
            roots.add(cert).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            address,
            config: Arc::new(config),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        use http_body_util::BodyExt;
        let tcp = tokio::net::TcpStream::connect(self.address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(format!("/scim/v2{path}"))
            .header("host", "localhost")
            .header("authorization", format!("Bearer {SCIM_TOKEN}"))
            .header("content-type", "application/scim+json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }
}
