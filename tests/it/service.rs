//! The daemon as a system service: readiness and stopping told over a fake `NOTIFY_SOCKET`,
//! watchdog keep-alives, `SIGHUP` re-reading certificates, the start-up refusals (root, keys
//! open to others), and the certificate deny list taking effect without a restart.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use elevate::clock::ManualClock;
use elevate::model::Timestamp;
use elevate::proto::v1 as pb;
use elevate::proto::v1::access_service_client::AccessServiceClient;
use elevate::tls::issue::{self, CertDir, DEFAULT_TRUST_DOMAIN};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

use super::harness::*;

/// How long a starting or stopping daemon process may take.
const PATIENCE: Duration = Duration::from_secs(30);

fn elevated(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
        .args(args)
        .output()
        .unwrap()
}

/// `elevated serve …` as a child process with a fake service manager.
struct Service {
    child: Child,
    notify: UnixDatagram,
    stderr: PathBuf,
    /// Kept for its Drop: the notification socket and the log live here.
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts `elevated ARGS` with `NOTIFY_SOCKET` (and `env`) set.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("notify");
        let notify = UnixDatagram::bind(&socket).unwrap();
        let stderr = dir.path().join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(args)
            .env("NOTIFY_SOCKET", &socket)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            child,
            notify,
            stderr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The next notification.
    async fn message(&self) -> String {
        let mut buffer = vec![0u8; 4096];
        match tokio::time::timeout(PATIENCE, self.notify.recv(&mut buffer)).await {
            Ok(Ok(length)) => String::from_utf8(buffer[..length].to_vec()).unwrap(),
            _ => panic!("no notification from the daemon; its log:\n{}", self.log()),
        }
    }

    /// The next notification with the line `line`, skipping watchdog keep-alives.
    async fn wait_for(&self, line: &str) -> String {
        loop {
            let message = self.message().await;
            if message.lines().any(|l| l == line) {
                return message;
            }
            assert!(
                message.lines().all(|l| l == "WATCHDOG=1"),
                "expected {line}, got {message:?}"
            );
        }
    }

    /// The endpoint the daemon announced on stdout.
    async fn endpoint(&mut self) -> String {
        let stdout = self.child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap_or_default();
        let start = line.find("https://").expect(&line);
        // Drain the rest so that the daemon never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        line[start..].trim().to_owned()
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id().unwrap()).unwrap()).unwrap();
        kill_process(pid, signal).unwrap();
    }

    /// Sends SIGTERM; asserts that STOPPING=1 arrives and the process exits with status 0.
    async fn terminate(mut self) {
        self.signal(Signal::TERM);
        let stopping = self.wait_for("STOPPING=1").await;
        assert!(stopping.contains("STATUS=stopping"), "{stopping}");
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status}; its log:\n{}", self.log());
    }
}

/// `WhoAmI` over a fresh connection presenting `certs/NAME.crt`: the principal, or why not.
async fn who_am_i(endpoint: &str, certs: &Path, name: &str) -> Result<String, String> {
    let channel = channel(
        endpoint,
        &certs.join("ca.crt"),
        Some((
            &certs.join(format!("{name}.crt")),
            &certs.join(format!("{name}.key")),
        )),
    )
    .await?;
    AccessServiceClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|answer| answer.into_inner().principal)
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

/// The DER of the certificate the daemon at `address` presents to a new connection.
async fn presented_certificate(address: &str, certs: &Path) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in elevate::tls::load_certs(&certs.join("ca.crt")).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            elevate::tls::load_certs(&certs.join("engineer.crt")).unwrap(),
            elevate::tls::load_key(&certs.join("engineer.key")).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn certificate_file(file: &Path) -> Vec<u8> {
    elevate::tls::load_certs(file).unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_comes_after_recovery_and_the_listener_and_stopping_at_sigterm() {
    // Leases made half an hour ago: engineer's (10m) expired while no daemon ran, oncall's (2h)
    // still runs.
    let mut env = Env::new();
    let start = Timestamp::from_system_time(std::time::SystemTime::now())
        .saturating_sub(Duration::from_secs(30 * 60));
    env.clock = ManualClock::new(start);
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let overdue = request(&mut engineer, "staging-db", "10m", "", "")
        .await
        .unwrap();
    let mut oncall = daemon.client("oncall").await;
    let running = request(&mut oncall, "staging-db", "2h", "", "")
        .await
        .unwrap();
    assert_eq!(env.holders("staging-db"), ["engineer", "oncall"]);
    daemon.stop().await;

    let root = env.layout.root.to_str().unwrap();
    let mut service = Service::start(
        &[
            "serve",
            "--dev",
            "--state-dir",
            root,
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let ready = service.wait_for("READY=1").await;
    // At READY recovery is done: the overdue lease is already off its target...
    assert_eq!(
        env.holders("staging-db"),
        ["oncall"],
        "{ready}\n{}",
        service.log()
    );
    assert!(ready.contains("STATUS=serving on 127.0.0.1:"), "{ready}");
    // ...and the port answers.
    let endpoint = service.endpoint().await;
    let certs = &env.layout.certs.0;
    assert_eq!(
        who_am_i(&endpoint, certs, "engineer").await.unwrap(),
        "engineer"
    );
    let files = elevate::cli::client::ClientFiles {
        ca: certs.join("ca.crt"),
        cert: certs.join("auditor.crt"),
        key: certs.join("auditor.key"),
    };
    let mut auditor = elevate::cli::client::connect(&endpoint, &files)
        .await
        .unwrap();
    assert_eq!(state(&status(&mut auditor, &overdue.id).await), "expired");
    assert_eq!(state(&status(&mut auditor, &running.id).await), "active");

    service.terminate().await;
}

/// A configuration laid out as `systemd/elevated.toml` expects, under `root` instead of `/`:
/// certificates, the example policy, directory and hook. Returns the configuration file.
fn production_layout(root: &Path) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let etc = root.join("etc/elevate");
    let state = root.join("var/lib/elevate");
    std::fs::create_dir_all(etc.join("hooks")).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    for file in ["policy.toml", "directory.toml", "hooks/holders.sh"] {
        std::fs::copy(manifest.join("examples").join(file), etc.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(manifest.join("systemd/elevated.toml"))
        .unwrap()
        .replace("/etc/elevate", etc.to_str().unwrap())
        .replace("/var/lib/elevate", state.to_str().unwrap())
        .replace("listen = \"0.0.0.0:7443\"", "listen = \"127.0.0.1:0\"");
    let file = etc.join("elevated.toml");
    std::fs::write(&file, config).unwrap();
    let certs = etc.join("certs");
    issue::init(&certs, &[], false).unwrap();
    for name in ["engineer", "olga"] {
        issue::issue(&certs, name, DEFAULT_TRUST_DOMAIN, 1, false).unwrap();
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_daemon_feeds_the_watchdog_and_rereads_certificates_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let config = production_layout(dir.path());
    let config = config.to_str().unwrap();
    let checked = elevated(&["check-config", "--config", config]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    let mut service = Service::start(
        &["serve", "--config", config, "--allow-root"],
        &[("WATCHDOG_USEC", "200000")],
    );
    service.wait_for("READY=1").await;
    let endpoint = service.endpoint().await;
    let address = endpoint.trim_start_matches("https://").to_owned();
    // Keep-alives every 100 ms.
    for _ in 0..3 {
        assert_eq!(service.message().await, "WATCHDOG=1\n");
    }

    let certs = CertDir(dir.path().join("etc/elevate/certs"));
    let first = presented_certificate(&address, &certs.0).await;
    assert_eq!(first, certificate_file(&certs.server_cert()));
    issue::renew_server(&certs.0, &[]).unwrap();
    let renewed = certificate_file(&certs.server_cert());
    assert_ne!(first, renewed);
    service.signal(Signal::HUP);
    let reloading = service.wait_for("RELOADING=1").await;
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let ready = service.wait_for("READY=1").await;
    assert!(ready.contains("; reloaded"), "{ready}");
    assert_eq!(presented_certificate(&address, &certs.0).await, renewed);

    // A broken certificate file is refused; the renewed one stays in force.
    std::fs::write(certs.server_cert(), "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    service.signal(Signal::HUP);
    service.wait_for("RELOADING=1").await;
    let ready = service.wait_for("READY=1").await;
    assert!(
        ready.contains("reload failed, previous files in force"),
        "{ready}"
    );
    assert!(ready.contains("server.crt"), "{ready}");
    assert_eq!(presented_certificate(&address, &certs.0).await, renewed);
    assert_eq!(who_am_i(&endpoint, &certs.0, "olga").await.unwrap(), "olga");

    service.terminate().await;
}

#[test]
fn root_is_refused_without_allow_root() {
    if !elevate::service::preflight::running_as_root() {
        eprintln!("skipped: not running as root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = production_layout(dir.path());
    let output = elevated(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("running as root"), "{stderr}");
    assert!(stderr.contains("--allow-root"), "{stderr}");
    assert!(stderr.contains("allow_root = true"), "{stderr}");
}

#[test]
fn a_private_key_open_to_others_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = production_layout(dir.path());
    let key = dir.path().join("etc/elevate/certs/server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let expected = format!(
        "tls.key: {key}: private key is readable by others (mode 0644); run: chmod 600 {key}",
        key = key.display()
    );
    let config = config.to_str().unwrap();
    for args in [
        ["serve", "--config", config, "--allow-root"].as_slice(),
        ["check-config", "--config", config].as_slice(),
    ] {
        let output = elevated(args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
    // Group read is allowed (a key owned by root, readable through the daemon's group).
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let output = elevated(&["check-config", "--config", config]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_from_the_next_connection() {
    let env = Env::new();
    let daemon = env.start().await;
    let endpoint = daemon.endpoint();
    let certs = env.layout.certs.0.clone();
    assert_eq!(
        who_am_i(&endpoint, &certs, "engineer").await.unwrap(),
        "engineer"
    );

    let revoked = elevated(&[
        "certs",
        "revoke",
        "--dir",
        certs.to_str().unwrap(),
        "--name",
        "engineer",
        "--reason",
        "laptop lost",
    ]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("(engineer)"));

    // No restart: the next connection is refused, another person's is not.
    let refused = who_am_i(&endpoint, &certs, "engineer").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        who_am_i(&endpoint, &certs, "manager").await.unwrap(),
        "manager"
    );
    let audited = until("the refusal to be audited", || async {
        daemon.all_events().await.into_iter().find(|event| {
            event.action == "auth.refused"
                && event.principal.as_ref().map(|p| p.as_str()) == Some("engineer")
        })
    })
    .await;
    assert_eq!(audited.details["reason"], "certificate revoked");

    // Revoking it again changes nothing; bad input is refused and changes nothing.
    let list = certs.join("revoked.toml");
    let before = std::fs::read(&list).unwrap();
    let again = elevated(&[
        "certs",
        "revoke",
        "--dir",
        certs.to_str().unwrap(),
        "--name",
        "engineer",
    ]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("revoked already"));
    for (flag, value, expected) in [
        ("--name", "nobody", "no certificate"),
        ("--serial", "not-hex", "malformed serial"),
    ] {
        let output = elevated(&[
            "certs",
            "revoke",
            "--dir",
            certs.to_str().unwrap(),
            flag,
            value,
        ]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
    assert_eq!(std::fs::read(&list).unwrap(), before);

    // A new certificate for the same person has a new serial and gets in.
    issue::issue(&certs, "engineer", DEFAULT_TRUST_DOMAIN, 1, true).unwrap();
    assert_eq!(
        who_am_i(&endpoint, &certs, "engineer").await.unwrap(),
        "engineer"
    );
    let listed = elevated(&["certs", "list-revoked", "--dir", certs.to_str().unwrap()]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("\tengineer\t") && listed.contains("laptop lost"),
        "{listed}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn an_unusable_deny_list_refuses_every_certificate_until_fixed() {
    let env = Env::new();
    let daemon = env.start().await;
    let endpoint = daemon.endpoint();
    let certs = env.layout.certs.0.clone();
    let list = certs.join("revoked.toml");
    std::fs::write(&list, "[[revoked]]\nserial = 12\n").unwrap();
    let refused = who_am_i(&endpoint, &certs, "manager").await;
    assert!(refused.is_err(), "a corrupt deny list let a certificate in");
    std::fs::write(&list, "").unwrap();
    assert_eq!(
        who_am_i(&endpoint, &certs, "manager").await.unwrap(),
        "manager"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn reloaded_certificates_serve_new_connections_and_a_broken_file_keeps_the_old() {
    let env = Env::new();
    let daemon = env.start().await;
    let address = daemon.addr.to_string();
    let certs = env.layout.certs.clone();
    let first = presented_certificate(&address, &certs.0).await;
    issue::renew_server(&certs.0, &[]).unwrap();
    // Not before the reload.
    assert_eq!(presented_certificate(&address, &certs.0).await, first);
    daemon.reloader.reload_tls().unwrap();
    let renewed = certificate_file(&certs.server_cert());
    assert_eq!(presented_certificate(&address, &certs.0).await, renewed);

    // A key that does not match the certificate, then one open to others: both refused.
    let key = std::fs::read(certs.server_key()).unwrap();
    issue::init(&env.layout.root.join("other"), &[], false).unwrap();
    std::fs::copy(env.layout.root.join("other/server.key"), certs.server_key()).unwrap();
    let error = daemon.reloader.reload_tls().unwrap_err().to_string();
    assert!(error.contains("does not match"), "{error}");
    std::fs::write(certs.server_key(), key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(certs.server_key(), std::fs::Permissions::from_mode(0o604))
            .unwrap();
    }
    let error = daemon.reloader.reload_tls().unwrap_err().to_string();
    assert!(error.contains("chmod 600"), "{error}");
    assert_eq!(presented_certificate(&address, &certs.0).await, renewed);
    let mut engineer = daemon.client("engineer").await;
    request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap();
    daemon.stop().await;
}
