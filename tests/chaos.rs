//! `cargo test --test chaos`: the crash and fault harness.
//!
//! Starts the real `elevated` (config mode, its own process group) on a temporary state
//! directory with a policy of auto-approved, one-stage and two-stage routed resources, some
//! with leases of a few seconds on the real clock, on the `file` provisioner and on an `exec`
//! hook that fails, hangs or is slow at random. Client tasks of several principals submit,
//! approve, deny, cancel and release, and the harness records every acknowledged answer. At a
//! random moment it kills the whole process group with SIGKILL, verifies the audit chain of the
//! store offline, restarts the daemon and checks the invariants (see `chaos/checks.rs`) against
//! the daemon's answers and the targets. At the end it stops the daemon cleanly and verifies
//! once more.
//!
//! The kill is what the shipped systemd unit does when the daemon dies: `kill -9` of the
//! daemon's process group, then of the hook calls still in flight (hooks run in process groups
//! of their own; under the unit, `KillMode=mixed` gives the rest of the control group SIGKILL
//! once the main process is gone, before the restart). `ELEVATE_CHAOS_ORPHANS=1` leaves those
//! hook calls running instead, as after a crash outside a service manager: a slow grant of the
//! killed daemon can then finish after its lease ended, which the harness reports as a stray
//! grant (a known limitation, see the README).
//!
//! `ELEVATE_CHAOS_SEED` replays a run's choices (printed first), `ELEVATE_CHAOS_KILLS` sets the
//! number of kills, `ELEVATE_CHAOS_KEEP=1` keeps the state directory (it is kept anyway when
//! something was wrong). The last line is the summary; the exit status is non-zero on any
//! violation.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "chaos/checks.rs"]
mod checks;
#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/daemon.rs"]
mod daemon;
#[path = "chaos/fixture.rs"]
mod fixture;
#[path = "chaos/ledger.rs"]
mod ledger;
#[path = "it/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "chaos/rng.rs"]
mod rng;
#[path = "chaos/workload.rs"]
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use elevate::proto::v1 as pb;

use checks::Findings;
use daemon::{Daemon, now_ms};
use fixture::{Fixture, elevated};
use ledger::{Ledger, describe, is_open, state_of};
use rng::Rng;
use workload::Shared;

/// Kills in a default run.
const DEFAULT_KILLS: usize = 80;

/// Concurrent client tasks.
const WORKERS: usize = 6;

/// Out of 100 restarts, how many are killed again while starting (recovering) rather than
/// after serving a while.
const KILL_WHILE_STARTING: u64 = 12;

/// Out of 100 kills, how many are followed by a pause before the restart.
const STAY_DOWN: u64 = 25;

/// How long the end of the run waits for every lease to end and every target to be empty.
const SETTLE: Duration = Duration::from_secs(45);

/// How long a start (with recovery) may take before it counts as hung.
const START_LIMIT: Duration = Duration::from_secs(60);

fn from_env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(value) => Some(value),
        Err(_) => panic!("{name}={text} is not a number"),
    }
}

/// Two tests, `chaos` (one daemon, killed) and `chaos_cluster` (three nodes on PostgreSQL,
/// their leaders killed and paused), behind libtest's command line (through
/// `libtest-mimic`), so that `cargo test` and `cargo nextest` list, filter and run them like
/// any other. One at a time: each takes the machine's cores.
fn main() -> ExitCode {
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let single = libtest_mimic::Trial::test("chaos", || chaos(false).map_err(Into::into));
    let cluster = libtest_mimic::Trial::test("chaos_cluster", || chaos(true).map_err(Into::into));
    libtest_mimic::run(&args, vec![single, cluster]).exit_code()
}

/// The whole run (of the cluster mode with `cluster`); an error when it found violations.
fn chaos(cluster: bool) -> Result<(), String> {
    let (name, faults, variable) = if cluster {
        ("chaos cluster", "failovers", "ELEVATE_CHAOS_FAILOVERS")
    } else {
        ("chaos", "kills", "ELEVATE_CHAOS_KILLS")
    };
    let seed = from_env("ELEVATE_CHAOS_SEED").unwrap_or_else(rng::fresh_seed);
    println!("{name}: seed {seed}");
    let kills = from_env(variable).unwrap_or(if cluster {
        cluster::DEFAULT_FAILOVERS
    } else {
        DEFAULT_KILLS
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(clean_up_when_interrupted());
    let started = Instant::now();
    let outcome = if cluster {
        runtime.block_on(cluster::run(seed, kills))
    } else {
        runtime.block_on(run(seed, kills))
    };
    let refusals: Vec<String> = outcome
        .stats
        .refusals
        .iter()
        .map(|(code, n)| format!("{n} {code}"))
        .collect();
    println!(
        "{name}: {} requests, {} calls: {} acknowledged, {} refused ({}), {} cut off by kills; {} hook calls finished after their daemon was killed; {:.0?}",
        outcome.requests,
        outcome.stats.sent,
        outcome.stats.acknowledged,
        outcome.stats.refused,
        refusals.join(", "),
        outcome.stats.cut,
        outcome.orphans,
        started.elapsed()
    );
    let [starting, checking, working, verifying] = outcome.spent.map(|d| d.as_secs_f64());
    println!(
        "{name}: time spent starting {starting:.0} s, checking {checking:.0} s, working {working:.0} s, verifying {verifying:.0} s"
    );
    let violations = outcome.found.violations.len();
    if violations > 0 || std::env::var_os("ELEVATE_CHAOS_KEEP").is_some() {
        let unit = if std::env::var_os("ELEVATE_CHAOS_ORPHANS").is_some() {
            " ELEVATE_CHAOS_ORPHANS=1"
        } else {
            ""
        };
        println!(
            "{name}: state kept in {}; replay with ELEVATE_CHAOS_SEED={seed} {variable}={kills}{unit}",
            outcome.kept.display()
        );
    }
    println!(
        "{name}: {} {faults}, {} transitions checked, {violations} violations",
        outcome.kills, outcome.found.checked
    );
    if violations == 0 {
        Ok(())
    } else {
        Err(format!(
            "{violations} violations; replay with ELEVATE_CHAOS_SEED={seed} {variable}={kills}"
        ))
    }
}

/// The hook of the run in progress, for the interrupt handler.
static HOOK: OnceLock<PathBuf> = OnceLock::new();

/// Interrupted (Ctrl-C, SIGTERM): the daemon and its hooks run in process groups of their own
/// and would outlive the harness, so they are killed first.
async fn clean_up_when_interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    let group = daemon::RUNNING.load(Ordering::SeqCst);
    if let Some(group) = rustix::process::Pid::from_raw(group) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    if let Some(hook) = HOOK.get() {
        daemon::kill_leftover_hooks(hook).await;
    }
    println!("chaos: interrupted");
    std::process::exit(130);
}

struct Outcome {
    kills: usize,
    found: Findings,
    stats: ledger::Stats,
    requests: usize,
    orphans: usize,
    /// The state directory, kept when something was wrong.
    kept: std::path::PathBuf,
    spent: [Duration; 4],
}

/// The workers of one round, and what they share.
struct Crew {
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

struct Harness {
    fixture: Fixture,
    rng: Rng,
    ledger: Arc<Mutex<Ledger>>,
    found: Findings,
    pubkey: String,
    /// Daemons started so far; labels the log and the violations.
    run: usize,
    kills: usize,
    /// Crash as under the shipped systemd unit: hook calls in flight die with the daemon.
    unit: bool,
    /// Where the time went: starting (with recovery), connecting and checking, the workload,
    /// verifying the audit chain offline.
    spent: [Duration; 4],
    /// In cluster mode, the configuration whose (PostgreSQL) store is verified, instead of the
    /// redb file.
    verify_config: Option<PathBuf>,
}

async fn run(seed: u64, kills: usize) -> Outcome {
    let dir = tempfile::Builder::new()
        .prefix("elevate-chaos-")
        .tempdir()
        .unwrap();
    let fixture = Fixture::create(dir.path(), seed);
    let _ = HOOK.set(fixture.hook.clone());
    let mut harness = Harness::new(fixture, seed);
    let result = harness.drive(kills).await;
    let hooks = [harness.fixture.hook.clone()];
    harness.finish(result, dir, &hooks).await
}

impl Harness {
    fn new(fixture: Fixture, seed: u64) -> Self {
        Self {
            fixture,
            rng: Rng::new(seed),
            ledger: Arc::default(),
            found: Findings::default(),
            pubkey: String::new(),
            run: 0,
            kills: 0,
            unit: std::env::var_os("ELEVATE_CHAOS_ORPHANS").is_none(),
            spent: Default::default(),
            verify_config: None,
        }
    }

    /// The outcome of a run that ended with `result`, its hook calls (of `hooks`) still
    /// running killed; `dir` is kept when something was wrong.
    async fn finish(
        mut self,
        result: Result<(), String>,
        dir: tempfile::TempDir,
        hooks: &[PathBuf],
    ) -> Outcome {
        if let Err(error) = result {
            let run = self.run;
            self.found
                .violation(run, "fatal".to_owned(), format!("the run stopped: {error}"));
        }
        // Hook calls of killed daemons that still sleep (a hang outlives its daemon by seconds).
        for hook in hooks {
            daemon::kill_leftover_hooks(hook).await;
        }
        let harness = self;
        let ledger = std::mem::take(&mut *harness.ledger.lock().unwrap());
        let keep = std::env::var_os("ELEVATE_CHAOS_KEEP").is_some();
        let kept = if harness.found.violations.is_empty() && !keep {
            dir.path().to_path_buf()
        } else {
            dir.keep()
        };
        Outcome {
            kills: harness.kills,
            requests: ledger.view.len(),
            stats: ledger.stats,
            orphans: harness.fixture.orphaned_calls(),
            spent: harness.spent,
            found: harness.found,
            kept,
        }
    }
}

impl Harness {
    async fn drive(&mut self, kills: usize) -> Result<(), String> {
        let (mut daemon, mut endpoint) = self.start().await?;
        self.pubkey = elevated(&[
            "audit",
            "pubkey",
            "--config",
            self.fixture.config.to_str().unwrap(),
        ])?
        .trim()
        .to_owned();
        let mut restarted_at = None;
        let mut reported = 0;
        while self.kills < kills {
            let began = Instant::now();
            let cast = workload::connect(&self.fixture, &endpoint).await?;
            self.check(&cast, restarted_at).await?;
            self.spent[1] += began.elapsed();
            let began = Instant::now();
            self.work_then_kill(&daemon, cast).await;
            self.spent[2] += began.elapsed();
            self.reap_killed(&mut daemon).await?;
            if self.kills / 10 > reported {
                reported = self.kills / 10;
                self.progress();
            }
            // Now and then stay down a while, so that short leases expire meanwhile and the
            // restart must revoke them before it serves.
            if self.rng.chance(STAY_DOWN) {
                let down = self.rng.range(300, 1200);
                tokio::time::sleep(Duration::from_millis(down)).await;
            }
            // Restart; now and then kill it again while it recovers.
            loop {
                restarted_at = Some(now_ms());
                if self.kills < kills && self.rng.chance(KILL_WHILE_STARTING) {
                    self.run += 1;
                    let starting = Daemon::spawn(&self.fixture, self.run);
                    let after = self.rng.range(0, 300);
                    tokio::time::sleep(Duration::from_millis(after)).await;
                    starting.kill();
                    daemon = starting;
                    self.reap_killed(&mut daemon).await?;
                    continue;
                }
                (daemon, endpoint) = self.start().await?;
                break;
            }
        }
        let cast = workload::connect(&self.fixture, &endpoint).await?;
        self.check(&cast, restarted_at).await?;
        self.settle(&cast).await?;
        self.check(&cast, None).await?;
        drop(cast);
        daemon.terminate();
        let status = daemon.wait(Duration::from_secs(30)).await?;
        if !status.success() {
            let run = self.run;
            self.found.violation(
                run,
                "sigterm".to_owned(),
                format!("after SIGTERM elevated exited with {status}"),
            );
        }
        self.verify_audit().await;
        Ok(())
    }

    async fn start(&mut self) -> Result<(Daemon, String), String> {
        let began = Instant::now();
        self.run += 1;
        let mut daemon = Daemon::spawn(&self.fixture, self.run);
        let endpoint = daemon.listening(START_LIMIT).await.map_err(|error| {
            format!(
                "run {}: {error} (see {})",
                self.run,
                self.fixture.daemon_log.display()
            )
        })?;
        self.spent[0] += began.elapsed();
        Ok((daemon, endpoint))
    }

    /// The invariants after a start (`restarted_at`: when it was started) or at the end.
    async fn check(
        &mut self,
        cast: &workload::Cast,
        restarted_at: Option<i64>,
    ) -> Result<(), String> {
        let ledger = self.ledger.lock().unwrap().clone();
        let snapshot = checks::all(
            &self.fixture,
            cast,
            &ledger,
            restarted_at,
            self.run,
            &mut self.found,
        )
        .await?;
        self.ledger.lock().unwrap().refresh(snapshot.requests);
        Ok(())
    }

    /// Lets the workers loose, then kills the daemon under them at a random moment.
    async fn work_then_kill(&mut self, daemon: &Daemon, cast: workload::Cast) {
        let crew = self.let_loose(cast);
        let after = self.rng.range(50, 500);
        tokio::time::sleep(Duration::from_millis(after)).await;
        daemon.kill();
        // Their calls fail at once now that the daemon is gone.
        self.call_off(crew).await;
    }

    /// Starts the workers on `cast`.
    fn let_loose(&mut self, cast: workload::Cast) -> Crew {
        let shared = Arc::new(Shared {
            cast,
            ledger: self.ledger.clone(),
            violations: Arc::default(),
            stop: Default::default(),
            run: self.run,
        });
        let cycle = self.rng.fork(self.run as u64);
        let workers = (0..WORKERS)
            .map(|n| tokio::spawn(workload::work(shared.clone(), cycle.fork(n as u64))))
            .collect();
        Crew { shared, workers }
    }

    /// Stops the workers once their calls in flight end, and takes the violations they saw.
    async fn call_off(&mut self, crew: Crew) {
        crew.shared.stop.store(true, Ordering::SeqCst);
        for worker in crew.workers {
            let _ = tokio::time::timeout(Duration::from_secs(40), worker).await;
        }
        let run = self.run;
        for (n, violation) in crew.shared.violations.lock().unwrap().iter().enumerate() {
            self.found
                .violation(run, format!("answer {run} {n}"), violation.clone());
        }
    }

    /// Waits for a killed daemon, counts the kill and verifies the audit chain offline.
    async fn reap_killed(&mut self, daemon: &mut Daemon) -> Result<(), String> {
        let status = daemon.wait(Duration::from_secs(30)).await?;
        use std::os::unix::process::ExitStatusExt;
        if status.signal() != Some(9) {
            let run = self.run;
            self.found.violation(
                run,
                format!("exit {run}"),
                format!("elevated was killed but ended with {status}"),
            );
        }
        self.kills += 1;
        if self.unit {
            daemon::kill_leftover_hooks(&self.fixture.hook).await;
        }
        self.verify_audit().await;
        Ok(())
    }

    async fn verify_audit(&mut self) {
        let began = Instant::now();
        let (flag, store) = match &self.verify_config {
            Some(config) => ("--config", config.clone()),
            None => ("--db", self.fixture.store.clone()),
        };
        if !store.exists() {
            return;
        }
        let pubkey = self.pubkey.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let store = store.to_str().unwrap().to_owned();
            let mut args = vec!["audit", "verify", flag, &store];
            if !pubkey.is_empty() {
                args.extend(["--pubkey", &pubkey]);
            }
            elevated(&args)
        })
        .await
        .unwrap();
        self.found.checked += 1;
        self.spent[3] += began.elapsed();
        match verified {
            Ok(text) if text.contains("intact") => {}
            Ok(text) | Err(text) => {
                let run = self.run;
                self.found.violation(
                    run,
                    format!("audit {run}"),
                    format!("the audit chain does not verify offline after run {run}: {text}"),
                );
            }
        }
    }

    /// Ends everything: pending requests cancelled, long leases released, short ones left to
    /// expire; then waits until nothing is open and every target is empty.
    async fn settle(&mut self, cast: &workload::Cast) -> Result<(), String> {
        let shared = Shared {
            cast: cast.clone(),
            ledger: self.ledger.clone(),
            violations: Arc::default(),
            stop: Default::default(),
            run: self.run,
        };
        let started = Instant::now();
        loop {
            let snapshot = checks::snapshot(cast).await?;
            let open: Vec<&pb::AccessRequest> = snapshot
                .requests
                .values()
                .filter(|r| is_open(state_of(r)))
                .collect();
            let grants = self.fixture.grants();
            if open.is_empty() && grants.is_empty() {
                return Ok(());
            }
            let ledger = self.ledger.lock().unwrap().clone();
            checks::requests(&ledger, &snapshot, None, self.run, &mut self.found);
            if started.elapsed() > SETTLE {
                let run = self.run;
                for request in open {
                    self.found.violation(
                        run,
                        format!("unsettled {}", request.id),
                        format!(
                            "{} is still open {SETTLE:?} after the last kill",
                            describe(request)
                        ),
                    );
                }
                for grant in grants {
                    self.found.violation(
                        run,
                        format!("left {grant}"),
                        format!("the target still grants {grant} {SETTLE:?} after the last kill"),
                    );
                }
                return Ok(());
            }
            for request in &open {
                match state_of(request) {
                    pb::RequestState::Pending => workload::cancel_one(&shared, request).await,
                    pb::RequestState::Active
                        if request.expires_at_ms.unwrap_or(0) > now_ms() + 60_000 =>
                    {
                        workload::release_one(&shared, request).await;
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn progress(&self) {
        let ledger = self.ledger.lock().unwrap();
        println!(
            "chaos: {} kills, {} requests, {} acknowledged answers, {} violations so far",
            self.kills,
            ledger.view.len(),
            ledger.stats.acknowledged,
            self.found.violations.len()
        );
    }
}
