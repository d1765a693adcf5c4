//! Starts the real daemon in-process on 127.0.0.1:0 with dev-mode certificates, policy and
//! directory in a temporary directory, a manual clock, and a recording provisioner wrapped
//! around the real `file` provisioner.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use elevate::Backoff;
use elevate::broker::{Broker, Settings};
use elevate::cli::client::{self, ClientFiles, Clients};
use elevate::clock::ManualClock;
use elevate::dev::{self, Layout};
use elevate::model::ResourceName;
use elevate::model::{RequestId, Timestamp};
use elevate::proto::v1 as pb;
use elevate::provision::{
    BoxFuture, FileProvisioner, Granted, Holding, LeaseTarget, ProvisionError, Provisioner,
};
use elevate::server::Server;
use tokio::sync::oneshot;

/// Wraps the file provisioner: counts calls and fails the next N grants, revokes or extensions
/// on demand.
#[derive(Debug)]
pub struct Recording {
    files: FileProvisioner,
    pub grants: AtomicU32,
    pub revokes: AtomicU32,
    pub fail_grants: AtomicU32,
    pub fail_revokes: AtomicU32,
    pub fail_extends: AtomicU32,
    /// Milliseconds every grant takes (real time), to catch it in flight.
    pub grant_delay_ms: AtomicU64,
    /// The next revokes to hang (a target that stopped answering) until [`Recording::release`]
    /// lets them go on.
    pub hang_revokes: AtomicU32,
    released: tokio::sync::Semaphore,
}

impl Recording {
    fn new(dir: PathBuf) -> Self {
        Self {
            files: FileProvisioner::new(dir),
            grants: AtomicU32::new(0),
            revokes: AtomicU32::new(0),
            fail_grants: AtomicU32::new(0),
            fail_revokes: AtomicU32::new(0),
            fail_extends: AtomicU32::new(0),
            grant_delay_ms: AtomicU64::new(0),
            hang_revokes: AtomicU32::new(0),
            released: tokio::sync::Semaphore::new(0),
        }
    }

    /// Lets `n` hanging revokes go on.
    pub fn release(&self, n: usize) {
        self.released.add_permits(n);
    }

    fn take_failure(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Provisioner for Recording {
    fn grant<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        Box::pin(async move {
            self.grants.fetch_add(1, Ordering::SeqCst);
            let delay = self.grant_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if Self::take_failure(&self.fail_grants) {
                return Err(ProvisionError("target unreachable (injected)".into()));
            }
            self.files.grant(target).await
        })
    }

    fn revoke<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            self.revokes.fetch_add(1, Ordering::SeqCst);
            if Self::take_failure(&self.hang_revokes) {
                let _ = self.released.acquire().await.map(|permit| permit.forget());
            }
            if Self::take_failure(&self.fail_revokes) {
                return Err(ProvisionError("target unreachable (injected)".into()));
            }
            self.files.revoke(target).await
        })
    }

    fn extend<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<elevate::provision::Granted, ProvisionError>> {
        Box::pin(async move {
            if Self::take_failure(&self.fail_extends) {
                return Err(ProvisionError("new end refused (injected)".into()));
            }
            self.files.extend(target).await
        })
    }

    fn list<'a>(
        &'a self,
        resources: &'a [ResourceName],
    ) -> BoxFuture<'a, Result<Option<Vec<Holding>>, ProvisionError>> {
        self.files.list(resources)
    }

    fn remove<'a>(&'a self, holding: &'a Holding) -> BoxFuture<'a, Result<(), ProvisionError>> {
        self.files.remove(holding)
    }
}

/// A change to the daemon's options.
pub type Tweak = Box<dyn Fn(&mut elevate::server::Options) + Send>;

/// A state directory, clock and provisioner that outlive daemon restarts.
pub struct Env {
    /// Events are also posted here when set (with a CA to trust for https).
    pub webhook: std::sync::Mutex<Option<(String, Option<PathBuf>)>>,
    /// Overrides how long undelivered notifications are kept.
    pub give_up_after: std::sync::Mutex<Option<Duration>>,
    /// Provisioners added to the daemon's `files` (from the next start on).
    pub provisioners: std::sync::Mutex<Vec<(String, Arc<dyn Provisioner>)>>,
    /// Changes to the daemon's options (from the next start on).
    pub tweaks: std::sync::Mutex<Vec<Tweak>>,
    /// The PostgreSQL database the daemon's store lives in, when the suite runs on that
    /// store ([`store_under_test`]); made at the first start.
    database: std::sync::Mutex<Option<String>>,
    /// Kept for its Drop: the state directory lives as long as the environment.
    _dir: tempfile::TempDir,
    pub layout: Layout,
    pub clock: ManualClock,
    pub targets: Arc<Recording>,
}

/// The retry delays of test daemons: the clock must advance past `RETRY_MAX` to be sure a
/// retry is due.
pub const RETRY_MAX: Duration = Duration::from_secs(8);

impl Env {
    pub fn new() -> Self {
        Self::starting_at(ManualClock::starting_now())
    }

    /// An environment whose clock starts at `clock`'s time.
    pub fn starting_at(clock: ManualClock) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = dev::prepare(dir.path()).unwrap();
        let targets = Arc::new(Recording::new(layout.targets.clone()));
        Self {
            webhook: std::sync::Mutex::new(None),
            give_up_after: std::sync::Mutex::new(None),
            provisioners: std::sync::Mutex::new(Vec::new()),
            tweaks: std::sync::Mutex::new(Vec::new()),
            database: std::sync::Mutex::new(None),
            _dir: dir,
            layout,
            clock,
            targets,
        }
    }

    /// Posts every event to `url` too (from the next start on).
    pub fn webhook(&self, url: &str) {
        *self.webhook.lock().unwrap() = Some((url.to_owned(), None));
    }

    /// Posts every event to `url` too, trusting `ca` (from the next start on).
    pub fn webhook_trusting(&self, url: &str, ca: PathBuf) {
        *self.webhook.lock().unwrap() = Some((url.to_owned(), Some(ca)));
    }

    /// Events delivered to the dev-mode notifications file, in order.
    pub fn notifications(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.layout.notifications)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Waits until an event of `kind` about request `id` was delivered to the file; returns it.
    pub async fn delivered(&self, kind: &str, id: &str) -> serde_json::Value {
        until(&format!("a {kind} notification about {id}"), || async {
            self.notifications()
                .into_iter()
                .find(|e| e["kind"] == kind && e["request"]["id"] == id)
        })
        .await
    }

    /// How many events of `kind` about `id` were delivered to the file.
    pub fn count(&self, kind: &str, id: &str) -> usize {
        self.notifications()
            .iter()
            .filter(|e| e["kind"] == kind && e["request"]["id"] == id)
            .count()
    }

    /// The PostgreSQL server and database of this environment's store, when the suite runs on
    /// PostgreSQL and the daemon started once.
    pub fn postgres(&self) -> Option<(PostgresUnderTest, String)> {
        Some((store_under_test()?, self.database.lock().unwrap().clone()?))
    }

    /// The store in this environment's own database on `server` (made at the first call).
    async fn postgres_store(&self, server: &PostgresUnderTest) -> elevate::store::Location {
        let existing = self.database.lock().unwrap().clone();
        let database = match existing {
            Some(database) => database,
            None => {
                static NEXT: AtomicU32 = AtomicU32::new(1);
                let database = format!(
                    "elevate_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::SeqCst)
                );
                let (client, connection) = server
                    .config("postgres")
                    .connect(tokio_postgres::NoTls)
                    .await
                    .unwrap();
                let task = tokio::spawn(connection);
                client
                    .batch_execute(&format!("CREATE DATABASE {database}"))
                    .await
                    .unwrap();
                drop(client);
                let _ = task.await;
                *self.database.lock().unwrap() = Some(database.clone());
                database
            }
        };
        server.location(&database)
    }

    /// Changes the daemon's options from the next start on.
    pub fn tweak(&self, tweak: impl Fn(&mut elevate::server::Options) + Send + 'static) {
        self.tweaks.lock().unwrap().push(Box::new(tweak));
    }

    /// Makes the SCIM directory (in the store) the directory of record, pushed to a SCIM
    /// endpoint that accepts `token` (from the next start on).
    pub fn scim(self, token: &str) -> Self {
        let file = self.layout.root.join("scim.token");
        std::fs::write(&file, token).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        self.tweak(move |options| {
            options.directory = None;
            options.scim_token = Some(file.clone());
        });
        self
    }

    /// Replaces the directory file before the daemon starts.
    pub fn directory(self, text: &str) -> Self {
        std::fs::write(&self.layout.directory, text).unwrap();
        self
    }

    /// Replaces the policy file before the daemon starts.
    pub fn policy(self, text: &str) -> Self {
        std::fs::write(&self.layout.policy, text).unwrap();
        self
    }

    pub async fn start(&self) -> Daemon {
        self.try_start().await.unwrap()
    }

    /// Starts the daemon, or says why it could not be built (a store still held by a daemon
    /// that is going away, for instance).
    pub async fn try_start(&self) -> Result<Daemon, elevate::server::BuildError> {
        let mut options = dev::options(&self.layout, Arc::new(self.clock.clone()));
        if let Some(server) = store_under_test() {
            options.store = self.postgres_store(&server).await;
        }
        options.provisioners.insert("files", self.targets.clone());
        for (name, provisioner) in self.provisioners.lock().unwrap().iter() {
            options
                .provisioners
                .insert(name.clone(), provisioner.clone());
        }
        options.settings = Settings {
            grant_attempts: 3,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: RETRY_MAX,
            },
            ..options.settings
        };
        options.settings.delivery.backoff = Backoff {
            initial: Duration::from_secs(1),
            max: RETRY_MAX,
        };
        if let Some(give_up) = *self.give_up_after.lock().unwrap() {
            options.settings.delivery.give_up_after = give_up;
        }
        if let Some((url, ca)) = self.webhook.lock().unwrap().clone() {
            let hook = elevate::notify::WebhookNotifier::new(
                &url,
                elevate::notify::Format::Json,
                &Default::default(),
                ca.as_deref(),
                Duration::from_secs(2),
            )
            .unwrap();
            options.notifiers.insert("hook", Arc::new(hook));
            options
                .settings
                .routing
                .routes
                .push(elevate::notify::Route {
                    events: vec!["*".into()],
                    min_priority: elevate::notify::Priority::Normal,
                    notifier: "hook".into(),
                });
        }
        options.shutdown_grace = Duration::from_secs(5);
        // Tests drive many requests per principal in moments; the tests of the rate limits
        // set the rates they prove.
        let unlimited: elevate::model::Rate = "1000000/1s".parse().unwrap();
        options.settings.rate_limits = elevate::broker::RateLimits {
            submit: unlimited,
            extend: unlimited,
        };
        for tweak in self.tweaks.lock().unwrap().iter() {
            tweak(&mut options);
        }
        // Small, so that tests see several checkpoints.
        options.audit.checkpoint_every = 5;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = metrics_listener.local_addr().unwrap();
        let scim_on = options.scim_token.is_some();
        let mut server = Server::build(options).await?.with_metrics(metrics_listener);
        let mut scim = None;
        if scim_on {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            scim = Some(listener.local_addr().unwrap());
            server = server.with_scim(listener)?;
        }
        let broker = server.broker().clone();
        let store = server.store().clone();
        let expiry = server.expiry().clone();
        let reloader = server.reloader();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        Ok(Daemon {
            addr,
            metrics,
            scim,
            broker,
            store,
            expiry,
            reloader,
            stop: Some(stop),
            task: Some(task),
            certs: self.layout.certs.0.clone(),
        })
    }

    /// Holders listed in the target file of `resource`.
    pub fn holders(&self, resource: &str) -> Vec<String> {
        match std::fs::read_to_string(self.layout.targets.join(resource)) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn grants(&self) -> u32 {
        self.targets.grants.load(Ordering::SeqCst)
    }
}

pub struct Daemon {
    pub addr: SocketAddr,
    /// Where it serves Prometheus metrics (plain HTTP).
    pub metrics: SocketAddr,
    /// Where it serves SCIM, when the directory of record is SCIM's.
    pub scim: Option<SocketAddr>,
    pub broker: Broker,
    /// The daemon's store (for inspection and fault injection).
    pub store: elevate::store::Store,
    /// The daemon's timer wheel (for inspection).
    pub expiry: elevate::Expiry,
    /// Re-reads the TLS files, as SIGHUP does.
    pub reloader: elevate::Reloader,
    pub certs: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), elevate::server::ServeError>>>,
}

impl Daemon {
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn files(&self, name: &str) -> ClientFiles {
        ClientFiles {
            ca: self.certs.join("ca.crt"),
            cert: self.certs.join(format!("{name}.crt")),
            key: self.certs.join(format!("{name}.key")),
        }
    }

    /// A client presenting the demo certificate of `name`.
    pub async fn client(&self, name: &str) -> Clients {
        client::connect(&self.endpoint(), &self.files(name))
            .await
            .unwrap()
    }

    /// Graceful shutdown: in-flight work finishes, the store closes.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Every audit event of request `id`, oldest first.
    pub async fn events(&self, id: &str) -> Vec<elevate::audit::Event> {
        let id: RequestId = id.parse().unwrap();
        self.store.read(move |r| r.events_of(id)).await.unwrap()
    }

    /// The actions of request `id`'s audit events, in order.
    pub async fn actions(&self, id: &str) -> Vec<String> {
        self.events(id)
            .await
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    /// Asserts that the timer of `id` is still set for `deadline`, after the wheel has seen
    /// the clock as it is now: two round trips through its task guarantee a poll in between,
    /// so a timer that should have fired would be gone.
    pub async fn assert_still_scheduled(&self, id: &str, deadline: Timestamp) {
        let id: RequestId = id.parse().unwrap();
        self.expiry.inspect(id).await;
        let (_, scheduled) = self.expiry.inspect(id).await;
        assert_eq!(
            scheduled,
            Some(deadline),
            "the timer of {id} fired or moved"
        );
    }

    /// Every audit event.
    pub async fn all_events(&self) -> Vec<elevate::audit::Event> {
        self.store.read(|r| r.events(1, usize::MAX)).await.unwrap()
    }
}

/// A bare gRPC channel to `endpoint` trusting `ca`, presenting `identity` (certificate, key)
/// when given: for clients that the CLI's connector would not make.
pub async fn channel(
    endpoint: &str,
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<tonic::transport::Channel, String> {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    Channel::from_shared(endpoint.to_owned())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// Breaks glass as the client's principal.
pub async fn break_glass(
    clients: &mut elevate::cli::client::Clients,
    resource: &str,
    duration: &str,
    reason: &str,
    incident: &str,
) -> Result<pb::AccessRequest, tonic::Status> {
    clients
        .break_glass
        .break_glass(pb::BreakGlassRequest {
            ssh_key: String::new(),
            resource: resource.into(),
            duration: duration.into(),
            reason: reason.into(),
            incident: incident.into(),
        })
        .await
        .map(|r| r.into_inner().request.unwrap())
}

/// Closes a break-glass review.
pub async fn review(
    clients: &mut elevate::cli::client::Clients,
    id: &str,
    verdict: &str,
    notes: &str,
) -> Result<pb::AccessRequest, tonic::Status> {
    clients
        .break_glass
        .submit_review(pb::SubmitReviewRequest {
            id: id.into(),
            verdict: verdict.into(),
            notes: notes.into(),
        })
        .await
        .map(|r| r.into_inner().request.unwrap())
}

/// Submits a request and returns it.
pub async fn request(
    clients: &mut Clients,
    resource: &str,
    duration: &str,
    reason: &str,
    ticket: &str,
) -> Result<pb::AccessRequest, tonic::Status> {
    clients
        .access
        .submit_request(pb::SubmitRequestRequest {
            ssh_key: String::new(),
            resource: resource.into(),
            duration: duration.into(),
            reason: reason.into(),
            ticket: ticket.into(),
        })
        .await
        .map(|r| r.into_inner().request.unwrap())
}

/// The requests `clients`' principal sees, newest first (the first page).
pub async fn listed(clients: &mut Clients) -> Vec<pb::AccessRequest> {
    clients
        .access
        .list_requests(pb::ListRequestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .requests
}

/// Submits `ask` with `key` as its idempotency key.
pub async fn request_keyed(
    clients: &mut Clients,
    ask: pb::SubmitRequestRequest,
    key: &str,
) -> Result<pb::AccessRequest, tonic::Status> {
    clients
        .access
        .submit_request(keyed(ask, key))
        .await
        .map(|r| r.into_inner().request.unwrap())
}

/// `message` sent with `key` as its idempotency key.
pub fn keyed<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("idempotency-key", key.parse().unwrap());
    request
}

pub async fn status(clients: &mut Clients, id: &str) -> pb::AccessRequest {
    clients
        .access
        .get_request(pb::GetRequestRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

pub async fn approve(clients: &mut Clients, id: &str) -> Result<pb::AccessRequest, tonic::Status> {
    clients
        .approval
        .approve(pb::ApproveRequest {
            id: id.into(),
            comment: String::new(),
        })
        .await
        .map(|r| r.into_inner().request.unwrap())
}

pub async fn deny(
    clients: &mut Clients,
    id: &str,
    reason: &str,
) -> Result<pb::AccessRequest, tonic::Status> {
    clients
        .approval
        .deny(pb::DenyRequest {
            id: id.into(),
            reason: reason.into(),
        })
        .await
        .map(|r| r.into_inner().request.unwrap())
}

pub async fn extend(
    clients: &mut Clients,
    id: &str,
    by: &str,
    reason: &str,
) -> Result<pb::AccessRequest, tonic::Status> {
    clients
        .access
        .extend_lease(pb::ExtendLeaseRequest {
            id: id.into(),
            by: by.into(),
            reason: reason.into(),
        })
        .await
        .map(|r| r.into_inner().request.unwrap())
}

pub async fn admin_revoke(
    clients: &mut Clients,
    id: &str,
    reason: &str,
) -> Result<pb::AccessRequest, tonic::Status> {
    clients
        .admin
        .revoke_lease(pb::RevokeLeaseRequest {
            id: id.into(),
            reason: reason.into(),
        })
        .await
        .map(|r| r.into_inner().request.unwrap())
}

pub async fn release(clients: &mut Clients, id: &str) -> Result<pb::AccessRequest, tonic::Status> {
    clients
        .access
        .release_lease(pb::ReleaseLeaseRequest { id: id.into() })
        .await
        .map(|r| r.into_inner().request.unwrap())
}

pub fn state(request: &pb::AccessRequest) -> &'static str {
    elevate::cli::output::state_word(request.state)
}

/// The millisecond timestamp as a `Timestamp`.
pub fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(u64::try_from(ms).unwrap())
}

/// Waits (polling every 10 ms, at most 10 s) until `probe` returns something. This waits for
/// the daemon's asynchronous work after the manual clock moved; it never waits out a lease.
pub async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until request `id` is in `wanted` state and returns it.
pub async fn until_state(clients: &Clients, id: &str, wanted: &str) -> pb::AccessRequest {
    until(&format!("{id} to become {wanted}"), || {
        let mut clients = clients.clone();
        let id = id.to_owned();
        async move {
            let request = status(&mut clients, &id).await;
            (state(&request) == wanted).then_some(request)
        }
    })
    .await
}

/// The demo directory with the manager also in the security group: eligible at both stages of
/// prod-db-admin, so that "one person counts once" is put to the test.
pub const DIRECTORY: &str = r#"
[principals.engineer]
groups = ["engineering"]
manager = "manager"
[principals.manager]
groups = ["engineering-managers", "security"]
[principals.security]
groups = ["security"]
[principals.auditor]
groups = ["auditors"]
[principals.oncall]
groups = ["sre"]
manager = "manager"
[principals.admin]
groups = ["admins"]
"#;

/// Offboards `who` as the client's principal.
pub async fn offboard(clients: &mut Clients, who: &str, reason: &str) -> Result<(), tonic::Status> {
    clients
        .admin
        .offboard(pb::OffboardRequest {
            principal: who.into(),
            reason: reason.into(),
        })
        .await
        .map(drop)
}

/// Reinstates `who` as the client's principal.
pub async fn reinstate(clients: &mut Clients, who: &str) -> Result<(), tonic::Status> {
    clients
        .admin
        .reinstate(pb::ReinstateRequest {
            principal: who.into(),
            reason: "came back".into(),
        })
        .await
        .map(drop)
}

/// Reconciles the targets of `resource` (all of them when empty); the corrections made.
pub async fn reconcile(
    clients: &mut Clients,
    resource: &str,
) -> Result<Vec<String>, tonic::Status> {
    clients
        .admin
        .reconcile(pb::ReconcileRequest {
            resource: resource.into(),
        })
        .await
        .map(|r| r.into_inner().corrections)
}

/// Who the daemon says `clients` is.
pub async fn who_am_i(clients: &mut Clients) -> Result<String, tonic::Status> {
    clients
        .access
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner().principal)
}

/// The metrics exposition of `daemon`, as a scraper on a fresh connection gets it.
pub async fn metrics_text(daemon: &Daemon) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(daemon.metrics)
        .await
        .unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    text
}

/// A configuration file in `at` for a daemon on the dev layout of `env` (its certificates,
/// policy, directory, audit key and target files) with the `[store]` section `store`.
pub fn configuration(env: &Env, store: &str, at: &Path) -> PathBuf {
    let root = &env.layout.root;
    let file = at.join("elevated.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [tls]\nca = \"{root}/certs/ca.crt\"\ncert = \"{root}/certs/server.crt\"\nkey = \"{root}/certs/server.key\"\n\
             {store}\
             [policy]\npolicy = \"{root}/policy.toml\"\ndirectory = \"{root}/directory.toml\"\n\
             [audit]\nkey = \"{root}/audit.key\"\n\
             [provisioners.files]\nkind = \"file\"\ndir = \"{root}/targets\"\n",
            root = root.display(),
        ),
    )
    .unwrap();
    file
}

/// A PostgreSQL server the suite's daemons keep their stores in, reached over its Unix socket
/// as the superuser (trust authentication).
#[derive(Clone, Debug)]
pub struct PostgresUnderTest {
    pub socket_dir: PathBuf,
    pub port: u16,
}

/// Where the store tests run on: `ELEVATE_TEST_STORE=postgres:SOCKET_DIR:PORT` puts every
/// daemon's store in a database of its own on that server; unset, each uses a redb file.
pub const STORE_UNDER_TEST: &str = "ELEVATE_TEST_STORE";

/// The PostgreSQL server of [`STORE_UNDER_TEST`], when the suite runs on PostgreSQL.
pub fn store_under_test() -> Option<PostgresUnderTest> {
    let value = std::env::var(STORE_UNDER_TEST).ok()?;
    let rest = value
        .strip_prefix("postgres:")
        .unwrap_or_else(|| panic!("{STORE_UNDER_TEST}={value}: expected postgres:SOCKET_DIR:PORT"));
    let (dir, port) = rest.rsplit_once(':').unwrap();
    Some(PostgresUnderTest {
        socket_dir: PathBuf::from(dir),
        port: port.parse().unwrap(),
    })
}

impl PostgresUnderTest {
    /// The value of [`STORE_UNDER_TEST`] naming this server.
    pub fn variable(&self) -> String {
        format!("postgres:{}:{}", self.socket_dir.display(), self.port)
    }

    /// Connection settings for `database`.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname(database);
        config
    }

    /// The `[store]` section of a daemon keeping its store in `database`.
    pub fn section(&self, database: &str) -> String {
        format!(
            "[store]\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\ndatabase = \"{database}\"\nuser = \"postgres\"\n",
            self.socket_dir.display(),
            self.port
        )
    }

    /// The store in `database`.
    pub fn location(&self, database: &str) -> elevate::store::Location {
        #[derive(serde::Deserialize)]
        struct File {
            store: elevate::config::StoreConfig,
        }
        let file: File = toml::from_str(&self.section(database)).unwrap();
        elevate::store::Location::from_config(&file.store).unwrap()
    }
}
