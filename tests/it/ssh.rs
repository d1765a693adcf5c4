//! The SSH building blocks against OpenSSH's own tools: certificates signed by elevate's user
//! CA read by `ssh-keygen -L` as configured, and elevate's key revocation lists agreeing with
//! `ssh-keygen -Q` (and KRLs `ssh-keygen -k` makes read back by elevate).

use std::path::Path;
use std::process::Command;

use elevate::model::SshPublicKey;
use elevate::provision::ssh::ca::{Issue, UserCa};
use elevate::provision::ssh::krl::Krl;

fn keygen(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("ssh-keygen")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("ssh-keygen from openssh-client")
}

fn issue(ca: &UserCa, dir: &Path, serial: u64) -> std::path::PathBuf {
    let public = std::fs::read_to_string(dir.join("user.pub")).unwrap();
    let key = SshPublicKey::parse(&public).unwrap();
    let certificate = ca
        .issue(&Issue {
            key: &key,
            serial,
            key_id: format!("req-{serial} alice prod-ssh"),
            principals: vec!["alice".into(), "deploy".into()],
            valid_after: 1_700_000_000,
            valid_before: 1_700_003_600,
            extensions: vec![
                ("permit-pty".into(), String::new()),
                ("elevate-request@elevate".into(), format!("req-{serial}")),
            ],
            critical_options: vec![
                (
                    "force-command".into(),
                    "/usr/local/bin/audited-shell".into(),
                ),
                ("source-address".into(), "10.0.0.0/8".into()),
            ],
        })
        .unwrap();
    let file = dir.join(format!("user-{serial}-cert.pub"));
    std::fs::write(&file, certificate.to_openssh().unwrap()).unwrap();
    file
}

#[test]
fn ssh_keygen_reads_the_certificates_and_agrees_with_the_revocation_list() {
    let dir = tempfile::tempdir().unwrap();
    let ca = UserCa::generate(&dir.path().join("ca")).unwrap();
    std::fs::write(dir.path().join("ca.pub"), ca.public_line()).unwrap();
    let made = keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "user"], dir.path());
    assert!(made.status.success(), "{made:?}");

    let revoked = issue(&ca, dir.path(), 42);
    let kept = issue(&ca, dir.path(), 43);
    let shown = keygen(&["-L", "-f", revoked.to_str().unwrap()], dir.path());
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    for expected in [
        "Type: ssh-ed25519-cert-v01@openssh.com user certificate",
        "Key ID: \"req-42 alice prod-ssh\"",
        "Serial: 42",
        "Valid: from 2023-11-14T",
        "force-command /usr/local/bin/audited-shell",
        "source-address 10.0.0.0/8",
        "permit-pty",
        "elevate-request@elevate",
    ] {
        assert!(shown.contains(expected), "{expected:?} in\n{shown}");
    }
    let principals: Vec<&str> = shown
        .lines()
        .skip_while(|line| !line.contains("Principals:"))
        .skip(1)
        .take(2)
        .map(str::trim)
        .collect();
    assert_eq!(principals, ["alice", "deploy"], "{shown}");

    let mut krl = Krl {
        version: 1,
        generated: 1_700_000_100,
        comment: "elevate".into(),
        ..Krl::default()
    };
    krl.revoked.entry(ca.public_blob()).or_default().insert(42);
    let file = dir.path().join("revoked.krl");
    std::fs::write(&file, krl.encode()).unwrap();
    let query = |certificate: &Path| {
        keygen(
            &[
                "-Q",
                "-f",
                file.to_str().unwrap(),
                certificate.to_str().unwrap(),
            ],
            dir.path(),
        )
    };
    let answer = query(&revoked);
    assert!(!answer.status.success());
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains("REVOKED"),
        "{answer:?}"
    );
    let answer = query(&kept);
    assert!(answer.status.success(), "{answer:?}");
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains("ok"),
        "{answer:?}"
    );

    // A KRL made by ssh-keygen reads back the same.
    std::fs::write(dir.path().join("spec"), "serial: 5-7\nserial: 43\n").unwrap();
    let made = keygen(
        &["-k", "-s", "ca.pub", "-f", "theirs.krl", "spec"],
        dir.path(),
    );
    assert!(made.status.success(), "{made:?}");
    let theirs = Krl::decode(&std::fs::read(dir.path().join("theirs.krl")).unwrap()).unwrap();
    for serial in [5, 6, 7, 43] {
        assert!(theirs.is_revoked(&ca.public_blob(), serial), "{serial}");
    }
    assert!(!theirs.is_revoked(&ca.public_blob(), 42));
    let answer = query(&kept);
    assert!(answer.status.success());
    let answer = keygen(
        &["-Q", "-f", "theirs.krl", kept.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        !answer.status.success(),
        "ssh-keygen agrees: 43 is revoked there"
    );
}

#[tokio::test]
async fn an_ssh_key_is_checked_at_the_edge_and_only_taken_where_a_certificate_is_signed() {
    use elevate::proto::v1 as pb;
    let env = super::harness::Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let dir = tempfile::tempdir().unwrap();
    let made = keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "user"], dir.path());
    assert!(made.status.success());
    let ask = |ssh_key: String| pb::SubmitRequestRequest {
        resource: "staging-db".into(),
        duration: "30m".into(),
        reason: "deploy".into(),
        ticket: String::new(),
        ssh_key,
    };
    let private = std::fs::read_to_string(dir.path().join("user")).unwrap();
    let made = keygen(
        &["-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", "weak"],
        dir.path(),
    );
    assert!(made.status.success());
    let weak = std::fs::read_to_string(dir.path().join("weak.pub")).unwrap();
    for (bad, why) in [
        (private, "private key"),
        (weak, "too weak"),
        ("garbage".to_owned(), "not an OpenSSH public key"),
        ("A".repeat(9000), "longer than"),
    ] {
        let refused = engineer.access.submit_request(ask(bad)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains(why), "{refused:?}");
    }
    let public = std::fs::read_to_string(dir.path().join("user.pub")).unwrap();
    let refused = engineer
        .access
        .submit_request(ask(public))
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("takes no SSH key"),
        "{refused:?}"
    );
    assert!(
        super::harness::listed(&mut engineer).await.is_empty(),
        "nothing stored"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn the_provisioner_signs_revokes_into_the_krl_ships_it_and_prunes_what_ended() {
    use std::sync::Arc;

    use elevate::clock::{Clock, ManualClock};
    use elevate::provision::ssh::{SshProvisioner, SshSettings};
    use elevate::provision::{LeaseTarget, Provisioner};

    let dir = tempfile::tempdir().unwrap();
    let made = keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "user"], dir.path());
    assert!(made.status.success());
    let ca = UserCa::generate(&dir.path().join("ca")).unwrap();
    std::fs::write(dir.path().join("ca.pub"), ca.public_line()).unwrap();
    // A hook that records each shipment, and fails while `fail` exists.
    let hook = dir.path().join("ship.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\n[ -e fail ] && exit 1\necho \"$ELEVATE_KRL\" >> shipped\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let clock = ManualClock::starting_now();
    let krl = dir.path().join("state/revoked.krl");
    let make = || {
        SshProvisioner::new(
            SshSettings {
                ca: UserCa::load(&dir.path().join("ca")).unwrap(),
                principals: vec!["{account}".into()],
                extensions: vec!["permit-pty".into()],
                force_command: None,
                source_address: Vec::new(),
                backdate: std::time::Duration::from_secs(60),
                krl: krl.clone(),
                on_krl_change: Some(elevate::Program {
                    path: hook.clone(),
                    args: Vec::new(),
                    env: Default::default(),
                    timeout: std::time::Duration::from_secs(10),
                    working_dir: Some(dir.path().to_path_buf()),
                }),
            },
            Arc::new(clock.clone()),
        )
        .unwrap()
    };
    let provisioner = make();
    assert!(krl.exists(), "an empty KRL from the start");
    let public = std::fs::read_to_string(dir.path().join("user.pub")).unwrap();
    let target = |lease: u64, minutes: u64| LeaseTarget {
        lease: format!("req-{lease}").parse().unwrap(),
        principal: "alice".parse().unwrap(),
        resource: "prod-ssh".parse().unwrap(),
        expires_at: clock
            .now()
            .saturating_add(std::time::Duration::from_secs(minutes * 60)),
        account: "alice".into(),
        ssh_key: Some(SshPublicKey::parse(&public).unwrap()),
    };
    let certificate = |granted: elevate::provision::Granted, name: &str| {
        let pairs = granted.credentials.unwrap().into_pairs();
        let file = dir.path().join(name);
        std::fs::write(&file, &pairs["ssh_certificate"]).unwrap();
        file
    };
    let early = target(1, 30);
    let first = certificate(provisioner.grant(&early).await.unwrap(), "first-cert.pub");
    let short = target(2, 5);
    let second = certificate(provisioner.grant(&short).await.unwrap(), "second-cert.pub");
    let shown =
        String::from_utf8_lossy(&keygen(&["-L", "-f", first.to_str().unwrap()], dir.path()).stdout)
            .into_owned();
    assert!(shown.contains("Serial: 1"), "{shown}");
    assert!(
        shown.contains("Key ID: \"req-1 alice prod-ssh\""),
        "{shown}"
    );
    assert!(shown.contains("elevate-request@elevate"), "{shown}");
    // An extension signs a certificate with the new end under a new serial.
    let longer = LeaseTarget {
        expires_at: early
            .expires_at
            .saturating_add(std::time::Duration::from_secs(3600)),
        ..early.clone()
    };
    let extended = certificate(
        provisioner.extend(&longer).await.unwrap(),
        "extended-cert.pub",
    );
    let shown_extended = String::from_utf8_lossy(
        &keygen(&["-L", "-f", extended.to_str().unwrap()], dir.path()).stdout,
    )
    .into_owned();
    assert!(shown_extended.contains("Serial: 3"), "{shown_extended}");
    assert!(
        shown_extended.contains("Key ID: \"req-1 alice prod-ssh\""),
        "{shown_extended}"
    );
    let listed = provisioner
        .list(&["prod-ssh".parse().unwrap()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed.len(), 2, "a grant per lease: {listed:?}");

    let revoked = |file: &Path| {
        !keygen(
            &["-Q", "-f", krl.to_str().unwrap(), file.to_str().unwrap()],
            dir.path(),
        )
        .status
        .success()
    };
    // A revoke whose hook fails is not confirmed; the KRL already revokes; the retry ships.
    std::fs::write(dir.path().join("fail"), "").unwrap();
    let error = provisioner.revoke(&early).await.unwrap_err();
    assert!(error.0.contains("on_krl_change"), "{error}");
    assert!(revoked(&first));
    assert!(revoked(&extended), "every certificate of the lease");
    assert!(!revoked(&second));
    std::fs::remove_file(dir.path().join("fail")).unwrap();
    // A new instance (a restart) knows what was issued.
    let provisioner = make();
    provisioner.revoke(&early).await.unwrap();
    let shipped = std::fs::read_to_string(dir.path().join("shipped")).unwrap();
    assert_eq!(shipped.lines().count(), 1, "{shipped}");
    assert!(revoked(&first));

    // Past its end a certificate needs no entry; ended ones are pruned from the KRL.
    clock.advance(std::time::Duration::from_secs(10 * 60));
    provisioner.revoke(&short).await.unwrap();
    assert!(!revoked(&second), "expired, not listed");
    clock.advance(std::time::Duration::from_secs(30 * 60));
    let third = target(3, 30);
    certificate(provisioner.grant(&third).await.unwrap(), "third-cert.pub");
    provisioner.revoke(&third).await.unwrap();
    let read = Krl::decode(&std::fs::read(&krl).unwrap()).unwrap();
    let serials: Vec<u64> = read.revoked.values().flatten().copied().collect();
    assert_eq!(
        serials,
        [3, 4],
        "the first certificate ended and was pruned; the extended one has not ended yet"
    );
    // A grant per lease: ending one lease never waits for another of the same account.
    assert_ne!(provisioner.grant_key(&early), provisioner.grant_key(&short));
    // An account that would be several logins to sshd is no principal.
    let sneaky = LeaseTarget {
        account: "alice,root".into(),
        ..target(5, 30)
    };
    let refused = provisioner.grant(&sneaky).await.unwrap_err();
    assert!(refused.0.contains("single SSH principal"), "{refused}");
    // A KRL whose state file is gone is refused rather than started afresh.
    drop(provisioner);
    let mut state = krl.as_os_str().to_owned();
    state.push(".state");
    std::fs::remove_file(&state).unwrap();
    let settings = SshSettings {
        ca: UserCa::load(&dir.path().join("ca")).unwrap(),
        principals: vec!["{account}".into()],
        extensions: Vec::new(),
        force_command: None,
        source_address: Vec::new(),
        backdate: std::time::Duration::from_secs(60),
        krl: krl.clone(),
        on_krl_change: None,
    };
    let error = SshProvisioner::new(settings, Arc::new(clock.clone())).unwrap_err();
    assert!(error.contains("does not"), "{error}");
}

#[test]
fn elevated_makes_the_ca_prints_what_hosts_trust_and_refuses_a_key_open_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let elevated = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let made = elevated(&["ssh", "init-ca", "--out", "ssh_user_ca"]);
    assert!(made.status.success(), "{made:?}");
    let line = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    assert!(line.starts_with("ssh-ed25519 "), "{line}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("ssh_user_ca"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !elevated(&["ssh", "init-ca", "--out", "ssh_user_ca"])
            .status
            .success()
    );

    let layout = elevate::dev::prepare(&dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("elevated.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nallow_root = true\n\
             [tls]\nca = \"state/certs/ca.crt\"\ncert = \"state/certs/server.crt\"\nkey = \"state/certs/server.key\"\n\
             [store]\npath = \"state/elevate.redb\"\n\
             [policy]\npolicy = \"{}\"\ndirectory = \"{}\"\n\
             [provisioners.files]\nkind = \"file\"\ndir = \"state/targets\"\n\
             [provisioners.prod-ssh]\nkind = \"ssh\"\nca_key = \"ssh_user_ca\"\nkrl = \"state/ssh/revoked.krl\"\n\
             source_address = [\"10.0.0.0/8\"]\n",
            layout.policy.display(),
            layout.directory.display()
        ),
    )
    .unwrap();
    let shown = elevated(&[
        "ssh",
        "ca-pubkey",
        "--config",
        "elevated.toml",
        "--provisioner",
        "prod-ssh",
    ]);
    assert!(shown.status.success(), "{shown:?}");
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), line);
    let checked = elevated(&["check-config", "--config", "elevated.toml"]);
    assert!(checked.status.success(), "{checked:?}");
    std::fs::set_permissions(
        dir.path().join("ssh_user_ca"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let refused = elevated(&["check-config", "--config", "elevated.toml"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("provisioners.prod-ssh.ca_key"),
        "{refused:?}"
    );
    let serve = elevated(&["serve", "--config", "elevated.toml"]);
    assert!(
        !serve.status.success(),
        "a CA key open to others is refused at start"
    );
    assert!(
        String::from_utf8_lossy(&serve.stderr).contains("ssh_user_ca"),
        "{serve:?}"
    );
}

/// A real sshd on a loopback port trusting `ca.pub` and reading `revoked.krl` in `dir`, as
/// root (logins as `root` only with a certificate naming it).
struct Sshd {
    port: u16,
    _child: tokio::process::Child,
}

impl Sshd {
    async fn start(dir: &Path) -> Self {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let made = keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "host_key"], dir);
        assert!(made.status.success(), "{made:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile none\n\
                 TrustedUserCAKeys {dir}/ca.pub\nRevokedKeys {dir}/revoked.krl\n\
                 AuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin yes\nUsePAM no\nStrictModes no\nLogLevel VERBOSE\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let child = tokio::process::Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("sshd from openssh-server");
        super::harness::until("sshd to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        Self {
            port,
            _child: child,
        }
    }

    /// Runs `echo` on the host as `login` with `dir/user` and its certificate `certificate`.
    async fn login(&self, dir: &Path, login: &str, certificate: &Path) -> std::process::Output {
        tokio::process::Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(dir.join("user"))
            .arg("-o")
            .arg(format!("CertificateFile={}", certificate.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "PreferredAuthentications=publickey",
                "-o",
                "ConnectTimeout=10",
                "-p",
                &self.port.to_string(),
                &format!("{login}@127.0.0.1"),
                "echo logged-in-as-$(id -un)",
            ])
            .output()
            .await
            .unwrap()
    }
}

/// A fresh key `dir/user`, and the engineer's request for `prod-ssh` with it through the
/// CLI (30 minutes), as JSON.
async fn request_with_key(daemon: &super::harness::Daemon, dir: &Path) -> serde_json::Value {
    use super::cli::{elevate, json};
    let made = keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "user"], dir);
    assert!(made.status.success(), "{made:?}");
    let public = dir.join("user.pub");
    json(
        &elevate(
            daemon,
            &[
                "--as",
                "engineer",
                "-o",
                "json",
                "request",
                "prod-ssh",
                "--for",
                "30m",
                "--reason",
                "deploy",
                "--ssh-key",
                public.to_str().unwrap(),
            ],
        )
        .await,
    )
}

/// An environment whose policy has `prod-ssh` (auto-approved for engineering) granted by an
/// `ssh` provisioner whose CA and KRL are in `dir`; the engineer's account there is `root`.
fn ssh_env(dir: &Path, clock: elevate::clock::ManualClock) -> super::harness::Env {
    use std::sync::Arc;
    let ca = UserCa::generate(&dir.join("ca")).unwrap();
    std::fs::write(dir.join("ca.pub"), ca.public_line()).unwrap();
    let env = super::harness::Env::starting_at(clock.clone())
        .policy(
            "auditor_groups = [\"auditors\"]\nadmin_groups = [\"admins\"]\n\
             [resources.prod-ssh]\nprovisioner = \"prod-ssh\"\neligible_groups = [\"engineering\"]\n\
             default_duration = \"1h\"\nmax_duration = \"8h\"\nauto_approve = true\n\
             [resources.prod-ssh.break_glass]\ngroups = [\"engineering\"]\nmax_duration = \"1h\"\n\
             review_group = \"security\"\nreview_within = \"24h\"\nescalate_to = [\"group:admins\"]\n",
        )
        .directory(
            "[principals.engineer]\ngroups = [\"engineering\"]\naccounts = { prod-ssh = \"root\" }\n\
             [principals.admin]\ngroups = [\"admins\"]\n[principals.auditor]\ngroups = [\"auditors\"]\n\
             [principals.security]\ngroups = [\"security\"]\n",
        );
    let provisioner = elevate::provision::ssh::SshProvisioner::new(
        elevate::provision::ssh::SshSettings {
            ca,
            principals: vec!["{account}".into()],
            extensions: vec!["permit-pty".into()],
            force_command: None,
            source_address: Vec::new(),
            backdate: std::time::Duration::from_secs(60),
            krl: dir.join("revoked.krl"),
            on_krl_change: None,
        },
        Arc::new(clock),
    )
    .unwrap();
    env.provisioners
        .lock()
        .unwrap()
        .push(("prod-ssh".into(), Arc::new(provisioner)));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_certificate_logs_in_until_it_is_released_and_never_as_another_login() {
    use super::cli::elevate;
    let dir = tempfile::tempdir().unwrap();
    let env = ssh_env(dir.path(), elevate::clock::ManualClock::starting_now());
    let daemon = env.start().await;
    let sshd = Sshd::start(dir.path()).await;
    let granted = request_with_key(&daemon, dir.path()).await;
    assert_eq!(granted["state"], "active", "{granted}");
    let id = granted["id"].as_str().unwrap().to_owned();
    let certificate = dir.path().join("user-cert.pub");
    assert_eq!(
        granted["credentials"]["ssh_certificate_file"],
        certificate.display().to_string()
    );
    let shown = String::from_utf8_lossy(
        &keygen(&["-L", "-f", certificate.to_str().unwrap()], dir.path()).stdout,
    )
    .into_owned();
    assert!(
        shown.contains(&format!("Key ID: \"{id} engineer prod-ssh\"")),
        "{shown}"
    );
    let logged = sshd.login(dir.path(), "root", &certificate).await;
    assert!(
        String::from_utf8_lossy(&logged.stdout).contains("logged-in-as-root"),
        "{logged:?}\n{}",
        std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
    );
    // A certificate for root is no certificate for another login.
    let other = sshd.login(dir.path(), "nobody", &certificate).await;
    assert!(!other.status.success());
    assert!(!String::from_utf8_lossy(&other.stdout).contains("logged-in"));
    // Released: the serial is in the KRL and sshd refuses the same certificate.
    let released = elevate(&daemon, &["--as", "engineer", "release", &id]).await;
    assert!(released.status.success(), "{released:?}");
    let refused = sshd.login(dir.path(), "root", &certificate).await;
    assert!(!refused.status.success(), "{refused:?}");
    let query = keygen(
        &["-Q", "-f", "revoked.krl", certificate.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        String::from_utf8_lossy(&query.stdout).contains("REVOKED"),
        "{query:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_refuses_a_certificate_whose_lease_has_ended_by_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    // The daemon's clock two hours back: a 30-minute lease's certificate ended long ago.
    let now = elevate::clock::Clock::now(&elevate::clock::SystemClock);
    let past = elevate::clock::ManualClock::new(
        now.saturating_sub(std::time::Duration::from_secs(2 * 3600)),
    );
    let env = ssh_env(dir.path(), past);
    let daemon = env.start().await;
    let sshd = Sshd::start(dir.path()).await;
    let granted = request_with_key(&daemon, dir.path()).await;
    assert_eq!(granted["state"], "active", "{granted}");
    let refused = sshd
        .login(dir.path(), "root", &dir.path().join("user-cert.pub"))
        .await;
    assert!(!refused.status.success(), "{refused:?}");
    let log = std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
    assert!(log.contains("expired") || log.contains("invalid"), "{log}");
    // The lease expires on the daemon's clock: no KRL entry, and the audit entry says why.
    let id = granted["id"].as_str().unwrap().to_owned();
    env.advance(std::time::Duration::from_secs(31 * 60));
    let engineer = daemon.client("engineer").await;
    super::harness::until_state(&engineer, &id, "expired").await;
    let expired = daemon
        .events(&id)
        .await
        .into_iter()
        .find(|event| event.action == "lease.expired")
        .unwrap();
    assert!(
        expired.details["reason"].contains("no KRL entry"),
        "{:?}",
        expired.details
    );
    let krl = Krl::decode(&std::fs::read(dir.path().join("revoked.krl")).unwrap()).unwrap();
    assert!(
        krl.revoked.values().all(|serials| serials.is_empty()),
        "{krl:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prod_ssh_is_auto_approved_for_sre_and_routed_to_the_manager_for_engineering() {
    use super::cli::{elevate, json};
    let env = super::harness::Env::new();
    let daemon = env.start().await;
    let dir = tempfile::tempdir().unwrap();
    assert!(
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "user"], dir.path())
            .status
            .success()
    );
    let public = dir.path().join("user.pub");
    let ask = |who: &'static str| {
        let public = public.clone();
        let daemon = &daemon;
        async move {
            json(
                &elevate(
                    daemon,
                    &[
                        "--as",
                        who,
                        "-o",
                        "json",
                        "request",
                        "prod-ssh",
                        "--reason",
                        "deploy",
                        "--ssh-key",
                        public.to_str().unwrap(),
                    ],
                )
                .await,
            )
        }
    };
    let oncall = ask("oncall").await;
    assert_eq!(oncall["state"], "active", "{oncall}");
    let certificate = dir.path().join("user-cert.pub");
    let shown = String::from_utf8_lossy(
        &keygen(&["-L", "-f", certificate.to_str().unwrap()], dir.path()).stdout,
    )
    .into_owned();
    assert!(
        shown.contains("Principals: \n                oncall"),
        "{shown}"
    );
    std::fs::remove_file(&certificate).unwrap();

    let engineer = ask("engineer").await;
    assert_eq!(engineer["state"], "pending", "{engineer}");
    let id = engineer["id"].as_str().unwrap().to_owned();
    let approved = elevate(&daemon, &["--as", "manager", "approve", &id]).await;
    assert!(approved.status.success(), "{approved:?}");
    let out = dir.path().join("collected-cert.pub");
    let collected = elevate(
        &daemon,
        &[
            "--as",
            "engineer",
            "credentials",
            &id,
            "--ssh-cert-out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert!(collected.status.success(), "{collected:?}");
    let shown =
        String::from_utf8_lossy(&keygen(&["-L", "-f", out.to_str().unwrap()], dir.path()).stdout)
            .into_owned();
    assert!(
        shown.contains(&format!("Key ID: \"{id} engineer prod-ssh\"")),
        "{shown}"
    );
    assert!(
        env.layout.ssh_krl.exists(),
        "the demo KRL is under the state directory"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_glass_on_an_ssh_resource_signs_a_certificate_for_the_given_key() {
    use super::cli::{elevate, json};
    let dir = tempfile::tempdir().unwrap();
    let env = ssh_env(dir.path(), elevate::clock::ManualClock::starting_now());
    let daemon = env.start().await;
    let sshd = Sshd::start(dir.path()).await;
    assert!(
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "user"], dir.path())
            .status
            .success()
    );
    let public = dir.path().join("user.pub");
    let without = elevate(
        &daemon,
        &[
            "--as",
            "engineer",
            "break-glass",
            "prod-ssh",
            "--reason",
            "outage",
            "--incident",
            "INC-9",
        ],
    )
    .await;
    assert!(!without.status.success(), "an ssh resource needs a key");
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("--ssh-key"),
        "{without:?}"
    );
    let broken = json(
        &elevate(
            &daemon,
            &[
                "--as",
                "engineer",
                "-o",
                "json",
                "break-glass",
                "prod-ssh",
                "--for",
                "30m",
                "--reason",
                "outage",
                "--incident",
                "INC-9",
                "--ssh-key",
                public.to_str().unwrap(),
            ],
        )
        .await,
    );
    assert_eq!(broken["state"], "active", "{broken}");
    let certificate = dir.path().join("user-cert.pub");
    let logged = sshd.login(dir.path(), "root", &certificate).await;
    assert!(
        String::from_utf8_lossy(&logged.stdout).contains("logged-in-as-root"),
        "{logged:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_revokes_a_certificate_no_live_lease_holds() {
    use elevate::provision::LeaseTarget;
    let dir = tempfile::tempdir().unwrap();
    let env = ssh_env(dir.path(), elevate::clock::ManualClock::starting_now());
    let daemon = env.start().await;
    assert!(
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "user"], dir.path())
            .status
            .success()
    );
    let provisioner = env
        .provisioners
        .lock()
        .unwrap()
        .iter()
        .find(|(name, _)| name == "prod-ssh")
        .map(|(_, provisioner)| provisioner.clone())
        .unwrap();
    // A certificate signed outside any lease (a lost revoke, a hand-made grant).
    let public = std::fs::read_to_string(dir.path().join("user.pub")).unwrap();
    let stray = provisioner
        .grant(&LeaseTarget {
            lease: "req-999".parse().unwrap(),
            principal: "engineer".parse().unwrap(),
            resource: "prod-ssh".parse().unwrap(),
            expires_at: elevate::clock::Clock::now(&env.clock)
                .saturating_add(std::time::Duration::from_secs(3600)),
            account: "root".into(),
            ssh_key: Some(SshPublicKey::parse(&public).unwrap()),
        })
        .await
        .unwrap();
    let certificate = dir.path().join("stray-cert.pub");
    std::fs::write(
        &certificate,
        &stray.credentials.unwrap().into_pairs()["ssh_certificate"],
    )
    .unwrap();
    let mut admin = daemon.client("admin").await;
    let corrections = super::harness::reconcile(&mut admin, "prod-ssh")
        .await
        .unwrap();
    assert_eq!(corrections.len(), 1, "{corrections:?}");
    assert!(corrections[0].contains("lease-999"), "{corrections:?}");
    let query = keygen(
        &["-Q", "-f", "revoked.krl", certificate.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        String::from_utf8_lossy(&query.stdout).contains("REVOKED"),
        "{query:?}"
    );
    daemon.stop().await;
}
