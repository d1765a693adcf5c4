//! The `ssh` provisioner: a grant is a user certificate for the holder's key, valid from the
//! grant time less `backdate` until the lease's end, for explicit principals; an early end
//! puts the certificate's serial in the KRL (written whole, atomically, read back before the
//! revoke is confirmed, then shipped by `on_krl_change`). A certificate past its end needs no
//! entry: entries whose certificates have ended are pruned.
//!
//! What was issued lives in a state file beside the KRL (`KRL.state`, JSON): the next serial,
//! and each live certificate's serial, lease, account, resource and end. It is written before a
//! certificate leaves the provisioner, so a serial is never given out twice and a revoke after
//! a restart still knows every certificate of the lease.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ca::{Issue, UserCa};
use super::krl::Krl;
use crate::BoxFuture;
use crate::clock::SharedClock;
use crate::model::ResourceName;
use crate::process::Program;
use crate::provision::{Credentials, Granted, Holding, LeaseTarget, ProvisionError, Provisioner};

/// The extension every certificate carries, naming its request.
pub const REQUEST_EXTENSION: &str = "elevate-request@elevate";

/// The credential a grant hands the holder: the certificate line.
pub const CERTIFICATE: &str = "ssh_certificate";

/// How an `ssh` provisioner is configured.
#[derive(Debug)]
pub struct SshSettings {
    /// The CA.
    pub ca: UserCa,
    /// The logins a certificate is valid for; `{account}` and `{principal}` are replaced.
    pub principals: Vec<String>,
    /// Extensions (`permit-pty`, …).
    pub extensions: Vec<String>,
    /// The `force-command` critical option.
    pub force_command: Option<String>,
    /// The `source-address` critical option (CIDR blocks).
    pub source_address: Vec<String>,
    /// How long before the grant a certificate becomes valid (clock skew).
    pub backdate: Duration,
    /// The KRL hosts read.
    pub krl: PathBuf,
    /// Ships the KRL to the hosts after each change.
    pub on_krl_change: Option<Program>,
}

/// One certificate still in force, or revoked and not yet past its end.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Issued {
    lease: u64,
    account: String,
    resource: String,
    valid_before: u64,
    revoked: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    next_serial: u64,
    /// The KRL's version.
    version: u64,
    /// Whether `on_krl_change` still has to ship the KRL as written.
    unshipped: bool,
    certificates: BTreeMap<u64, Issued>,
}

/// Signs certificates and keeps the KRL. Calls are serialized by one lock (the state and the
/// KRL are whole files).
#[derive(Debug)]
pub struct SshProvisioner {
    settings: SshSettings,
    clock: SharedClock,
    // A tokio lock: held across the file writes and the hook of one call.
    state: tokio::sync::Mutex<()>,
}

impl SshProvisioner {
    /// A provisioner with `settings`; writes an empty KRL when there is none yet (sshd refuses
    /// every key while its `RevokedKeys` file is missing).
    pub fn new(settings: SshSettings, clock: SharedClock) -> Result<Self, String> {
        if settings.principals.is_empty() {
            return Err("principals: at least one login is needed (an empty list would be valid for every login)".into());
        }
        let provisioner = Self {
            settings,
            clock,
            state: tokio::sync::Mutex::new(()),
        };
        let state_exists = provisioner.state_file().exists();
        match (provisioner.settings.krl.exists(), state_exists) {
            (false, _) => {
                let state = provisioner.load().map_err(|e| e.0)?;
                provisioner.write_krl(&state).map_err(|e| e.0)?;
                provisioner.save(&state).map_err(|e| e.0)?;
            }
            (true, false) => {
                // Starting afresh would reuse serials and drop every revoked one.
                return Err(format!(
                    "{} exists but {} does not: what was issued is unknown; restore the state file (or remove both to start a new list)",
                    provisioner.settings.krl.display(),
                    provisioner.state_file().display()
                ));
            }
            (true, true) => {}
        }
        Ok(provisioner)
    }

    fn state_file(&self) -> PathBuf {
        let mut name = self.settings.krl.as_os_str().to_owned();
        name.push(".state");
        PathBuf::from(name)
    }

    fn load(&self) -> Result<State, ProvisionError> {
        match std::fs::read(self.state_file()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
                ProvisionError(format!(
                    "{}: unreadable: {error}",
                    self.state_file().display()
                ))
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State {
                next_serial: 1,
                ..State::default()
            }),
            Err(error) => Err(ProvisionError(format!(
                "{}: {error}",
                self.state_file().display()
            ))),
        }
    }

    fn save(&self, state: &State) -> Result<(), ProvisionError> {
        let text = serde_json::to_string(state).map_err(|e| ProvisionError(e.to_string()))?;
        atomic_write(&self.state_file(), text.as_bytes())
    }

    /// Writes the KRL of the revoked certificates still in force, then reads it back: `Ok`
    /// only when the file on disk revokes every one of them.
    fn write_krl(&self, state: &State) -> Result<(), ProvisionError> {
        let ca = self.settings.ca.public_blob();
        let mut krl = Krl {
            version: state.version,
            generated: self.clock.now().unix_millis() / 1000,
            comment: "elevate: certificates of leases ended early".into(),
            ..Krl::default()
        };
        let serials: Vec<u64> = state
            .certificates
            .iter()
            .filter(|(_, issued)| issued.revoked)
            .map(|(serial, _)| *serial)
            .collect();
        krl.revoked
            .entry(ca.clone())
            .or_default()
            .extend(serials.iter().copied());
        let file = &self.settings.krl;
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ProvisionError(format!("{}: {e}", parent.display())))?;
        }
        atomic_write(file, &krl.encode())?;
        let read = std::fs::read(file)
            .map_err(|e| ProvisionError(format!("{}: reading it back: {e}", file.display())))?;
        let read = Krl::decode(&read)
            .map_err(|e| ProvisionError(format!("{}: reading it back: {e}", file.display())))?;
        if let Some(missing) = serials
            .iter()
            .find(|serial| !read.is_revoked(&ca, **serial))
        {
            return Err(ProvisionError(format!(
                "{}: serial {missing} is not in the file read back",
                file.display()
            )));
        }
        Ok(())
    }

    /// Runs `on_krl_change` when the KRL changed since it last succeeded.
    async fn ship(&self, state: &mut State) -> Result<(), ProvisionError> {
        if !state.unshipped {
            return Ok(());
        }
        if let Some(hook) = &self.settings.on_krl_change {
            let krl = self.settings.krl.display().to_string();
            hook.run(
                "on_krl_change",
                &[krl.as_str()],
                &[("ELEVATE_KRL", krl.as_str())],
                None,
            )
            .await
            .map_err(|error| ProvisionError(format!("on_krl_change: {error}")))?;
        }
        state.unshipped = false;
        self.save(state)
    }

    /// Revokes the live certificates `pick` selects; returns once the KRL that revokes them is
    /// written, read back and shipped.
    async fn revoke_where(&self, pick: impl Fn(&Issued) -> bool) -> Result<(), ProvisionError> {
        let _one = self.state.lock().await;
        crate::provision::fence::check()?;
        let mut state = self.load()?;
        let now = self.clock.now().unix_millis() / 1000;
        let mut changed = false;
        for issued in state.certificates.values_mut() {
            // A certificate past its end needs no entry: it ends by itself.
            if pick(issued) && !issued.revoked && issued.valid_before > now {
                issued.revoked = true;
                changed = true;
            }
        }
        // Kept past its end by `backdate` too: hosts whose clocks run behind still accept it.
        let skew = self.settings.backdate.as_secs();
        let before = state.certificates.len();
        state
            .certificates
            .retain(|_, issued| issued.valid_before.saturating_add(skew) > now);
        changed |= state.certificates.len() != before;
        if changed {
            state.version += 1;
            state.unshipped = true;
        }
        if state.unshipped {
            // Written (and read back) on every call until shipped: a KRL that could not be
            // written is written again by the retry, never taken for done.
            let written = self.write_krl(&state);
            self.save(&state)?;
            written?;
        }
        self.ship(&mut state).await
    }

    /// Signs a certificate for `target`'s key, valid until `target.expires_at`, under a new
    /// serial recorded before it leaves.
    async fn sign(&self, target: &LeaseTarget) -> Result<Granted, ProvisionError> {
        let Some(key) = &target.ssh_key else {
            return Err(ProvisionError(
                "the request names no SSH public key to sign".into(),
            ));
        };
        let _one = self.state.lock().await;
        crate::provision::fence::check()?;
        let mut state = self.load()?;
        let serial = state.next_serial.max(1);
        state.next_serial = serial + 1;
        let now = self.clock.now();
        let valid_after = now.saturating_sub(self.settings.backdate).unix_millis() / 1000;
        let valid_before = target.expires_at.unix_millis() / 1000;
        let lease = target.lease.to_string();
        let mut extensions: Vec<(String, String)> = self
            .settings
            .extensions
            .iter()
            .map(|name| (name.clone(), String::new()))
            .collect();
        extensions.push((REQUEST_EXTENSION.to_owned(), lease.clone()));
        let mut critical_options = Vec::new();
        if let Some(command) = &self.settings.force_command {
            critical_options.push(("force-command".to_owned(), command.clone()));
        }
        if !self.settings.source_address.is_empty() {
            critical_options.push((
                "source-address".to_owned(),
                self.settings.source_address.join(","),
            ));
        }
        let certificate = self
            .settings
            .ca
            .issue(&Issue {
                key,
                serial,
                key_id: format!("{lease} {} {}", target.principal, target.resource),
                principals: self.principals(target)?,
                valid_after,
                valid_before,
                extensions,
                critical_options,
            })
            .map_err(|error| ProvisionError(error.to_string()))?;
        let line = certificate
            .to_openssh()
            .map_err(|error| ProvisionError(error.to_string()))?;
        state.certificates.insert(
            serial,
            Issued {
                lease: target.lease.raw(),
                account: target.account.clone(),
                resource: target.resource.to_string(),
                valid_before,
                revoked: false,
            },
        );
        // Recorded before it leaves: a serial is never given out twice.
        self.save(&state)?;
        Ok(Granted {
            credentials: Some(Credentials::new([
                (CERTIFICATE.to_owned(), line),
                ("ssh_certificate_serial".to_owned(), serial.to_string()),
            ])),
        })
    }

    /// The principals of a certificate for `target`: each template with `{account}` and
    /// `{principal}` replaced in one pass; refused when one would not be a single login (sshd
    /// splits principals on commas).
    fn principals(&self, target: &LeaseTarget) -> Result<Vec<String>, ProvisionError> {
        let mut out = Vec::new();
        for template in &self.settings.principals {
            let mut login = String::new();
            let mut rest = template.as_str();
            while let Some(at) = rest.find('{') {
                login.push_str(&rest[..at]);
                let tail = &rest[at..];
                if let Some(after) = tail.strip_prefix("{account}") {
                    login.push_str(&target.account);
                    rest = after;
                } else if let Some(after) = tail.strip_prefix("{principal}") {
                    login.push_str(target.principal.as_str());
                    rest = after;
                } else {
                    login.push('{');
                    rest = &tail[1..];
                }
            }
            login.push_str(rest);
            if login.is_empty()
                || login
                    .chars()
                    .any(|c| c.is_whitespace() || c == ',' || c.is_control())
            {
                return Err(ProvisionError(format!(
                    "the login {login:?} is not a single SSH principal (no spaces or commas)"
                )));
            }
            out.push(login);
        }
        Ok(out)
    }
}

/// The grant key of lease `lease` on `resource`.
fn lease_key(resource: &str, lease: u64) -> String {
    format!("{resource}/lease-{lease}")
}

fn atomic_write(file: &std::path::Path, bytes: &[u8]) -> Result<(), ProvisionError> {
    let failed = |e: std::io::Error| ProvisionError(format!("{}: {e}", file.display()));
    let mut temporary = file.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // A fresh file of our own (never through a link left in its place).
        let _ = std::fs::remove_file(&temporary);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temporary)
            .map_err(failed)?;
        out.write_all(bytes).map_err(failed)?;
        out.sync_all().map_err(failed)?;
    }
    std::fs::rename(&temporary, file).map_err(failed)?;
    let parent = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|directory| directory.sync_all())
        .map_err(failed)?;
    Ok(())
}

impl Provisioner for SshProvisioner {
    fn grant<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        Box::pin(self.sign(target))
    }

    /// A certificate with the new end; the one given before ends when it did.
    fn extend<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        Box::pin(self.sign(target))
    }

    fn revoke<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>> {
        let lease = target.lease.raw();
        Box::pin(self.revoke_where(move |issued| issued.lease == lease))
    }

    fn needs_ssh_key(&self) -> bool {
        true
    }

    /// One grant per lease: leases never share a certificate, so ending one always revokes
    /// its own, whatever other leases of the account are live.
    fn grant_key(&self, target: &LeaseTarget) -> String {
        lease_key(target.resource.as_str(), target.lease.raw())
    }

    fn expiry_note(&self) -> Option<&'static str> {
        Some("the certificate ended with the lease; no KRL entry was needed")
    }

    fn list<'a>(
        &'a self,
        resources: &'a [ResourceName],
    ) -> BoxFuture<'a, Result<Option<Vec<Holding>>, ProvisionError>> {
        Box::pin(async move {
            let _one = self.state.lock().await;
            let state = self.load()?;
            let now = self.clock.now().unix_millis() / 1000;
            let mut out: Vec<Holding> = state
                .certificates
                .values()
                .filter(|issued| !issued.revoked && issued.valid_before > now)
                .filter(|issued| resources.iter().any(|r| r.as_str() == issued.resource))
                .map(|issued| Holding {
                    key: lease_key(&issued.resource, issued.lease),
                    account: issued.account.clone(),
                    resource: ResourceName::parse(&issued.resource).ok(),
                })
                .collect();
            out.sort();
            out.dedup();
            Ok(Some(out))
        })
    }

    fn remove<'a>(&'a self, holding: &'a Holding) -> BoxFuture<'a, Result<(), ProvisionError>> {
        let key = holding.key.clone();
        Box::pin(self.revoke_where(move |issued| lease_key(&issued.resource, issued.lease) == key))
    }
}
