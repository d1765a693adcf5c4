//! The `file` provisioner: one holders file per resource, one account (by default the
//! principal's name) per line. It is the dev-mode target, and a real one for systems that read
//! an allow-list file. Every line of a holders file is elevate's: reconciliation removes lines
//! no lease covers.
//!
//! Writes are atomic (temporary file, fsync, rename, fsync of the directory) and serialized per
//! file within the daemon. After every change the file is read back, so `Ok` means the file on
//! disk says what was asked.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{BoxFuture, Granted, Holding, LeaseTarget, ProvisionError, Provisioner};
use crate::keyed::KeyedLocks;
use crate::model::ResourceName;

/// Keeps `DIR/<resource>` holding one line per principal with access.
#[derive(Debug)]
pub struct FileProvisioner {
    dir: PathBuf,
    /// One holder per holders file.
    files: KeyedLocks<PathBuf>,
}

impl FileProvisioner {
    /// Holders files go into `dir`, which is created when missing.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: KeyedLocks::default(),
        }
    }

    /// The holders file of `resource`.
    pub fn holders_file(&self, resource: &str) -> PathBuf {
        self.dir.join(resource)
    }

    /// Principals listed in the holders file of `resource`.
    pub fn holders(&self, resource: &str) -> Result<Vec<String>, ProvisionError> {
        read_holders(&self.holders_file(resource))
    }

    async fn change(
        &self,
        resource: &ResourceName,
        account: &str,
        present: bool,
    ) -> Result<(), ProvisionError> {
        let path = self.holders_file(resource.as_str());
        let _held = self.files.lock(path.clone()).await;
        super::fence::check()?;
        let dir = self.dir.clone();
        let account = account.to_owned();
        tokio::task::spawn_blocking(move || update(&dir, &path, &account, present))
            .await
            .map_err(|_| ProvisionError("holders file update was interrupted".to_owned()))?
    }
}

fn read_holders(path: &Path) -> Result<Vec<String>, ProvisionError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(ProvisionError(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

fn update(dir: &Path, path: &Path, principal: &str, present: bool) -> Result<(), ProvisionError> {
    let io = |what: &str, error: std::io::Error| {
        ProvisionError(format!("cannot {what} {}: {error}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    let mut holders = read_holders(path)?;
    let listed = holders.iter().any(|h| h == principal);
    if listed != present {
        if present {
            holders.push(principal.to_owned());
        } else {
            holders.retain(|h| h != principal);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&temporary).map_err(|e| io("write", e))?;
        for holder in &holders {
            writeln!(file, "{holder}").map_err(|e| io("write", e))?;
        }
        file.sync_all().map_err(|e| io("sync", e))?;
        std::fs::rename(&temporary, path).map_err(|e| io("replace", e))?;
        if let Ok(directory) = std::fs::File::open(dir) {
            let _ = directory.sync_all();
        }
    }
    // Read back: report success only if the file now says what was asked.
    let now_listed = read_holders(path)?.iter().any(|h| h == principal);
    if now_listed != present {
        return Err(ProvisionError(format!(
            "{} still {} {principal} after the update",
            path.display(),
            if present { "lacks" } else { "lists" }
        )));
    }
    Ok(())
}

impl Provisioner for FileProvisioner {
    fn grant<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        Box::pin(async move {
            self.change(&target.resource, &target.account, true).await?;
            Ok(Granted::default())
        })
    }

    fn revoke<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(self.change(&target.resource, &target.account, false))
    }

    fn list<'a>(
        &'a self,
        resources: &'a [ResourceName],
    ) -> BoxFuture<'a, Result<Option<Vec<Holding>>, ProvisionError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for resource in resources {
                for account in self.holders(resource.as_str())? {
                    out.push(Holding {
                        key: format!("{resource}/{account}"),
                        account,
                        resource: Some(resource.clone()),
                    });
                }
            }
            Ok(Some(out))
        })
    }

    fn remove<'a>(&'a self, holding: &'a Holding) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            let resource = holding
                .resource
                .as_ref()
                .ok_or_else(|| ProvisionError(format!("{} names no holders file", holding.key)))?;
            self.change(resource, &holding.account, false).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Principal, RequestId, ResourceName, Timestamp};

    fn target(principal: &str) -> LeaseTarget {
        LeaseTarget {
            ssh_key: None,
            lease: RequestId::from_raw(1),
            principal: Principal::parse(principal).unwrap(),
            resource: ResourceName::parse("db").unwrap(),
            expires_at: Timestamp::from_unix_millis(0),
            account: principal.to_owned(),
        }
    }

    #[tokio::test]
    async fn grant_and_revoke_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileProvisioner::new(dir.path().join("targets"));
        files.grant(&target("alice")).await.unwrap();
        files.grant(&target("alice")).await.unwrap();
        files.grant(&target("bob")).await.unwrap();
        assert_eq!(files.holders("db").unwrap(), ["alice", "bob"]);
        files.revoke(&target("alice")).await.unwrap();
        files.revoke(&target("alice")).await.unwrap();
        assert_eq!(files.holders("db").unwrap(), ["bob"]);
        files.revoke(&target("carol")).await.unwrap();
    }

    #[tokio::test]
    async fn lists_and_removes_holders() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileProvisioner::new(dir.path().join("targets"));
        files.grant(&target("alice")).await.unwrap();
        let db = ResourceName::parse("db").unwrap();
        let other = ResourceName::parse("other").unwrap();
        let listed = files.list(&[db, other]).await.unwrap().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "db/alice");
        assert_eq!(listed[0].key, files.grant_key(&target("alice")));
        files.remove(&listed[0]).await.unwrap();
        assert!(files.holders("db").unwrap().is_empty());
    }
}
