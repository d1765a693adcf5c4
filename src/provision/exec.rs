//! The `exec` provisioner: runs a configured program, without a shell, once per grant or
//! revoke. The program gets the action and the lease as arguments and in its environment, and
//! must be idempotent: exit status 0 means done (granted, or confirmed gone).
//!
//! Invocation: `PROGRAM [ARGS...] <grant|revoke> <principal> <resource> <lease-id> <expires-at>`
//! with `ELEVATE_ACTION`, `ELEVATE_PRINCIPAL`, `ELEVATE_RESOURCE`, `ELEVATE_LEASE_ID`,
//! `ELEVATE_EXPIRES_AT` (RFC 3339) and `ELEVATE_EXPIRES_AT_UNIX_MS` set. The environment is
//! otherwise cleared except for `PATH` and the configured variables; stdin is empty; the working
//! directory is the configured one (the configuration file's directory by default). A program
//! that runs longer than the timeout is killed and the attempt counts as failed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{BoxFuture, LeaseTarget, ProvisionError, Provisioner};

/// Most bytes of a failing program's output kept in the error.
const OUTPUT_LIMIT: usize = 512;

/// Runs a program to grant and revoke.
#[derive(Debug, Clone)]
pub struct ExecProvisioner {
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
            .kill_on_drop(true);
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        let program = self.program.display();
        let child = command
            .spawn()
            .map_err(|error| ProvisionError(format!("cannot run {program}: {error}")))?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                return Err(ProvisionError(format!("{program} {action}: {error}")));
            }
            Err(_) => {
                return Err(ProvisionError(format!(
                    "{program} {action} timed out after {}",
                    humantime::format_duration(self.timeout)
                )));
            }
        };
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut said: String = stderr.trim().chars().take(OUTPUT_LIMIT).collect();
        if said.is_empty() {
            said = "no output".to_owned();
        }
        Err(ProvisionError(format!(
            "{program} {action} failed ({}): {said}",
            output.status
        )))
    }
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

    #[tokio::test]
    async fn failure_and_timeout_are_errors_with_the_reason() {
        let error = shell("echo nope >&2; exit 3", Duration::from_secs(10))
            .grant(&target())
            .await
            .unwrap_err();
        assert!(error.0.contains("nope"), "{error}");
        assert!(error.0.contains("exit status: 3"), "{error}");
        let error = shell("sleep 5", Duration::from_millis(100))
            .revoke(&target())
            .await
            .unwrap_err();
        assert!(error.0.contains("timed out"), "{error}");
    }
}
