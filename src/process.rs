//! Running a configured program safely, for hooks that grant and revoke and for notifiers.
//!
//! No shell; a cleared environment (but `PATH` and what is configured); a working directory;
//! optional bytes on stdin; a timeout. The program runs in a process group of its own. It is
//! done when it has exited and its output is closed (by it and by everything it started); then,
//! or when its timeout passes, or when the daemon abandons it (the future is dropped), the whole
//! group is killed, so nothing it started in its group outlives the call. (A process that leaves
//! the group on purpose, with `setsid`, is beyond reach.) The group is killed before the program
//! is reaped, so its id cannot have been reused by then.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::model::one_line;

/// Most bytes of a program's error output kept (and shown in errors).
const OUTPUT_LIMIT: usize = 512;

/// A program and how to run it.
#[derive(Clone, Debug)]
pub struct Program {
    /// The executable.
    pub path: PathBuf,
    /// Leading arguments.
    pub args: Vec<String>,
    /// Environment variables besides `PATH`.
    pub env: BTreeMap<String, String>,
    /// Longest run.
    pub timeout: Duration,
    /// Working directory; the daemon's own when unset.
    pub working_dir: Option<PathBuf>,
}

/// Running the program did not succeed. The message names the program and the `label` of the
/// call, and carries at most a line of its error output, made safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

impl Program {
    /// Runs the program with `args` after the configured ones, `env` added, and `stdin`.
    pub async fn run(
        &self,
        label: &str,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<(), RunError> {
        let program = self.path.display();
        let mut command = Command::new(&self.path);
        command
            .args(&self.args)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .envs(&self.env)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        let child = command
            .spawn()
            .map_err(|error| RunError(format!("cannot run {program}: {error}")))?;
        let mut running = Running::new(child);
        let input = running.child.stdin.take();
        let stdout = running.child.stdout.take();
        let stderr = running.child.stderr.take();
        let finished = tokio::time::timeout(self.timeout, async {
            let feed = async {
                if let (Some(mut input), Some(bytes)) = (input, stdin) {
                    // A program that does not read its input is not an error here.
                    let _ = input.write_all(bytes).await;
                }
            };
            let ((), _, stderr) = tokio::join!(feed, drain(stdout), drain(stderr));
            running.exited().await;
            stderr
        })
        .await;
        // Whatever the program left running is stopped before the caller records the outcome.
        running.kill_group();
        let status = running.reap().await;
        let Ok(stderr) = finished else {
            return Err(RunError(format!(
                "{program} {label} timed out after {}",
                humantime::format_duration(self.timeout)
            )));
        };
        let status = status.map_err(|error| RunError(format!("{program} {label}: {error}")))?;
        if status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&stderr);
        let mut said: String = one_line(stderr.trim()).chars().take(OUTPUT_LIMIT).collect();
        if said.is_empty() {
            said = "no output".to_owned();
        }
        Err(RunError(format!(
            "{program} {label} failed ({status}): {said}"
        )))
    }
}

/// A child process leading its own process group. Dropping it (the call is abandoned) kills the
/// group; the leader is still unreaped then, which pins the group id.
struct Running {
    child: Child,
    group: Option<Pid>,
    reaped: bool,
}

impl Running {
    fn new(child: Child) -> Self {
        // The child leads a new process group whose id is its pid.
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(Pid::from_raw);
        Self {
            child,
            group,
            reaped: false,
        }
    }

    /// Waits until the leader has exited, without reaping it.
    async fn exited(&self) {
        let Some(group) = self.group else { return };
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
        loop {
            match waitid(WaitId::Pid(group), options) {
                Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
                Ok(Some(_)) | Err(_) => return,
            }
        }
    }

    /// Kills the whole group, unless the leader was reaped already (its id could be reused).
    fn kill_group(&self) {
        if let (Some(group), false) = (self.group, self.reaped) {
            // ESRCH (the group is gone) is the usual, harmless outcome.
            let _ = kill_process_group(group, Signal::KILL);
        }
    }

    /// Reaps the leader.
    async fn reap(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await;
        self.reaped = true;
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Reads a pipe to its end, keeping the first [`OUTPUT_LIMIT`] bytes.
async fn drain(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else { return kept };
    let mut buffer = [0u8; 4096];
    while let Ok(read) = pipe.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        let room = OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..read.min(room)]);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str, timeout: Duration) -> Program {
        Program {
            path: "/bin/sh".into(),
            args: vec!["-c".into(), script.into(), "hook".into()],
            env: BTreeMap::new(),
            timeout,
            working_dir: None,
        }
    }

    #[tokio::test]
    async fn feeds_stdin_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let program = shell(&format!("cat > {}", out.display()), Duration::from_secs(10));
        program
            .run("send", &[], &[], Some(b"{\"kind\":\"x\"}"))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"kind\":\"x\"}");
        let error = shell(
            "printf 'nope\\nline two' >&2; exit 3",
            Duration::from_secs(10),
        )
        .run("grant", &[], &[], None)
        .await
        .unwrap_err();
        assert!(
            error
                .0
                .contains("grant failed (exit status: 3): nope\\nline two"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_timed_out_program_leaves_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("late");
        let script = format!("(sleep 0.3; touch {}) & sleep 5", mark.display());
        let error = shell(&script, Duration::from_millis(100))
            .run("grant", &[], &[], None)
            .await
            .unwrap_err();
        assert!(error.0.contains("timed out"), "{error}");
        // Real time, not a lease: give the background job the time it would have needed.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!mark.exists(), "a process outlived its timeout");
    }

    #[tokio::test]
    async fn an_abandoned_program_leaves_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("late");
        let script = format!("(sleep 0.3; touch {}) & sleep 5", mark.display());
        let program = shell(&script, Duration::from_secs(30));
        let running = tokio::spawn(async move { program.run("grant", &[], &[], None).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The daemon stops: the call's task is dropped.
        running.abort();
        assert!(running.await.unwrap_err().is_cancelled());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            !mark.exists(),
            "a process of the abandoned program kept running"
        );
    }
}
