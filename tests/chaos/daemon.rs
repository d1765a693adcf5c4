//! The real `elevated` as a child process in a process group of its own, so that `kill -9`
//! takes the whole group at once, as a crash would.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::fixture::Fixture;

/// The process group of the daemon running now (0: none), for the interrupt handler.
pub static RUNNING: AtomicI32 = AtomicI32::new(0);

pub struct Daemon {
    child: Child,
    pid: Pid,
    /// Reaped: its id may belong to someone else now, so it is never signalled again.
    reaped: bool,
    /// `https://127.0.0.1:PORT` once it said it listens; an error if it exited first.
    listening: Option<oneshot::Receiver<String>>,
}

/// Unix milliseconds now, on the clock the daemon reads too.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Daemon {
    /// Starts `elevated serve --config` on the fixture; `run` labels its log.
    pub fn spawn(fixture: &Fixture, run: usize) -> Self {
        Self::spawn_with(
            &fixture.config,
            "127.0.0.1:0",
            &fixture.daemon_log,
            &format!("run {run}"),
        )
    }

    /// Starts `elevated serve --config CONFIG --listen LISTEN`, appending its stderr to `log`
    /// after a line naming `label`.
    pub fn spawn_with(config: &Path, listen: &str, log: &Path, label: &str) -> Self {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        writeln!(log, "===== chaos: {label} =====").unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()).unwrap();
        RUNNING.store(pid.as_raw_nonzero().get(), Ordering::SeqCst);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tell, listening) = oneshot::channel();
        tokio::spawn(async move {
            let mut tell = Some(tell);
            // Read everything it prints, as a supervisor would, until it exits.
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(endpoint) = line.split("listening on ").nth(1) {
                    if let Some(tell) = tell.take() {
                        let _ = tell.send(endpoint.trim().to_owned());
                    }
                }
            }
        });
        Self {
            child,
            pid,
            reaped: false,
            listening: Some(listening),
        }
    }

    /// Waits until it listens (it prints that only after recovery), at most `limit`.
    pub async fn listening(&mut self, limit: Duration) -> Result<String, String> {
        let Some(listening) = self.listening.take() else {
            return Err("asked twice".to_owned());
        };
        match tokio::time::timeout(limit, listening).await {
            Ok(Ok(endpoint)) => Ok(endpoint),
            Ok(Err(_)) => Err("elevated exited before it listened".to_owned()),
            Err(_) => Err(format!("elevated did not listen within {limit:?}")),
        }
    }

    /// `kill -9` of its whole process group.
    pub fn kill(&self) {
        // ESRCH: it died on its own; the wait reports how.
        if !self.reaped {
            let _ = kill_process_group(self.pid, Signal::KILL);
        }
    }

    /// SIGSTOP (`pause`) or SIGCONT to the daemon alone: a stall, as of a long GC pause or a
    /// frozen VM, its hook calls running on.
    pub fn pause(&self, pause: bool) {
        if !self.reaped {
            let _ = kill_process(self.pid, if pause { Signal::STOP } else { Signal::CONT });
        }
    }

    /// SIGTERM to the daemon: a clean stop.
    pub fn terminate(&self) {
        if !self.reaped {
            let _ = kill_process(self.pid, Signal::TERM);
        }
    }

    pub async fn wait(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.reaped = true;
                let _ = RUNNING.compare_exchange(
                    self.pid.as_raw_nonzero().get(),
                    0,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                Ok(status)
            }
            Ok(Err(error)) => Err(format!("cannot wait for elevated: {error}")),
            Err(_) => {
                self.kill();
                Err(format!("elevated did not exit within {limit:?}"))
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Process groups of hook calls still running: processes whose command line names `hook`
/// (a file in the harness's own temporary directory, so nothing else matches). A killed
/// daemon leaves them behind, as each call runs in a process group of its own.
pub fn leftover_hooks(hook: &Path) -> BTreeSet<i32> {
    let hook = hook.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| line.split(|b| *b == 0).any(|arg| arg == hook))
        })
        .filter_map(|pid| {
            // The group is the fifth field; the command name before it is in parentheses.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(2)?
                .parse()
                .ok()
        })
        .collect()
}

/// Kills what a crashed daemon's hooks left running, as a service manager does with the rest
/// of a unit's control group once its main process died, and waits until it is gone.
pub async fn kill_leftover_hooks(hook: &Path) -> usize {
    let groups = leftover_hooks(hook);
    for group in &groups {
        if let Some(group) = Pid::from_raw(*group) {
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
    for _ in 0..200 {
        if leftover_hooks(hook).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    groups.len()
}
