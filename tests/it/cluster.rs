//! Three `elevated` processes on one PostgreSQL store: one leads, two stand by; the leader is
//! killed with SIGKILL in the middle of the work and a standby takes over within the lease.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use elevate::cli::client::Clients;
use elevate::proto::v1 as pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::Code;

use super::harness::*;
use super::pg::Cluster;

/// The leadership lease of the test nodes.
const LEASE: Duration = Duration::from_secs(2);

/// A cluster of nodes sharing one state directory (certificates, policy, directory, audit
/// key, target files) and one database.
struct Nodes {
    root: PathBuf,
    configs: Vec<(String, PathBuf, String)>,
    /// Where each node serves its metrics.
    metrics: Vec<std::net::SocketAddr>,
    children: Vec<Option<Child>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nodes {
    async fn new(pg: &Cluster, root: &Path, names: &[&str]) -> Self {
        let superuser = pg.superuser().await;
        superuser
            .batch_execute("CREATE DATABASE elevate")
            .await
            .unwrap();
        let state = root.join("state");
        let layout = elevate::dev::prepare(&state).unwrap();
        let policy = std::fs::read_to_string(&layout.policy).unwrap().replace(
            "default_duration = \"1h\"\nmax_duration = \"8h\"\nauto_approve = true",
            "default_duration = \"1h\"\nmin_duration = \"1s\"\nmax_duration = \"8h\"\nauto_approve = true",
        );
        // SSH certificates are not served by a cluster yet: the demo's prod-ssh goes.
        let policy = match policy.find("[resources.prod-ssh]") {
            Some(at) => policy[..at].to_owned(),
            None => policy,
        };
        std::fs::write(&layout.policy, policy).unwrap();
        // The example hook, logging every call with the node that made it.
        let hook = root.join("hook.sh");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\necho \"$NODE $1 $2\" >> \"$CALLS\"\n\
                 if [ \"$1\" = revoke ] && [ -e fail-revokes ]; then exit 1; fi\nexec {} \"$@\"\n",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("examples/hooks/holders.sh")
                    .display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut configs = Vec::new();
        let mut metrics = Vec::new();
        for name in names {
            let port = free_port();
            let metrics_port = free_port();
            metrics.push(std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port)));
            let endpoint = format!("https://127.0.0.1:{port}");
            let config = root.join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\nallow_root = true\n\
                     [tls]\nca = \"state/certs/ca.crt\"\ncert = \"state/certs/server.crt\"\nkey = \"state/certs/server.key\"\n\
                     [store]\nkind = \"postgres\"\nhost = \"{socket}\"\nport = {pg_port}\ndatabase = \"elevate\"\nuser = \"postgres\"\n\
                     [cluster]\nnode = \"{name}\"\nadvertise = \"{endpoint}\"\nlease = \"{lease}s\"\n\
                     [workflow]\nretry_initial = \"200ms\"\nretry_max = \"1s\"\n\
                     [policy]\npolicy = \"state/policy.toml\"\ndirectory = \"state/directory.toml\"\n\
                     [audit]\nkey = \"state/audit.key\"\n\
                     [provisioners.files]\nkind = \"exec\"\nprogram = \"hook.sh\"\ntimeout = \"10s\"\n\
                     env = {{ NODE = \"{name}\", CALLS = \"calls.log\", HOLDERS_DIR = \"state/targets\" }}\n",
                    socket = pg.socket_dir().display(),
                    pg_port = pg.port(),
                    lease = LEASE.as_secs(),
                ),
            )
            .unwrap();
            configs.push((name.to_string(), config, endpoint));
        }
        // The schema and the shared audit key, made once before the nodes start together.
        let init = std::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(["store", "init", "--config"])
            .arg(&configs[0].1)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        Self {
            root: root.to_path_buf(),
            children: configs.iter().map(|_| None).collect(),
            configs,
            metrics,
        }
    }

    /// Makes every node's directory of record the SCIM one, seeded from the demo directory
    /// file with `elevated directory import`; returns where each node serves SCIM.
    fn use_scim(&mut self) -> Vec<std::net::SocketAddr> {
        let token = self.root.join("scim.token");
        std::fs::write(&token, super::scim::TOKEN).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut addresses = Vec::new();
        for (_, config, _) in &self.configs {
            let port = free_port();
            addresses.push(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
            let text = std::fs::read_to_string(config).unwrap().replace(
                "directory = \"state/directory.toml\"",
                "directory = \"scim\"",
            );
            std::fs::write(
                config,
                format!(
                    "{text}[scim]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"scim.token\"\n"
                ),
            )
            .unwrap();
        }
        let import = std::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(["directory", "import", "--config"])
            .arg(&self.configs[0].1)
            .arg("--from")
            .arg(self.root.join("state/directory.toml"))
            .output()
            .unwrap();
        assert!(
            import.status.success(),
            "{}",
            String::from_utf8_lossy(&import.stderr)
        );
        addresses
    }

    /// [`Nodes::new`], every node started.
    async fn started(pg: &Cluster, root: &Path, names: &[&str]) -> Self {
        let mut nodes = Self::new(pg, root, names).await;
        for index in 0..names.len() {
            nodes.start(index).await;
        }
        nodes
    }

    async fn start(&mut self, index: usize) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(["serve", "--config"])
            .arg(&self.configs[index].1)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(self.root.join(format!("{}.log", self.configs[index].0)))
                    .unwrap(),
            ))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("listening on ") {
                    return;
                }
            }
            panic!("elevated exited before listening");
        })
        .await
        .unwrap();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.children[index] = Some(child);
    }

    fn endpoint(&self, index: usize) -> &str {
        &self.configs[index].2
    }

    /// A client of exactly node `index` (a standby's refusal is not followed).
    async fn client(&self, index: usize, name: &str) -> Clients {
        let certs = self.root.join("state/certs");
        elevate::cli::client::connect_to(
            self.endpoint(index),
            &elevate::cli::client::ClientFiles {
                ca: certs.join("ca.crt"),
                cert: certs.join(format!("{name}.crt")),
                key: certs.join(format!("{name}.key")),
            },
        )
        .await
        .unwrap()
    }

    /// Which running node leads, once one does: every other one refuses with the leader's
    /// address in `elevate-leader`.
    async fn leader(&self) -> usize {
        self.leader_except(None).await
    }

    /// [`Nodes::leader`], not asking node `except` (a paused one would not answer).
    async fn leader_except(&self, except: Option<usize>) -> usize {
        until("a leader", || async {
            let mut leader = None;
            for index in 0..self.configs.len() {
                if self.children[index].is_none() || Some(index) == except {
                    continue;
                }
                let mut engineer = self.client(index, "engineer").await;
                match engineer
                    .access
                    .list_requests(pb::ListRequestsRequest::default())
                    .await
                {
                    Ok(_) => leader = Some(index),
                    Err(status) if status.code() == Code::Unavailable => {
                        if let Some(hint) = status.metadata().get("elevate-leader") {
                            let hint = hint.to_str().unwrap();
                            assert!(self.configs.iter().any(|(_, _, e)| e == hint), "{hint}");
                        }
                    }
                    // A connection cut while the node changes role (standby to leader).
                    Err(status) => assert!(
                        matches!(status.code(), Code::Unknown | Code::Cancelled),
                        "{status:?}"
                    ),
                }
            }
            leader
        })
        .await
    }

    fn kill(&mut self, index: usize) {
        let child = self.children[index].take().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
        std::mem::forget(child);
    }

    async fn stop_all(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
            let mut child = child;
            tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .unwrap()
                .unwrap();
        }
    }

    /// Node `index`'s cluster metrics, by name (checked by promtool).
    async fn cluster_metrics(&self, index: usize) -> std::collections::BTreeMap<String, u64> {
        let (status, _, body) = super::metrics::http(self.metrics[index], "GET", "/metrics").await;
        assert_eq!(status, 200, "{body}");
        super::metrics::promtool_accepts(&body);
        body.lines()
            .filter(|line| line.starts_with("elevate_cluster_"))
            .map(|line| {
                let (name, value) = line.rsplit_once(' ').unwrap();
                (name.to_owned(), value.parse().unwrap())
            })
            .collect()
    }

    /// `elevated audit verify --config` passes on the store: one chain across the epochs.
    fn audit_verifies(&self) {
        let verified = std::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(["audit", "verify", "--config"])
            .arg(&self.configs[0].1)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&verified.stdout);
        assert!(
            verified.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&verified.stderr)
        );
        assert!(stdout.contains("intact"), "{stdout}");
    }

    fn holders(&self, resource: &str) -> String {
        std::fs::read_to_string(self.root.join(format!("state/targets/{resource}.allow")))
            .unwrap_or_default()
    }

    /// The hook calls made so far, as `NODE ACTION PRINCIPAL` lines.
    fn calls(&self) -> String {
        std::fs::read_to_string(self.root.join("calls.log")).unwrap_or_default()
    }

    fn signal(&self, index: usize, signal: rustix::process::Signal) {
        let child = self.children[index].as_ref().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_within_the_lease_when_the_leader_is_killed() {
    let pg = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::started(&pg, dir.path(), &["a", "b", "c"]).await;
    let first = nodes.leader().await;
    // The admin sees the nodes; nobody else does.
    let mut admin = nodes.client(first, "admin").await;
    let nodes_seen = admin
        .admin
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nodes_seen.nodes.len(), 3, "{nodes_seen:?}");
    assert_eq!(nodes_seen.leader, nodes.configs[first].0);
    let leaders: Vec<_> = nodes_seen
        .nodes
        .iter()
        .filter(|n| n.role == "leader")
        .collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0].advertise, nodes.endpoint(first));
    assert!(
        nodes_seen
            .nodes
            .iter()
            .all(|n| n.epoch == nodes_seen.epoch && n.last_seen_ms > 0)
    );
    for index in 0..3 {
        // A standby learns the epoch when it next looks at the leadership (every beat).
        let metrics = until("the node's metrics to show the epoch", || async {
            let metrics = nodes.cluster_metrics(index).await;
            (metrics["elevate_cluster_epoch"] == nodes_seen.epoch).then_some(metrics)
        })
        .await;
        let leads = u64::from(index == first);
        assert_eq!(
            metrics["elevate_cluster_leader"], leads,
            "{index}: {metrics:?}"
        );
        assert_eq!(
            metrics["elevate_cluster_epoch"], nodes_seen.epoch,
            "{metrics:?}"
        );
        assert_eq!(
            metrics["elevate_cluster_failovers_total"], leads,
            "{metrics:?}"
        );
        assert_eq!(
            metrics["elevate_cluster_fenced_writes_total"], 0,
            "{metrics:?}"
        );
    }
    let mut engineer = nodes.client(first, "engineer").await;
    let refused = engineer
        .admin
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut oncall = nodes.client(first, "oncall").await;
    // A lease that ends during the failover, and one that outlives it.
    let short = request(&mut engineer, "staging-db", "3s", "", "")
        .await
        .unwrap();
    let long = request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&short), "active");
    assert_eq!(state(&long), "active");
    assert!(nodes.holders("staging-db").contains("engineer"));

    nodes.kill(first);
    let killed = Instant::now();
    let second = nodes.leader().await;
    let failover = killed.elapsed();
    assert_ne!(second, first);
    assert!(
        failover < LEASE * 4,
        "the standby took over after {failover:?} (lease {LEASE:?})"
    );
    let mut engineer = nodes.client(second, "engineer").await;
    // Every acknowledged transition is there; the lease that ended in the gap is revoked.
    let ended = until_state(&engineer, &short.id, "expired").await;
    assert_eq!(ended.id, short.id);
    assert!(!nodes.holders("staging-db").contains("engineer"));
    assert!(nodes.holders("staging-db").contains("oncall"));
    let mut oncall = nodes.client(second, "oncall").await;
    assert_eq!(state(&status(&mut oncall, &long.id).await), "active");
    // The new leader grants.
    let again = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&again), "active");

    // Each audit entry names the epoch and node that wrote it; each epoch, the node that took
    // it: the killed leader's entries are all of its epoch, the new leader's of the next.
    let db = pg.superuser_on("elevate").await;
    let epochs: Vec<(i64, String)> = db
        .query("SELECT epoch, node FROM elevate_epochs ORDER BY epoch", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let names = [
        nodes.configs[first].0.clone(),
        nodes.configs[second].0.clone(),
    ];
    assert_eq!(
        epochs
            .iter()
            .map(|(_, node)| node.clone())
            .collect::<Vec<_>>(),
        names,
        "{epochs:?}"
    );
    let writers: Vec<(i64, String)> = db
        .query(
            "SELECT DISTINCT epoch, node FROM elevate_audit ORDER BY epoch",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(writers, epochs);
    nodes.stop_all().await;
    nodes.audit_verifies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_makes_no_commit_and_no_target_call_after_it_resumes() {
    let pg = Cluster::start();
    pg.sql("ALTER SYSTEM SET log_statement = 'mod'").await;
    pg.sql("ALTER SYSTEM SET log_line_prefix = '%m [%a] '")
        .await;
    pg.sql("SELECT pg_reload_conf()").await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::started(&pg, dir.path(), &["a", "b", "c"]).await;
    let old = nodes.leader().await;
    let old_name = nodes.configs[old].0.clone();
    let mut engineer = nodes.client(old, "engineer").await;
    // A lease that ends while the leader is paused: both would revoke it.
    let short = request(&mut engineer, "staging-db", "3s", "", "")
        .await
        .unwrap();
    assert_eq!(state(&short), "active");
    assert!(
        nodes
            .calls()
            .contains(&format!("{old_name} grant engineer"))
    );

    // While it is paused the target refuses revokes, so the lease is still to be revoked
    // when the old leader resumes, with its end long past: it has work it must not do.
    std::fs::write(dir.path().join("fail-revokes"), "").unwrap();
    nodes.signal(old, rustix::process::Signal::STOP);
    let new = nodes.leader_except(Some(old)).await;
    assert_ne!(new, old);
    let mut engineer = nodes.client(new, "engineer").await;
    let new_name = nodes.configs[new].0.clone();
    until("the new leader to try the revoke", || async {
        nodes
            .calls()
            .contains(&format!("{new_name} revoke engineer"))
            .then_some(())
    })
    .await;

    // Everything from here on happens after the old leader resumed.
    let calls_before = nodes.calls().len();
    let log_before = pg.log().len();
    nodes.signal(old, rustix::process::Signal::CONT);
    // It stands by, naming the new leader.
    let leader_endpoint = nodes.endpoint(new).to_owned();
    until("the resumed leader to stand by", || {
        let nodes = &nodes;
        let wanted = leader_endpoint.clone();
        async move {
            let mut client = nodes.client(old, "engineer").await;
            let status = client
                .access
                .list_requests(pb::ListRequestsRequest::default())
                .await
                .err()?;
            (status.code() == Code::Unavailable
                && status
                    .metadata()
                    .get("elevate-standby")
                    .is_some_and(|standby| standby == "true")
                && status
                    .metadata()
                    .get("elevate-leader")
                    .is_some_and(|hint| hint.to_str().unwrap() == wanted))
            .then_some(())
        }
    })
    .await;
    let metrics = nodes.cluster_metrics(old).await;
    assert_eq!(metrics["elevate_cluster_leader"], 0, "{metrics:?}");
    // Give whatever it had scheduled (the lease's end, retries, the outbox) time to run.
    tokio::time::sleep(LEASE).await;
    std::fs::remove_file(dir.path().join("fail-revokes")).unwrap();
    until_state(&engineer, &short.id, "expired").await;
    let calls = nodes.calls();
    let after = &calls[calls_before..];
    assert!(
        !after
            .lines()
            .any(|line| line.starts_with(&format!("{old_name} "))),
        "the resumed leader called the target:\n{after}"
    );
    let log = pg.log();
    let writes: Vec<&str> = log[log_before..]
        .lines()
        .filter(|line| line.contains(&format!("[elevated-{old_name}]")))
        .filter(|line| {
            ["INSERT", "UPDATE", "DELETE"]
                .iter()
                .any(|verb| line.contains(verb))
        })
        .collect();
    assert!(
        writes.is_empty(),
        "the resumed leader wrote to the store:\n{}",
        writes.join("\n")
    );
    // The log really names each node's store sessions, so the check above can fail: the new
    // leader's writes are there.
    assert!(
        log.lines().any(|line| line.contains(&format!("[elevated-{new_name}]"))
            && line.contains("INSERT")),
        "no write of the new leader in the server log"
    );
    assert_eq!(state(&status(&mut engineer, &short.id).await), "expired");
    let again = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&again), "active");

    nodes.stop_all().await;
    nodes.audit_verifies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_fails_calls_clearly_loses_nothing_and_service_resumes() {
    let pg = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::started(&pg, dir.path(), &["a", "b"]).await;
    let leader = nodes.leader().await;
    let mut oncall = nodes.client(leader, "oncall").await;
    let long = request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&long), "active");

    pg.stop();
    let mut engineer = nodes.client(leader, "engineer").await;
    let refused = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unavailable,
        "{refused:?}\n{}",
        std::fs::read_to_string(dir.path().join(format!("{}.log", nodes.configs[leader].0)))
            .unwrap_or_default()
    );
    assert!(
        refused.message().contains("cannot reach its store")
            || refused.message().contains("leader"),
        "{refused:?}"
    );
    pg.start_again();

    let leader = nodes.leader().await;
    let mut oncall = nodes.client(leader, "oncall").await;
    assert_eq!(state(&status(&mut oncall, &long.id).await), "active");
    let mut engineer = nodes.client(leader, "engineer").await;
    let granted = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&granted), "active");
    assert!(nodes.holders("staging-db").contains("engineer"));
    nodes.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_runs_alone_has_no_cluster_to_show() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut admin = daemon.client("admin").await;
    let refused = admin
        .admin
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("no [cluster] section"),
        "{refused:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_approve_and_release_sent_again_with_their_keys_after_a_failover_get_the_first_outcome()
 {
    let pg = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::started(&pg, dir.path(), &["a", "b", "c"]).await;
    let first = nodes.leader().await;
    let mut engineer = nodes.client(first, "engineer").await;
    let mut manager = nodes.client(first, "manager").await;
    let submit = pb::SubmitRequestRequest {
        ssh_key: String::new(),
        resource: "prod-db-read".into(),
        duration: "1h".into(),
        reason: "INC-9 replay".into(),
        ticket: String::new(),
    };
    let submitted = request_keyed(&mut engineer, submit.clone(), "submit-9")
        .await
        .unwrap();
    assert_eq!(state(&submitted), "pending");
    let approval = pb::ApproveRequest {
        id: submitted.id.clone(),
        comment: String::new(),
    };
    let approved = manager
        .approval
        .approve(keyed(approval.clone(), "approve-9"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(state(&approved), "active");
    let release = pb::ReleaseLeaseRequest {
        id: submitted.id.clone(),
    };
    let released = engineer
        .access
        .release_lease(keyed(release.clone(), "release-9"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(state(&released), "released");

    // The answers are lost with the leader; each call is sent again, with its key, to the
    // next one.
    nodes.kill(first);
    let second = nodes.leader().await;
    let mut engineer = nodes.client(second, "engineer").await;
    let mut manager = nodes.client(second, "manager").await;
    let submitted_again = request_keyed(&mut engineer, submit.clone(), "submit-9")
        .await
        .unwrap();
    assert_eq!(
        submitted_again.id, submitted.id,
        "a second request was made"
    );
    let approved_again = manager
        .approval
        .approve(keyed(approval, "approve-9"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(approved_again.id, submitted.id);
    assert_eq!(approved_again.decisions.len(), 1);
    let released_again = engineer
        .access
        .release_lease(keyed(release.clone(), "release-9"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(released_again.id, submitted.id);
    assert_eq!(state(&released_again), "released");
    assert_eq!(released_again.ended_at_ms, released.ended_at_ms);

    // A key names one call: another call with it is refused and does nothing.
    let other = engineer
        .access
        .submit_request(keyed(
            pb::SubmitRequestRequest {
                resource: "staging-db".into(),
                ..submit
            },
            "submit-9",
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument, "{other:?}");
    assert!(other.message().contains("idempotency-key"), "{other:?}");
    let listed = listed(&mut engineer).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    // One grant and one revoke on the target, one of each in the history.
    let calls = nodes.calls();
    assert_eq!(calls.matches(" grant engineer").count(), 1, "{calls}");
    assert_eq!(calls.matches(" revoke engineer").count(), 1, "{calls}");
    let history = engineer
        .audit
        .get_history(pb::GetHistoryRequest {
            request_id: submitted.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = history.events.iter().map(|e| e.action.as_str()).collect();
    for once in [
        "request.submitted",
        "request.approval",
        "lease.granted",
        "lease.released",
    ] {
        assert_eq!(
            actions.iter().filter(|a| **a == once).count(),
            1,
            "{actions:?}"
        );
    }
    // Sent without its key, the same submit is a new request: the key made the repeat safe.
    let anew = request(&mut engineer, "prod-db-read", "1h", "INC-9 replay", "")
        .await
        .unwrap();
    assert_ne!(anew.id, submitted.id);
    nodes.stop_all().await;
    nodes.audit_verifies();
}

/// The `elevate` CLI as `name`, knowing every node of `nodes`, node `first` first.
fn cli(nodes: &Nodes, name: &str, first: usize) -> Command {
    let count = nodes.configs.len();
    let endpoints: Vec<&str> = (0..count)
        .map(|i| nodes.endpoint((first + i) % count))
        .collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_elevate"));
    command
        .env("ELEVATE_ENDPOINT", endpoints.join(","))
        .env("ELEVATE_CERT_DIR", nodes.root.join("state/certs"))
        .env("ELEVATE_AS", name)
        .env_remove("ELEVATE_CA")
        .env_remove("ELEVATE_CERT")
        .env_remove("ELEVATE_KEY")
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_finds_the_leader_and_keeps_waiting_through_a_failover() {
    let pg = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::started(&pg, dir.path(), &["a", "b", "c"]).await;
    let old = nodes.leader().await;
    // Given every node, a standby first, the CLI goes where the standby says the leader is.
    let standby = (old + 1) % 3;
    let listed = cli(&nodes, "engineer", standby)
        .args(["-o", "json", "list"])
        .output()
        .await
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    // A request that waits for an approval, while the leader dies. It changes something, so
    // it reaches the leader only by following the standby's hint.
    let waiting = cli(&nodes, "engineer", standby)
        .args(["-o", "json", "request", "prod-db-read", "--for", "30m"])
        .args(["--reason", "INC-7 slow queries", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let manager = nodes.client(old, "manager").await;
    let pending = until("the request to wait for its approval", || {
        let mut manager = manager.clone();
        async move {
            let pending = manager
                .approval
                .list_pending(pb::ListPendingRequest::default())
                .await
                .ok()?
                .into_inner()
                .requests;
            pending.into_iter().next()
        }
    })
    .await;
    nodes.kill(old);
    let new = nodes.leader().await;
    let mut manager_on_new = nodes.client(new, "manager").await;
    approve(&mut manager_on_new, &pending.id).await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let logs: String = ["a", "b", "c"]
        .iter()
        .map(|name| {
            format!(
                "--- {name}\n{}",
                std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default()
            )
        })
        .collect();
    assert!(
        output.status.success(),
        "{stdout}{}\nold {old} new {new}\n{logs}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(answer["id"], pending.id.as_str());
    assert_eq!(answer["state"], "active");
    // The killed node first in the list: the CLI goes on to the others.
    let shown = cli(&nodes, "engineer", old)
        .args(["-o", "json", "status", &pending.id])
        .output()
        .await
        .unwrap();
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    drop(manager);
    nodes.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_leader_and_a_standby_reads_the_files_when_it_takes_over() {
    let pg = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::started(&pg, dir.path(), &["a", "b"]).await;
    let leader = nodes.leader().await;
    let mut oncall = nodes.client(leader, "oncall").await;
    let lease = request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap();
    assert_eq!(state(&lease), "active");
    // The leaver is marked in the directory file; SIGHUP to the leader makes it so.
    let file = nodes.root.join("state/directory.toml");
    let directory = std::fs::read_to_string(&file).unwrap().replace(
        "[principals.oncall]\n",
        "[principals.oncall]\nstatus = \"suspended\"\n",
    );
    std::fs::write(&file, directory).unwrap();
    nodes.signal(leader, rustix::process::Signal::HUP);
    let mut admin = nodes.client(leader, "admin").await;
    let revoked = until_state(&admin, &lease.id, "revoked").await;
    assert!(
        revoked.end_reason.contains("suspended"),
        "{}",
        revoked.end_reason
    );
    // A SIGHUP to the standby changes nothing and stops nothing.
    let standby = 1 - leader;
    nodes.signal(standby, rustix::process::Signal::HUP);
    // The standby takes over with the files as they are now: the leaver stays refused.
    nodes.kill(leader);
    let new = nodes.leader().await;
    assert_eq!(new, standby);
    let mut oncall = nodes.client(new, "oncall").await;
    let refused = request(&mut oncall, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    admin = nodes.client(new, "admin").await;
    assert_eq!(state(&status(&mut admin, &lease.id).await), "revoked");
    nodes.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_cluster_has_its_database_to_itself() {
    let pg = Cluster::start();
    pg.sql("CREATE DATABASE alone").await;
    let server = PostgresUnderTest {
        socket_dir: pg.socket_dir(),
        port: pg.port(),
    };
    let first = Env::new();
    first.tweak({
        let server = server.clone();
        move |options| options.store = server.location("alone")
    });
    let daemon = first.start().await;
    // A second daemon on the same database (with the same audit key) would write beside it,
    // unfenced: refused.
    let second = Env::new();
    std::fs::copy(&first.layout.audit_key, &second.layout.audit_key).unwrap();
    second.tweak({
        let server = server.clone();
        move |options| options.store = server.location("alone")
    });
    let refused = second
        .try_start()
        .await
        .err()
        .expect("the second daemon was refused");
    assert!(refused.to_string().contains("in use"), "{refused}");
    // Once the first has stopped, the database is free at once.
    daemon.stop().await;
    let daemon = second.start().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_is_served_by_the_leader_and_its_changes_outlive_a_failover() {
    use super::scim::{Idp, TOKEN};
    let pg = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::new(&pg, dir.path(), &["a", "b"]).await;
    let scim = nodes.use_scim();
    for index in 0..2 {
        nodes.start(index).await;
    }
    let first = nodes.leader().await;
    let standby = 1 - first;
    let certs = dir.path().join("state/certs");
    let leader = Idp::new(scim[first], &certs, TOKEN);
    let found = leader
        .call("GET", "/Users?filter=userName%20eq%20%22oncall%22", None)
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["totalResults"], 1);
    let id = found.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A standby serves nothing and names the leader.
    let refused = Idp::new(scim[standby], &certs, TOKEN)
        .call("GET", "/Users", None)
        .await;
    assert_eq!(refused.status, 503);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains(nodes.endpoint(first)),
        "{}",
        refused.body
    );
    // A leaver by SCIM on the leader: the lease is gone from the target before the answer.
    let mut oncall = nodes.client(first, "oncall").await;
    let lease = request(&mut oncall, "staging-db", "30m", "deploy", "")
        .await
        .unwrap();
    until_state(&oncall, &lease.id, "active").await;
    assert!(nodes.holders("staging-db").contains("oncall"));
    let answer = leader
        .call(
            "PATCH",
            &format!("/Users/{id}"),
            Some(serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}]
            })),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!nodes.holders("staging-db").contains("oncall"));
    // After a failover the new leader has the same directory of record.
    nodes.kill(first);
    let second = nodes.leader_except(Some(first)).await;
    assert_eq!(second, standby);
    let user = until("the new leader to serve SCIM", || async {
        let answer = Idp::new(scim[second], &certs, TOKEN)
            .call("GET", &format!("/Users/{id}"), None)
            .await;
        (answer.status == 200).then_some(answer.body)
    })
    .await;
    assert_eq!(user["active"], false);
    let mut oncall = nodes.client(second, "oncall").await;
    let refused = request(&mut oncall, "staging-db", "30m", "again", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    nodes.stop_all().await;
}
