//! The `exec` provisioner: runs a configured program, without a shell, once per grant or
//! revoke. The program gets the action and the lease as arguments and in its environment, and
//! must be idempotent: exit status 0 means done (granted, or confirmed gone).
//!
//! Invocation: `PROGRAM [ARGS...] <grant|revoke> <principal> <resource> <lease-id> <expires-at>`
//! with `ELEVATE_ACTION`, `ELEVATE_PRINCIPAL`, `ELEVATE_RESOURCE`, `ELEVATE_LEASE_ID`,
//! `ELEVATE_EXPIRES_AT` (RFC 3339) and `ELEVATE_EXPIRES_AT_UNIX_MS` set. The environment is
//! otherwise cleared except for `PATH` and the configured variables; stdin is empty; the working
//! directory is the configured one (the configuration file's directory by default).
//!
//! The program runs in a process group of its own. It is done when it has exited and its output
//! is closed (by it and by everything it started); then, or when its timeout passes, or when
//! the daemon stops meanwhile, the whole group is killed, so nothing it started in its group can
//! still change the target after elevate recorded the outcome. (A process that leaves the group
//! on purpose, with `setsid`, is beyond reach: hooks must not do that.) The group is killed
//! before the program is reaped, so its id cannot have been reused by then. An attempt that timed
//! out counts as failed. Calls are serialized per resource, so a hook never races another hook
//! of this daemon on the same target.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::{BoxFuture, LeaseTarget, ProvisionError, Provisioner};
use crate::keyed::KeyedLocks;
use crate::model::{ResourceName, one_line};

/// Most bytes of a program's error output kept (and shown in the error).
const OUTPUT_LIMIT: usize = 512;

/// Runs a program to grant and revoke.
#[derive(Debug)]
pub struct ExecProvisioner {
    /// One call at a time per resource.
    resources: KeyedLocks<ResourceName>,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    timeout: Duration,
    working_dir: Option<PathBuf>,
}

impl ExecProvisioner {
    /// A provisioner running `program` with fixed leading `args`, extra `env`, and `timeout`.
    pub fn new(
        program: impl Into<PathBuf>,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Self {
        Self {
            resources: KeyedLocks::default(),
            program: program.into(),
            args,
            env,
            timeout,
            working_dir: None,
        }
    }

    /// Runs the program in `dir`.
    pub fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    async fn run(&self, action: &str, target: &LeaseTarget) -> Result<(), ProvisionError> {
        let _held = self.resources.lock(target.resource.clone()).await;
        let expires = target.expires_at.rfc3339();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .args([
                action,
                target.principal.as_str(),
                target.resource.as_str(),
                &target.lease.to_string(),
                &expires,
            ])
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .envs(&self.env)
            .env("ELEVATE_ACTION", action)
            .env("ELEVATE_PRINCIPAL", target.principal.as_str())
            .env("ELEVATE_RESOURCE", target.resource.as_str())
            .env("ELEVATE_LEASE_ID", target.lease.to_string())
            .env("ELEVATE_EXPIRES_AT", &expires)
            .env(
                "ELEVATE_EXPIRES_AT_UNIX_MS",
                target.expires_at.unix_millis().to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        let program = self.program.display();
        let child = command
            .spawn()
            .map_err(|error| ProvisionError(format!("cannot run {program}: {error}")))?;
        let mut running = Running::new(child);
        let stdout = running.child.stdout.take();
        let stderr = running.child.stderr.take();
        let finished = tokio::time::timeout(self.timeout, async {
            let (_, stderr) = tokio::join!(drain(stdout), drain(stderr));
            running.exited().await;
            stderr
        })
        .await;
        // Whatever the program left running is stopped before the outcome is recorded.
        running.kill_group();
        let status = running.reap().await;
        let stderr = match finished {
            Ok(stderr) => stderr,
            Err(_) => {
                return Err(ProvisionError(format!(
                    "{program} {action} timed out after {}",
                    humantime::format_duration(self.timeout)
                )));
            }
        };
        let status =
            status.map_err(|error| ProvisionError(format!("{program} {action}: {error}")))?;
        if status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&stderr);
        let mut said: String = one_line(stderr.trim()).chars().take(OUTPUT_LIMIT).collect();
        if said.is_empty() {
            said = "no output".to_owned();
        }
        Err(ProvisionError(format!(
            "{program} {action} failed ({status}): {said}"
        )))
    }
}

/// A hook's child process, leading its own process group. Dropping it (the daemon stops while
/// the hook runs) kills the group; the leader is still unreaped then, which pins the group id.
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
                Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
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

impl Provisioner for ExecProvisioner {
    fn grant<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(self.run("grant", target))
    }

    fn revoke<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(self.run("revoke", target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Principal, RequestId, ResourceName, Timestamp};

    fn target() -> LeaseTarget {
        LeaseTarget {
            lease: RequestId::from_raw(9),
            principal: Principal::parse("alice").unwrap(),
            resource: ResourceName::parse("db").unwrap(),
            expires_at: Timestamp::from_unix_millis(1_800_000_000_000),
        }
    }

    fn shell(script: &str, timeout: Duration) -> ExecProvisioner {
        ExecProvisioner::new(
            "/bin/sh",
            vec!["-c".into(), script.into(), "hook".into()],
            BTreeMap::from([("EXTRA".to_owned(), "x".to_owned())]),
            timeout,
        )
    }

    #[tokio::test]
    async fn passes_the_lease_as_arguments_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = format!(
            "echo \"$1 $2 $3 $4 $5|$ELEVATE_ACTION $ELEVATE_PRINCIPAL $ELEVATE_LEASE_ID $ELEVATE_EXPIRES_AT_UNIX_MS $EXTRA\" >> {}",
            log.display()
        );
        let hook = shell(&script, Duration::from_secs(10));
        hook.grant(&target()).await.unwrap();
        hook.revoke(&target()).await.unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "grant alice db req-9 2027-01-15T08:00:00.000Z|grant alice req-9 1800000000000 x"
        );
        assert!(lines[1].starts_with("revoke alice db req-9"));
    }

    fn holders_hook(dir: &std::path::Path) -> ExecProvisioner {
        let hook =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hooks/holders.sh");
        ExecProvisioner::new(
            hook,
            Vec::new(),
            BTreeMap::from([("HOLDERS_DIR".to_owned(), dir.display().to_string())]),
            Duration::from_secs(10),
        )
    }

    fn lease(principal: &str) -> LeaseTarget {
        LeaseTarget {
            principal: Principal::parse(principal).unwrap(),
            ..target()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_on_one_resource_never_lose_an_update() {
        let dir = tempfile::tempdir().unwrap();
        let hook = std::sync::Arc::new(holders_hook(dir.path()));
        let grants: Vec<_> = (0..20)
            .map(|n| {
                let hook = hook.clone();
                tokio::spawn(async move { hook.grant(&lease(&format!("user{n}"))).await })
            })
            .collect();
        for grant in grants {
            grant.await.unwrap().unwrap();
        }
        let mixed: Vec<_> = (0..20)
            .map(|n| {
                let hook = hook.clone();
                tokio::spawn(async move {
                    let target = lease(&format!("user{n}"));
                    if n % 2 == 0 {
                        hook.revoke(&target).await
                    } else {
                        hook.grant(&target).await
                    }
                })
            })
            .collect();
        for call in mixed {
            call.await.unwrap().unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join("db.allow")).unwrap();
        let mut holders: Vec<&str> = text.lines().collect();
        holders.sort_unstable();
        let mut expected: Vec<String> = (0..20)
            .filter(|n| n % 2 == 1)
            .map(|n| format!("user{n}"))
            .collect();
        expected.sort_unstable();
        assert_eq!(holders, expected);
    }

    #[tokio::test]
    async fn a_timed_out_hook_leaves_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("late");
        let script = format!("(sleep 0.3; touch {}) & sleep 5", mark.display());
        let error = shell(&script, Duration::from_millis(100))
            .grant(&target())
            .await
            .unwrap_err();
        assert!(error.0.contains("timed out"), "{error}");
        // Real time, not a lease: give the background job the time it would have needed.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!mark.exists(), "a process of the hook outlived its timeout");
    }

    #[tokio::test]
    async fn a_hook_abandoned_mid_run_leaves_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("late");
        let script = format!("(sleep 0.3; touch {}) & sleep 5", mark.display());
        let hook = std::sync::Arc::new(shell(&script, Duration::from_secs(30)));
        let running = {
            let hook = hook.clone();
            tokio::spawn(async move { hook.grant(&target()).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The daemon stops: the grant's task is dropped.
        running.abort();
        assert!(running.await.unwrap_err().is_cancelled());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            !mark.exists(),
            "a process of the abandoned hook kept running"
        );
    }

    #[tokio::test]
    async fn failure_and_timeout_are_errors_with_the_reason() {
        let error = shell(
            "printf 'nope\\nline two' >&2; exit 3",
            Duration::from_secs(10),
        )
        .grant(&target())
        .await
        .unwrap_err();
        assert!(error.0.contains("nope\\nline two"), "{error}");
        assert!(error.0.contains("exit status: 3"), "{error}");
        let error = shell("sleep 5", Duration::from_millis(100))
            .revoke(&target())
            .await
            .unwrap_err();
        assert!(error.0.contains("timed out"), "{error}");
    }
}
