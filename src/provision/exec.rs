//! The `exec` provisioner: runs a configured program, without a shell, once per grant or
//! revoke. The program gets the action and the lease as arguments and in its environment, and
//! must be idempotent: exit status 0 means done (granted, or confirmed gone).
//!
//! Invocation: `PROGRAM [ARGS...] <grant|revoke> <principal> <resource> <lease-id>
//! <expires-at>` with `ELEVATE_ACTION`, `ELEVATE_PRINCIPAL`, `ELEVATE_ACCOUNT` (the directory's
//! account for the principal, or its name), `ELEVATE_RESOURCE`, `ELEVATE_LEASE_ID`,
//! `ELEVATE_EXPIRES_AT` (RFC 3339) and `ELEVATE_EXPIRES_AT_UNIX_MS` set, the way
//! [`crate::process`] runs programs: cleared environment, own process group killed when done or
//! timed out. Calls are serialized per resource, so a hook never races another hook of this
//! daemon on the same target.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{BoxFuture, Granted, LeaseTarget, ProvisionError, Provisioner};
use crate::keyed::KeyedLocks;
use crate::model::ResourceName;
use crate::process::Program;

/// Runs a program to grant and revoke.
#[derive(Debug)]
pub struct ExecProvisioner {
    /// One call at a time per resource.
    resources: KeyedLocks<ResourceName>,
    program: Program,
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
            program: Program {
                path: program.into(),
                args,
                env,
                timeout,
                working_dir: None,
            },
        }
    }

    /// Runs the program in `dir`.
    pub fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.program.working_dir = Some(dir.into());
        self
    }

    async fn run(&self, action: &str, target: &LeaseTarget) -> Result<(), ProvisionError> {
        let _held = self.resources.lock(target.resource.clone()).await;
        super::fence::check()?;
        let lease = target.lease.to_string();
        let expires = target.expires_at.rfc3339();
        let expires_ms = target.expires_at.unix_millis().to_string();
        self.program
            .run(
                action,
                &[
                    action,
                    target.principal.as_str(),
                    target.resource.as_str(),
                    &lease,
                    &expires,
                ],
                &[
                    ("ELEVATE_ACTION", action),
                    ("ELEVATE_PRINCIPAL", target.principal.as_str()),
                    ("ELEVATE_ACCOUNT", &target.account),
                    ("ELEVATE_RESOURCE", target.resource.as_str()),
                    ("ELEVATE_LEASE_ID", &lease),
                    ("ELEVATE_EXPIRES_AT", &expires),
                    ("ELEVATE_EXPIRES_AT_UNIX_MS", &expires_ms),
                ],
                None,
            )
            .await
            .map_err(|error| ProvisionError(error.0))
    }
}

impl Provisioner for ExecProvisioner {
    fn grant<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        Box::pin(async move {
            self.run("grant", target).await?;
            Ok(Granted::default())
        })
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
            ssh_key: None,
            lease: RequestId::from_raw(9),
            principal: Principal::parse("alice").unwrap(),
            resource: ResourceName::parse("db").unwrap(),
            expires_at: Timestamp::from_unix_millis(1_800_000_000_000),
            account: "alice".to_owned(),
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
                        hook.grant(&target).await.map(drop)
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
