//! The cluster mode: three `elevated` nodes on one throwaway PostgreSQL, the same people,
//! policy, targets and workload as the single-daemon run. At a random moment of the workload
//! the leader is killed with SIGKILL or paused with SIGSTOP; the workers' calls follow the new
//! leader (the CLI's transport, idempotency keys on everything that changes something); once a
//! standby leads, a killed node is started again and a paused one resumed, and must stand by.
//! After every failover the invariants of the single run are checked against the new leader,
//! the audit chain is verified, and so is the fencing, from what PostgreSQL holds:
//! - every audit entry was written by the node that held its epoch (no two nodes commit in one
//!   epoch);
//! - no entry of an older epoch follows one of a newer epoch, and none of an older epoch was
//!   committed after the takeover was seen (no write of an old epoch commits).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use elevate::proto::v1 as pb;
use tokio_postgres::Client;

use super::daemon::{Daemon, kill_leftover_hooks, now_ms};
use super::fixture::{AUDITOR, Fixture, Node, elevated};
use super::pg::Cluster as Postgres;
use super::workload;
use super::{Harness, Outcome, START_LIMIT};

/// Failovers in a default run.
pub const DEFAULT_FAILOVERS: usize = 20;

/// The nodes.
const NODES: [&str; 3] = ["a", "b", "c"];

/// The leadership lease: a standby takes over about this long after the leader stopped.
const LEASE: &str = "2s";

/// Out of 100 faults, how many pause the leader rather than kill it.
const PAUSE: u64 = 40;

/// How long a standby may take to lead after the leader's fault before the run gives up.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(30);

/// How long a resumed leader may take to say it stands by.
const STAND_BY_LIMIT: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole cluster run.
pub async fn run(seed: u64, failovers: usize) -> Outcome {
    let dir = tempfile::Builder::new()
        .prefix("elevate-chaos-cluster-")
        .tempdir()
        .unwrap();
    let fixture = Fixture::create(dir.path(), seed);
    let postgres = Postgres::start();
    postgres.sql("CREATE DATABASE elevate").await;
    let socket = postgres.socket_dir();
    let nodes: Vec<Node> = NODES
        .iter()
        .map(|name| fixture.node(name, free_port(), (&socket, postgres.port()), LEASE))
        .collect();
    let mut harness = Harness::new(fixture, seed);
    harness.verify_config = Some(nodes[0].config.clone());
    let result = match elevated(&["store", "init", "--config", path(&nodes[0].config)]) {
        Ok(_) => harness.drive_cluster(&nodes, &postgres, failovers).await,
        Err(error) => Err(error),
    };
    let hooks: Vec<PathBuf> = nodes.iter().map(|node| node.hook.clone()).collect();
    let outcome = harness.finish(result, dir, &hooks).await;
    drop(postgres);
    outcome
}

fn path(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// Which node leads, other than `except`: the one that answers an auditor's listing (a
/// standby refuses with `UNAVAILABLE`, a paused node does not answer in time).
async fn leader(fixture: &Fixture, nodes: &[Node], except: Option<usize>) -> Result<usize, String> {
    let started = Instant::now();
    loop {
        for (index, node) in nodes.iter().enumerate() {
            if Some(index) == except {
                continue;
            }
            if answers_as_leader(fixture, node).await {
                return Ok(index);
            }
        }
        if started.elapsed() > TAKEOVER_LIMIT {
            return Err(format!("no node led within {TAKEOVER_LIMIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Node `node` as the auditor sees it, exactly (a standby's hint is not followed): the
/// listing's outcome, or `None` when it does not answer within a second.
async fn probe(
    fixture: &Fixture,
    node: &Node,
) -> Option<Result<pb::ListRequestsResponse, tonic::Status>> {
    let files = elevate::cli::client::ClientFiles {
        ca: fixture.certs.join("ca.crt"),
        cert: fixture.certs.join(format!("{AUDITOR}.crt")),
        key: fixture.certs.join(format!("{AUDITOR}.key")),
    };
    tokio::time::timeout(Duration::from_secs(1), async {
        let mut clients = elevate::cli::client::connect_to(&node.endpoint, &files)
            .await
            .ok()?;
        let limit = pb::ListRequestsRequest {
            limit: 1,
            ..Default::default()
        };
        Some(
            clients
                .access
                .list_requests(limit)
                .await
                .map(tonic::Response::into_inner),
        )
    })
    .await
    .ok()
    .flatten()
}

async fn answers_as_leader(fixture: &Fixture, node: &Node) -> bool {
    matches!(probe(fixture, node).await, Some(Ok(_)))
}

/// Whether `node` refuses as a standby naming `leader`'s address.
async fn stands_by(fixture: &Fixture, node: &Node, leader: &Node) -> bool {
    match probe(fixture, node).await {
        Some(Err(status)) => {
            status.code() == tonic::Code::Unavailable
                && status
                    .metadata()
                    .get("elevate-standby")
                    .is_some_and(|standby| standby == "true")
                && status
                    .metadata()
                    .get("elevate-leader")
                    .is_some_and(|hint| hint.to_str().is_ok_and(|hint| hint == leader.endpoint))
        }
        _ => false,
    }
}

/// The newest audit entry's sequence number and the current epoch.
async fn mark(db: &Client) -> Result<(i64, i64), String> {
    let row = db
        .query_one(
            "SELECT (SELECT coalesce(max(seq), 0) FROM elevate_audit), \
             (SELECT epoch FROM elevate_leader WHERE id = 1)",
            &[],
        )
        .await
        .map_err(|error| format!("cannot read the store: {error}"))?;
    Ok((row.get(0), row.get(1)))
}

impl Harness {
    async fn drive_cluster(
        &mut self,
        nodes: &[Node],
        postgres: &Postgres,
        failovers: usize,
    ) -> Result<(), String> {
        let mut running = Vec::new();
        for node in nodes {
            running.push(Some(self.start_node(node).await?));
        }
        self.pubkey = elevated(&["audit", "pubkey", "--config", path(&nodes[0].config)])?
            .trim()
            .to_owned();
        let endpoints: Vec<&str> = nodes.iter().map(|node| node.endpoint.as_str()).collect();
        let endpoints = endpoints.join(",");
        let db = postgres.superuser_on("elevate").await;
        let mut recovered_before = None;
        while self.kills < failovers {
            let began = Instant::now();
            let cast = workload::connect(&self.fixture, &endpoints).await?;
            self.check(&cast, recovered_before).await?;
            let old = leader(&self.fixture, nodes, None).await?;
            self.spent[1] += began.elapsed();

            let began = Instant::now();
            let crew = self.let_loose(cast);
            tokio::time::sleep(Duration::from_millis(self.rng.range(50, 500))).await;
            let pause = self.rng.chance(PAUSE);
            let fault_at = now_ms();
            let stopped = running[old].as_ref().unwrap();
            if pause {
                stopped.pause(true);
            } else {
                stopped.kill();
            }
            let new = leader(&self.fixture, nodes, Some(old)).await?;
            let (seen, epoch) = mark(&db).await?;
            // The stall ends (a paused node's calls in flight are refused, and sent on to the
            // new leader), the calls in flight follow the new leader, and the workers stop.
            if pause {
                running[old].as_ref().unwrap().pause(false);
            }
            self.call_off(crew).await;
            let run = self.run;
            self.spent[2] += began.elapsed();

            let began = Instant::now();
            if pause {
                let started = Instant::now();
                while !stands_by(&self.fixture, &nodes[old], &nodes[new]).await {
                    if started.elapsed() > STAND_BY_LIMIT {
                        self.found.violation(
                            run,
                            format!("standby {run}"),
                            format!(
                                "node {} did not stand by within {STAND_BY_LIMIT:?} after it resumed",
                                nodes[old].name
                            ),
                        );
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            } else {
                let mut killed = running[old].take().unwrap();
                let status = killed.wait(Duration::from_secs(30)).await?;
                use std::os::unix::process::ExitStatusExt;
                if status.signal() != Some(9) {
                    self.found.violation(
                        run,
                        format!("exit {run}"),
                        format!(
                            "node {} was killed but ended with {status}",
                            nodes[old].name
                        ),
                    );
                }
                // As a service manager does with the rest of the unit.
                kill_leftover_hooks(&nodes[old].hook).await;
                running[old] = Some(self.start_node(&nodes[old]).await?);
            }
            self.spent[0] += began.elapsed();
            self.kills += 1;
            self.run += 1;
            recovered_before = Some(fault_at);
            self.verify_audit().await;
            self.fencing(&db, Some((seen, epoch))).await;
            if self.kills % 5 == 0 {
                self.progress();
            }
        }
        let cast = workload::connect(&self.fixture, &endpoints).await?;
        self.check(&cast, recovered_before).await?;
        self.settle(&cast).await?;
        self.check(&cast, None).await?;
        drop(cast);
        for (node, daemon) in nodes.iter().zip(&mut running) {
            let Some(mut daemon) = daemon.take() else {
                continue;
            };
            daemon.terminate();
            let status = daemon.wait(Duration::from_secs(30)).await?;
            if !status.success() {
                let run = self.run;
                self.found.violation(
                    run,
                    format!("sigterm {}", node.name),
                    format!("after SIGTERM node {} exited with {status}", node.name),
                );
            }
        }
        self.verify_audit().await;
        self.fencing(&db, None).await;
        Ok(())
    }

    async fn start_node(&mut self, node: &Node) -> Result<Daemon, String> {
        let began = Instant::now();
        let log = self
            .fixture
            .daemon_log
            .with_file_name(format!("node-{}.log", node.name));
        let mut daemon = Daemon::spawn_with(
            &node.config,
            &node.listen,
            &log,
            &format!("node {} after failover {}", node.name, self.kills),
        );
        daemon
            .listening(START_LIMIT)
            .await
            .map_err(|error| format!("node {}: {error} (see {})", node.name, log.display()))?;
        self.spent[0] += began.elapsed();
        Ok(daemon)
    }

    /// The fencing, from what PostgreSQL holds: every audit entry written by the node that
    /// held its epoch, epochs never going back along the chain, and — with `after` (the newest
    /// entry and the epoch when a takeover was seen) — no entry of an older epoch since.
    async fn fencing(&mut self, db: &Client, after: Option<(i64, i64)>) {
        let run = self.run;
        let checks: [(&str, &str); 3] = [
            (
                "writer",
                "SELECT a.seq, format('audit entry %s was written by node %L in epoch %s, \
                 which node %L took', a.seq, a.node, a.epoch, e.node) \
                 FROM elevate_audit a LEFT JOIN elevate_epochs e ON e.epoch = a.epoch \
                 WHERE e.node IS DISTINCT FROM a.node ORDER BY a.seq LIMIT 20",
            ),
            (
                "order",
                "SELECT seq, format('audit entry %s was committed in epoch %s after entries \
                 of epoch %s', seq, epoch, before) FROM (SELECT seq, epoch, max(epoch) OVER \
                 (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before \
                 FROM elevate_audit) t WHERE epoch < before ORDER BY seq LIMIT 20",
            ),
            (
                "stale",
                "SELECT seq, format('audit entry %s of epoch %s (node %L) was committed after \
                 epoch %s took over', seq, epoch, node, $2::bigint) FROM elevate_audit \
                 WHERE seq > $1 AND epoch < $2 ORDER BY seq LIMIT 20",
            ),
        ];
        for (name, sql) in checks {
            let rows = match (name, after) {
                ("stale", None) => continue,
                ("stale", Some((seen, epoch))) => db.query(sql, &[&seen, &epoch]).await,
                _ => db.query(sql, &[]).await,
            };
            self.found.checked += 1;
            match rows {
                Ok(rows) => {
                    for row in rows {
                        let seq: i64 = row.get(0);
                        self.found
                            .violation(run, format!("fencing {name} {seq}"), row.get(1));
                    }
                }
                Err(error) => self.found.violation(
                    run,
                    format!("fencing {name} {run}"),
                    format!("cannot check the fencing in PostgreSQL: {error}"),
                ),
            }
        }
        if let Ok(row) = db
            .query_one("SELECT count(*) FROM elevate_epochs", &[])
            .await
        {
            let epochs: i64 = row.get(0);
            // A node stalled on a busy machine may lose the leadership on its own too.
            if epochs < i64::try_from(self.kills).unwrap_or(i64::MAX) + 1 {
                self.found.violation(
                    run,
                    format!("epochs {run}"),
                    format!("{} failovers made only {epochs} epochs", self.kills),
                );
            }
        }
    }
}
