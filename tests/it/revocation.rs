//! A revoked certificate stops working on its very next call, on a connection opened before the
//! revocation: by the deny list (`elevated certs revoke`) or by a CRL (`openssl ca -gencrl`,
//! `elevated certs revoke --crl`). Broken or expired CRLs and SPIFFE-only identities;
//! connections do not live forever; handshake floods are bounded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use elevate::proto::v1 as pb;
use elevate::tls::CrlExpired;
use elevate::tls::issue::DEFAULT_TRUST_DOMAIN;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt;
use tonic::Code;

use super::harness::*;

/// Runs `elevated` with `args`; panics unless it succeeds. Returns its output.
async fn elevated(args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "elevated {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn openssl(args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A minimal `openssl ca` setup over the daemon's CA in `certs`: revoke with it, then publish
/// its CRL at `crl` in DER (written beside and renamed, as a publisher would).
struct OpensslCa {
    config: PathBuf,
    crl: PathBuf,
    _dir: tempfile::TempDir,
}

impl OpensslCa {
    fn new(certs: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.txt"), "").unwrap();
        std::fs::write(dir.path().join("crlnumber"), "01\n").unwrap();
        let config = dir.path().join("ca.cnf");
        std::fs::write(
            &config,
            format!(
                "[ ca ]\ndefault_ca = elevate\n[ elevate ]\ndatabase = {}\ncrlnumber = {}\ncertificate = {}\nprivate_key = {}\ndefault_md = sha256\ndefault_crl_days = 7\n",
                dir.path().join("index.txt").display(),
                dir.path().join("crlnumber").display(),
                certs.join("ca.crt").display(),
                certs.join("ca.key").display(),
            ),
        )
        .unwrap();
        let ca = Self {
            config,
            crl: dir.path().join("ca.crl"),
            _dir: dir,
        };
        ca.publish();
        ca
    }

    fn revoke(&self, cert: &Path) {
        openssl(&[
            "ca",
            "-config",
            self.config.to_str().unwrap(),
            "-revoke",
            cert.to_str().unwrap(),
        ]);
    }

    fn publish(&self) {
        let pem = self.crl.with_extension("pem");
        let fresh = self.crl.with_extension("new");
        openssl(&[
            "ca",
            "-config",
            self.config.to_str().unwrap(),
            "-gencrl",
            "-out",
            pem.to_str().unwrap(),
        ]);
        openssl(&[
            "crl",
            "-in",
            pem.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            fresh.to_str().unwrap(),
        ]);
        std::fs::rename(fresh, &self.crl).unwrap();
    }
}

fn use_crls(env: &Env, crls: Vec<PathBuf>, expired: CrlExpired) {
    env.tweak(move |options| {
        options.tls.crls = crls.clone();
        options.tls.crl_expired = expired;
    });
}

#[tokio::test]
async fn a_channel_opened_before_certs_revoke_is_refused_on_its_next_call() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    assert_eq!(who_am_i(&mut engineer).await.unwrap(), "engineer");

    let certs = env.layout.certs.0.to_str().unwrap().to_owned();
    let said = elevated(&[
        "certs",
        "revoke",
        "--dir",
        &certs,
        "--name",
        "engineer",
        "--reason",
        "laptop stolen",
    ])
    .await;
    assert!(said.contains("from its next call on"), "{said}");

    // The same channel, the same HTTP/2 connection: refused at once, for every kind of call.
    let error = who_am_i(&mut engineer).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    assert!(error.message().contains("revoked"), "{}", error.message());
    let error = request(&mut engineer, "staging-db", "30m", "more access", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    assert!(env.holders("staging-db").is_empty());
    // Others are not affected; the refusal is audited.
    assert_eq!(who_am_i(&mut manager).await.unwrap(), "manager");
    until("the refusal in the audit trail", || async {
        let events = daemon.all_events().await;
        events
            .iter()
            .any(|e| {
                e.action == "auth.refused"
                    && e.principal.as_ref().map(|p| p.as_str()) == Some("engineer")
            })
            .then_some(())
    })
    .await;
    daemon.stop().await;
}

/// A raw mutual-TLS connection as `name`, handshake done, nothing sent.
async fn raw_connection(
    daemon: &Daemon,
    name: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let files = daemon.files(name);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes the connection; `None` when it is still open after `within`.
async fn closed_within(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    within: Duration,
) -> Option<()> {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn an_open_connection_of_a_revoked_certificate_is_closed() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = raw_connection(&daemon, "engineer").await;
    let mut manager = raw_connection(&daemon, "manager").await;
    assert!(
        closed_within(&mut engineer, Duration::from_millis(1500))
            .await
            .is_none(),
        "open before the revocation"
    );
    elevate::tls::revoked::revoke(
        &env.layout.certs.0,
        &elevate::tls::revoked::Target::Name("engineer".into()),
        "",
        elevate::model::Timestamp::from_unix_millis(0),
    )
    .unwrap();
    assert!(
        closed_within(&mut engineer, Duration::from_secs(10))
            .await
            .is_some(),
        "the revoked certificate's connection is closed"
    );
    assert!(
        closed_within(&mut manager, Duration::from_millis(500))
            .await
            .is_none(),
        "another's stays open"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_channel_opened_before_an_openssl_crl_lists_it_is_refused_on_its_next_call() {
    let env = Env::new();
    let certs = env.layout.certs.0.clone();
    let ca = OpensslCa::new(&certs);
    use_crls(&env, vec![ca.crl.clone()], CrlExpired::Use);
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    assert_eq!(who_am_i(&mut engineer).await.unwrap(), "engineer");

    ca.revoke(&certs.join("engineer.crt"));
    // Revoked in openssl's database only: nothing published yet, so nothing changes.
    assert_eq!(who_am_i(&mut engineer).await.unwrap(), "engineer");
    ca.publish();

    let error = who_am_i(&mut engineer).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    assert!(error.message().contains("revoked"), "{}", error.message());
    // A new connection is refused too; the manager is not listed.
    let mut again = daemon.client("engineer").await;
    assert!(who_am_i(&mut again).await.is_err());
    assert_eq!(who_am_i(&mut manager).await.unwrap(), "manager");
    daemon.stop().await;
}

#[tokio::test]
async fn certs_revoke_writes_a_crl_the_daemon_enforces_on_its_own() {
    let env = Env::new();
    let certs = env.layout.certs.0.clone();
    let crl = certs.join("ca.crl");
    let dir = certs.to_str().unwrap();
    // An empty CRL to start with: `--crl` writes the whole deny list, here one other entry.
    elevated(&[
        "certs",
        "revoke",
        "--dir",
        dir,
        "--name",
        "auditor",
        "--crl",
        crl.to_str().unwrap(),
    ])
    .await;
    // The daemon reads a deny list of its own (empty), so only the CRL can refuse anyone.
    let empty = tempfile::tempdir().unwrap();
    let deny = empty.path().join("revoked.toml");
    env.tweak(move |options| options.tls.revoked = Some(deny.clone()));
    use_crls(&env, vec![crl.clone()], CrlExpired::Use);
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    assert_eq!(who_am_i(&mut engineer).await.unwrap(), "engineer");
    // Listed: its connections are refused.
    let mut auditor = daemon.client("auditor").await;
    assert!(who_am_i(&mut auditor).await.is_err());

    let said = elevated(&[
        "certs",
        "revoke",
        "--dir",
        dir,
        "--name",
        "engineer",
        "--crl",
        crl.to_str().unwrap(),
        "--crl-valid",
        "1d",
    ])
    .await;
    assert!(said.contains("listing 2 certificate(s)"), "{said}");
    let error = who_am_i(&mut engineer).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    let mut manager = daemon.client("manager").await;
    assert_eq!(who_am_i(&mut manager).await.unwrap(), "manager");
    daemon.stop().await;
}

/// A CRL signed by a key other than the CA's, under the CA's own name.
fn forged_crl(certs: &Path, out: &Path) {
    let ca_pem = std::fs::read_to_string(certs.join("ca.crt")).unwrap();
    let forger =
        rcgen::Issuer::from_ca_cert_pem(&ca_pem, rcgen::KeyPair::generate().unwrap()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(1),
        crl_number: rcgen::SerialNumber::from(7u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&forger)
    .unwrap();
    std::fs::write(out, crl.pem().unwrap()).unwrap();
}

#[tokio::test]
async fn a_crl_not_signed_by_the_ca_refuses_everyone() {
    let env = Env::new();
    let certs = env.layout.certs.0.clone();
    let crl = certs.join("ca.crl");
    forged_crl(&certs, &crl);
    use_crls(&env, vec![crl.clone()], CrlExpired::Use);
    let error = env.try_start().await.err().expect("refused at start");
    let message = error.to_string();
    assert!(
        message.contains("ca.crl") && message.contains("signature"),
        "{message}"
    );

    // Replaced by a forged one while the daemon runs: nobody gets in until it is fixed.
    elevated(&[
        "certs",
        "revoke",
        "--dir",
        certs.to_str().unwrap(),
        "--name",
        "auditor",
        "--crl",
        crl.to_str().unwrap(),
    ])
    .await;
    let daemon = env.start().await;
    let mut manager = daemon.client("manager").await;
    assert_eq!(who_am_i(&mut manager).await.unwrap(), "manager");
    forged_crl(&certs, &crl);
    let error = who_am_i(&mut manager).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    std::fs::write(&crl, "garbage").unwrap();
    assert_eq!(
        who_am_i(&mut manager).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    daemon.stop().await;
}

#[tokio::test]
async fn an_expired_crl_is_used_and_reported_or_refuses_everyone() {
    let env = Env::new();
    let certs = env.layout.certs.0.clone();
    let crl = certs.join("ca.crl");
    elevate::tls::revoked::revoke(
        &certs,
        &elevate::tls::revoked::Target::Name("auditor".into()),
        "",
        elevate::model::Timestamp::from_unix_millis(0),
    )
    .unwrap();
    // Issued two days ago, current for one: past its nextUpdate since yesterday.
    let two_days_ago = elevate::model::Timestamp::from_system_time(std::time::SystemTime::now())
        .saturating_sub(Duration::from_secs(2 * 86400));
    elevate::tls::revoked::write_crl(&certs, &crl, Duration::from_secs(86400), two_days_ago)
        .unwrap();
    let empty = tempfile::tempdir().unwrap();
    let deny = empty.path().join("revoked.toml");
    env.tweak(move |options| options.tls.revoked = Some(deny.clone()));
    use_crls(&env, vec![crl.clone()], CrlExpired::Use);
    let daemon = env.start().await;
    let mut manager = daemon.client("manager").await;
    assert_eq!(who_am_i(&mut manager).await.unwrap(), "manager");
    let mut auditor = daemon.client("auditor").await;
    assert!(who_am_i(&mut auditor).await.is_err(), "still used");
    let metrics = metrics_text(&daemon).await;
    let line = metrics
        .lines()
        .find(|line| line.starts_with("elevate_tls_crl_expired{"))
        .unwrap_or_else(|| panic!("no CRL metric in {metrics}"));
    assert!(line.contains("ca.crl") && line.ends_with(" 1"), "{line}");
    daemon.stop().await;

    use_crls(&env, vec![crl.clone()], CrlExpired::Refuse);
    let daemon = env.start().await;
    let mut manager = daemon.client("manager").await;
    assert!(who_am_i(&mut manager).await.is_err(), "nobody gets in");
    // A current CRL lets everyone in again, without a restart.
    elevate::tls::revoked::write_crl(
        &certs,
        &crl,
        Duration::from_secs(86400),
        elevate::model::Timestamp::from_system_time(std::time::SystemTime::now()),
    )
    .unwrap();
    assert_eq!(who_am_i(&mut manager).await.unwrap(), "manager");
    daemon.stop().await;
}

/// Issues a certificate for `name` signed by the CA in `certs`, with only a common name.
fn common_name_certificate(certs: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ca_pem = std::fs::read_to_string(certs.join("ca.crt")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(certs.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let cert_file = certs.join(format!("{name}-cn.crt"));
    let key_file = certs.join(format!("{name}-cn.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

async fn who_am_i_with(
    daemon: &Daemon,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<String, String> {
    let channel = channel(&daemon.endpoint(), ca, Some((cert, key))).await?;
    elevate::proto::v1::access_service_client::AccessServiceClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner().principal)
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

#[tokio::test]
async fn spiffe_identity_refuses_certificates_named_by_their_common_name() {
    let env = Env::new();
    let certs = env.layout.certs.0.clone();
    let ca = certs.join("ca.crt");
    let (cn_cert, cn_key) = common_name_certificate(&certs, "engineer");

    let daemon = env.start().await;
    // By default a certificate without a SPIFFE id is named by its common name.
    assert_eq!(
        who_am_i_with(&daemon, &ca, &cn_cert, &cn_key)
            .await
            .unwrap(),
        "engineer"
    );
    daemon.stop().await;

    env.tweak(|options| options.tls.identity = elevate::tls::IdentitySource::Spiffe);
    let daemon = env.start().await;
    let refused = who_am_i_with(&daemon, &ca, &cn_cert, &cn_key)
        .await
        .unwrap_err();
    assert!(
        refused.starts_with("Unauthenticated") && refused.contains("SPIFFE"),
        "{refused}"
    );
    // The demo certificates carry spiffe://elevate.local/user/NAME and still work.
    let mut engineer = daemon.client("engineer").await;
    assert_eq!(who_am_i(&mut engineer).await.unwrap(), "engineer");
    assert_eq!(DEFAULT_TRUST_DOMAIN, "elevate.local");
    daemon.stop().await;
}

#[tokio::test]
async fn no_connection_outlives_its_maximum_age() {
    let env = Env::new();
    env.tweak(|options| {
        options.tls.max_connection_age = Duration::from_secs(1);
        options.tls.max_connection_age_grace = Duration::from_secs(1);
    });
    let daemon = env.start().await;
    let mut engineer = raw_connection(&daemon, "engineer").await;
    assert!(
        closed_within(&mut engineer, Duration::from_secs(15))
            .await
            .is_some(),
        "closed after its maximum age"
    );
    // Clients reconnect and go on.
    let mut clients = daemon.client("engineer").await;
    assert_eq!(who_am_i(&mut clients).await.unwrap(), "engineer");
    daemon.stop().await;
}

/// The open file descriptors of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handshake_flood_holds_few_descriptors_and_shuts_nobody_out() {
    // The real daemon in its own process (defaults: 256 handshakes in progress, 32 from one
    // address), so that its descriptors can be counted apart from the attacker's.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (child, endpoint) = super::crash::spawn(&state).await;
    let pid = child.id().unwrap();
    let address = endpoint.trim_start_matches("https://").to_owned();
    let before = open_files(pid);
    // 600 connections that never start their handshake, from the honest client's address.
    const FLOOD: usize = 600;
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    // The daemon accepts them all and closes all but the newest 32 of the address.
    let closed = until("the daemon to drop the crowded handshakes", || {
        let closed = flood
            .iter()
            .filter(|tcp| matches!(tcp.try_read(&mut [0u8; 1]), Ok(0)))
            .count();
        async move { (closed >= FLOOD - 32).then_some(closed) }
    })
    .await;
    assert!(closed <= FLOOD, "{closed}");
    let held = open_files(pid).saturating_sub(before);
    assert!(
        held <= 32 + 8,
        "the daemon holds {held} descriptors for the flood"
    );
    // An honest client from the same address gets through meanwhile.
    let mut engineer = super::crash::connect(&endpoint, &state, "engineer").await;
    assert_eq!(who_am_i(&mut engineer).await.unwrap(), "engineer");
    // Still serving, and still holding few, while the flood stays open.
    let mut manager = super::crash::connect(&endpoint, &state, "manager").await;
    assert_eq!(who_am_i(&mut manager).await.unwrap(), "manager");
    assert!(open_files(pid).saturating_sub(before) <= 40);
    drop(flood);
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_cli_follows_its_request_across_connection_recycling() {
    let env = Env::new();
    env.tweak(|options| {
        options.tls.max_connection_age = Duration::from_secs(1);
        options.tls.max_connection_age_grace = Duration::from_millis(500);
    });
    let daemon = env.start().await;
    let mut waiting = super::cli::elevate_command(
        &daemon,
        &[
            "--as",
            "engineer",
            "request",
            "prod-db-read",
            "--for",
            "30m",
            "--reason",
            "slow queries",
            "--wait",
        ],
    );
    let waiting = waiting.output();
    let approve = async {
        let mut manager = daemon.client("manager").await;
        let pending: String = until("the request to wait for the manager", || {
            let mut manager = manager.clone();
            async move {
                let listed = manager
                    .approval
                    .list_pending(pb::ListPendingRequest {})
                    .await
                    .ok()?
                    .into_inner();
                listed.requests.first().map(|r| r.id.clone())
            }
        })
        .await;
        // Outlive a few of the waiting client's connections.
        tokio::time::sleep(Duration::from_secs(4)).await;
        approve(&mut manager, &pending).await.unwrap();
    };
    let (output, ()) = tokio::join!(waiting, approve);
    let output = output.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("active"), "{stderr}");
    daemon.stop().await;
}
