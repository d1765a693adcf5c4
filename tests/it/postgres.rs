//! The `postgres` provisioner against a real PostgreSQL server (one throwaway cluster per
//! test, see `pg`): grants show in the catalog and work for the holder, revokes are confirmed
//! and end sessions, names cannot inject SQL, and an unreachable server fails fast.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant, SystemTime};

use elevate::config::PostgresTls;
use elevate::model::{Principal, RequestId, ResourceName, Timestamp};
use elevate::provision::{LeaseTarget, PostgresProvisioner, Provisioner};

use super::pg::{ADMIN, CERT_ADMIN, Cluster, ident, literal};

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

fn lease(id: u64, account: &str, expires_at: Timestamp) -> LeaseTarget {
    LeaseTarget {
        ssh_key: None,
        lease: RequestId::from_raw(id),
        principal: Principal::parse("alice").unwrap(),
        resource: ResourceName::parse("prod-db").unwrap(),
        expires_at,
        account: account.to_owned(),
    }
}

/// The server's message of a failed call.
fn reason(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_owned())
}

fn provisioner(cluster: &Cluster, mode: &str, target_role: &str) -> PostgresProvisioner {
    PostgresProvisioner::new(&cluster.provisioner_config(mode, target_role)).unwrap()
}

/// A table only `role` may read.
async fn secret_table(cluster: &Cluster, role: &str) {
    cluster
        .sql(&format!(
            "CREATE TABLE secrets (x int); INSERT INTO secrets VALUES (42); \
             GRANT SELECT ON secrets TO {}",
            ident(role)
        ))
        .await;
}

async fn login_role(cluster: &Cluster, name: &str, password: &str) {
    cluster
        .sql(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            ident(name),
            literal(password)
        ))
        .await;
}

async fn valid_until_ms(cluster: &Cluster, role: &str) -> i64 {
    cluster
        .query(
            "SELECT (extract(epoch FROM rolvaliduntil) * 1000)::int8 FROM pg_roles \
             WHERE rolname = $1",
            &[&role],
        )
        .await[0]
        .get(0)
}

#[tokio::test]
async fn membership_is_granted_confirmed_and_revoked_with_the_sessions() {
    let cluster = Cluster::start();
    cluster.target_role("app_rw").await;
    secret_table(&cluster, "app_rw").await;
    login_role(&cluster, "alice_login", "alice-pw").await;
    let postgres = provisioner(&cluster, "membership", "app_rw");
    let target = lease(
        1,
        "alice_login",
        now().saturating_add(Duration::from_secs(3600)),
    );

    let granted = postgres.grant(&target).await.unwrap();
    assert_eq!(granted.credentials, None);
    assert!(cluster.is_member("app_rw", "alice_login").await);
    postgres.grant(&target).await.unwrap();
    assert_eq!(postgres.grant_key(&target), "alice_login");

    // The holder uses the role, and keeps it in a session with SET ROLE.
    let session = cluster.connect_as("alice_login", "alice-pw").await.unwrap();
    session.batch_execute("SET ROLE app_rw").await.unwrap();
    let row = session
        .query_one("SELECT x FROM secrets", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);

    postgres.revoke(&target).await.unwrap();
    assert!(!cluster.is_member("app_rw", "alice_login").await);
    assert!(
        session
            .query_one("SELECT x FROM secrets", &[])
            .await
            .is_err(),
        "the session that had SET ROLE must have been ended"
    );
    let later = cluster.connect_as("alice_login", "alice-pw").await.unwrap();
    let error = later
        .query_one("SELECT x FROM secrets", &[])
        .await
        .unwrap_err();
    assert!(reason(&error).contains("permission denied"), "{error:?}");

    // Revoking what is gone succeeds, for a login that exists and one that does not.
    postgres.revoke(&target).await.unwrap();
    postgres
        .revoke(&lease(2, "nobody", target.expires_at))
        .await
        .unwrap();
    let error = postgres
        .grant(&lease(2, "nobody", target.expires_at))
        .await
        .unwrap_err();
    assert!(
        error.0.contains("login role \"nobody\" does not exist"),
        "{error}"
    );
}

#[tokio::test]
async fn membership_lists_and_removes_grants_it_did_not_make_but_keeps_kept_members() {
    let cluster = Cluster::start();
    cluster.target_role("ops").await;
    for name in ["carol", "dave", "erin"] {
        login_role(&cluster, name, "pw").await;
    }
    cluster.sql("GRANT ops TO carol, dave").await;
    let mut config = cluster.provisioner_config("membership", "ops");
    config.keep_members = vec!["carol".to_owned()];
    config.check().unwrap();
    let postgres = PostgresProvisioner::new(&config).unwrap();
    let erin = lease(3, "erin", now().saturating_add(Duration::from_secs(600)));
    postgres.grant(&erin).await.unwrap();

    let listed = postgres.list(&[]).await.unwrap().unwrap();
    let keys: Vec<&str> = listed.iter().map(|holding| holding.key.as_str()).collect();
    // Neither the kept member nor elevate's own admin role (a member WITH ADMIN OPTION).
    assert_eq!(keys, ["dave", "erin"]);
    assert_eq!(listed[1].key, postgres.grant_key(&erin));
    assert_eq!(listed[0].account, "dave");

    postgres.remove(&listed[0]).await.unwrap();
    assert!(!cluster.is_member("ops", "dave").await);
    assert!(cluster.is_member("ops", "carol").await);
    assert!(cluster.is_member("ops", ADMIN).await);

    // A kept member is left alone: no grant through elevate, and a revoke changes nothing.
    let carol = lease(4, "carol", erin.expires_at);
    let error = postgres.grant(&carol).await.unwrap_err();
    assert!(error.0.contains("keep_members"), "{error}");
    postgres.revoke(&carol).await.unwrap();
    assert!(cluster.is_member("ops", "carol").await);
    let error = postgres
        .grant(&lease(5, ADMIN, erin.expires_at))
        .await
        .unwrap_err();
    assert!(error.0.contains("admin role"), "{error}");
}

#[tokio::test]
async fn an_ephemeral_role_logs_in_with_the_delivered_password_until_revoked() {
    let cluster = Cluster::start();
    cluster.target_role("reader").await;
    secret_table(&cluster, "reader").await;
    cluster.sql("GRANT CREATE ON SCHEMA public TO reader").await;
    let postgres = provisioner(&cluster, "ephemeral", "reader");
    let expires_at = Timestamp::from_unix_millis(now().unix_millis() / 1000 * 1000 + 3_600_123);
    let target = lease(7, "alice", expires_at);
    assert_eq!(postgres.grant_key(&target), "elevate_req_7");

    let credentials = postgres
        .grant(&target)
        .await
        .unwrap()
        .credentials
        .unwrap()
        .into_pairs();
    assert_eq!(credentials["user"], "elevate_req_7");
    assert_eq!(credentials["host"], "127.0.0.1");
    assert_eq!(credentials["port"], cluster.port().to_string());
    assert_eq!(credentials["database"], "postgres");
    assert_eq!(credentials["valid_until"], expires_at.rfc3339());
    let password = &credentials["password"];
    assert_eq!(password.len(), 32);
    assert_eq!(
        valid_until_ms(&cluster, "elevate_req_7").await,
        i64::try_from(expires_at.unix_millis()).unwrap()
    );
    // The server got a SCRAM verifier: the password is not in its statement log.
    let log = cluster.log();
    assert!(
        log.contains("CREATE ROLE \"elevate_req_7\" LOGIN PASSWORD 'SCRAM-SHA-256$"),
        "{log}"
    );
    assert!(!log.contains(password.as_str()));

    // The password works over TCP with scram-sha-256, and the role has the target's rights.
    let session = cluster.connect_as("elevate_req_7", password).await.unwrap();
    let row = session
        .query_one("SELECT x FROM secrets", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    session
        .batch_execute("CREATE TABLE scratch (y int)")
        .await
        .unwrap();
    assert!(cluster.connect_as("elevate_req_7", "wrong").await.is_err());

    // Extend moves VALID UNTIL; restore keeps the password of a role that still exists.
    let later = expires_at.saturating_add(Duration::from_secs(3600));
    postgres.extend(&lease(7, "alice", later)).await.unwrap();
    assert_eq!(
        valid_until_ms(&cluster, "elevate_req_7").await,
        i64::try_from(later.unix_millis()).unwrap()
    );
    cluster.sql("REVOKE reader FROM elevate_req_7").await;
    let restored = postgres.restore(&lease(7, "alice", later)).await.unwrap();
    assert_eq!(restored.credentials, None);
    assert!(cluster.is_member("reader", "elevate_req_7").await);
    cluster.connect_as("elevate_req_7", password).await.unwrap();

    let listed = postgres.list(&[]).await.unwrap().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "elevate_req_7");
    assert_eq!(listed[0].account, "elevate_req_7");

    postgres.revoke(&target).await.unwrap();
    assert!(!cluster.role_exists("elevate_req_7").await);
    assert!(
        session.query_one("SELECT 1", &[]).await.is_err(),
        "the open session must have been ended"
    );
    let error = cluster
        .connect_as("elevate_req_7", password)
        .await
        .unwrap_err();
    assert!(
        reason(&error).contains("password authentication failed"),
        "{error}"
    );
    // What the role made is kept, owned by the admin role.
    let owner: String = cluster
        .query(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'scratch'",
            &[],
        )
        .await[0]
        .get(0);
    assert_eq!(owner, ADMIN);
    assert!(postgres.list(&[]).await.unwrap().unwrap().is_empty());
    postgres.revoke(&target).await.unwrap();

    // Restoring a role that is gone makes it again, with new credentials.
    let restored = postgres.restore(&target).await.unwrap();
    let again = restored.credentials.unwrap().into_pairs();
    assert_ne!(&again["password"], password);
    cluster
        .connect_as("elevate_req_7", &again["password"])
        .await
        .unwrap();
    postgres.revoke(&target).await.unwrap();
}

#[tokio::test]
async fn each_ephemeral_grant_hands_out_a_fresh_password_and_postgres_enforces_the_end() {
    let cluster = Cluster::start();
    cluster.target_role("reader").await;
    let postgres = provisioner(&cluster, "ephemeral", "reader");
    let target = lease(8, "alice", now().saturating_add(Duration::from_secs(600)));
    let first = postgres.grant(&target).await.unwrap().credentials.unwrap();
    let second = postgres.grant(&target).await.unwrap().credentials.unwrap();
    let (first, second) = (&first.pairs()["password"], &second.pairs()["password"]);
    assert_ne!(first, second);
    assert!(cluster.connect_as("elevate_req_8", first).await.is_err());
    cluster.connect_as("elevate_req_8", second).await.unwrap();

    // A lease whose end has passed: PostgreSQL itself refuses the password, elevate or not.
    let ended = lease(9, "alice", now().saturating_sub(Duration::from_secs(1)));
    let credentials = postgres.grant(&ended).await.unwrap().credentials.unwrap();
    let error = cluster
        .connect_as("elevate_req_9", &credentials.pairs()["password"])
        .await
        .unwrap_err();
    assert!(
        reason(&error).contains("password authentication failed"),
        "{error}"
    );
    postgres.revoke(&ended).await.unwrap();
    postgres.revoke(&target).await.unwrap();
}

#[tokio::test]
async fn hostile_names_are_quoted_and_grant_exactly_what_they_say() {
    let cluster = Cluster::start();
    cluster
        .sql("CREATE TABLE canary (x int); INSERT INTO canary VALUES (1)")
        .await;
    let target = "ops\"; DROP TABLE canary; --'";
    cluster.target_role(target).await;
    cluster.target_role("ops").await;
    let accounts = [
        "bob\"; DROP TABLE canary; --",
        "o'brien",
        "zoë",
        "a;b",
        "x\\'y",
    ];
    for account in accounts {
        login_role(&cluster, account, "pw").await;
    }
    let postgres = provisioner(&cluster, "membership", target);
    let until = now().saturating_add(Duration::from_secs(600));
    for account in accounts {
        postgres.grant(&lease(1, account, until)).await.unwrap();
    }
    for account in accounts {
        assert!(cluster.is_member(target, account).await, "{account}");
        let memberships: i64 = cluster
            .query(
                "SELECT count(*) FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member \
                 WHERE u.rolname = $1",
                &[&account],
            )
            .await[0]
            .get(0);
        assert_eq!(memberships, 1, "{account} got exactly one membership");
    }
    let mut listed: Vec<String> = postgres
        .list(&[])
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|holding| holding.account)
        .collect();
    listed.sort();
    let mut expected: Vec<String> = accounts.iter().map(|a| (*a).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for account in accounts {
        postgres.revoke(&lease(1, account, until)).await.unwrap();
        assert!(!cluster.is_member(target, account).await, "{account}");
    }
    assert!(!cluster.is_member("ops", "o'brien").await);

    // Names PostgreSQL would misread never reach it.
    for bad in ["nul\0; DROP TABLE canary", &"x".repeat(64), ""] {
        let error = postgres.grant(&lease(1, bad, until)).await.unwrap_err();
        assert!(error.0.contains("role name"), "{error}");
        assert!(postgres.revoke(&lease(1, bad, until)).await.is_err());
    }

    // Ephemeral roles of a hostile target role too.
    let ephemeral = provisioner(&cluster, "ephemeral", target);
    let credentials = ephemeral
        .grant(&lease(11, "alice", until))
        .await
        .unwrap()
        .credentials
        .unwrap();
    assert!(cluster.is_member(target, "elevate_req_11").await);
    cluster
        .connect_as("elevate_req_11", &credentials.pairs()["password"])
        .await
        .unwrap();
    ephemeral.revoke(&lease(11, "alice", until)).await.unwrap();
    assert!(!cluster.role_exists("elevate_req_11").await);

    let rows = cluster.query("SELECT x FROM canary", &[]).await;
    assert_eq!(rows.len(), 1, "the canary table is still there");
}

#[tokio::test]
async fn revoke_fails_fast_while_the_server_is_down_and_succeeds_once_it_is_back() {
    let cluster = Cluster::start();
    cluster.target_role("app_rw").await;
    login_role(&cluster, "alice_login", "pw").await;
    let postgres = provisioner(&cluster, "membership", "app_rw");
    let target = lease(
        1,
        "alice_login",
        now().saturating_add(Duration::from_secs(600)),
    );
    postgres.grant(&target).await.unwrap();

    cluster.stop();
    let started = Instant::now();
    let error = postgres.revoke(&target).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.0.contains("cannot connect to PostgreSQL"), "{error}");
    assert!(!error.0.contains("secret"), "{error}");

    cluster.start_again();
    postgres.revoke(&target).await.unwrap();
    assert!(!cluster.is_member("app_rw", "alice_login").await);
}

#[tokio::test]
async fn connects_over_a_socket_with_tls_or_without_and_with_a_client_certificate() {
    let cluster = Cluster::start();
    cluster.target_role("app_rw").await;
    login_role(&cluster, "alice_login", "pw").await;
    let target = lease(
        1,
        "alice_login",
        now().saturating_add(Duration::from_secs(600)),
    );
    let base = cluster.provisioner_config("membership", "app_rw");

    let mut socket = base.clone();
    socket.host = cluster.socket_dir().display().to_string();
    socket.password_file = None;
    socket.tls = None;
    socket.ca = None;
    let mut plain = base.clone();
    plain.tls = Some(PostgresTls::Disable);
    plain.ca = None;
    let mut encrypted = base.clone();
    encrypted.tls = Some(PostgresTls::Require);
    encrypted.ca = None;
    let (cert, key) = cluster.client_cert();
    let mut certificate = base.clone();
    certificate.admin_role = CERT_ADMIN.to_owned();
    certificate.password_file = None;
    certificate.client_cert = Some(cert);
    certificate.client_key = Some(key);
    for config in [base.clone(), socket, plain, encrypted, certificate] {
        config.check().unwrap();
        let postgres = PostgresProvisioner::new(&config).unwrap();
        postgres.grant(&target).await.unwrap();
        assert!(cluster.is_member("app_rw", "alice_login").await);
        postgres.revoke(&target).await.unwrap();
        assert!(!cluster.is_member("app_rw", "alice_login").await);
    }

    // The public web roots do not vouch for the test CA.
    let mut untrusted = base.clone();
    untrusted.ca = None;
    let error = PostgresProvisioner::new(&untrusted)
        .unwrap()
        .grant(&target)
        .await
        .unwrap_err();
    assert!(error.0.contains("cannot connect"), "{error}");
    assert!(error.0.to_lowercase().contains("certificate"), "{error}");

    // A wrong admin password is refused, and the message does not repeat it.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut refused = base;
    refused.password_file = Some(wrong);
    let error = PostgresProvisioner::new(&refused)
        .unwrap()
        .grant(&target)
        .await
        .unwrap_err();
    assert!(
        error.0.contains("password authentication failed"),
        "{error}"
    );
    assert!(!error.0.contains("not-the-password"), "{error}");
}
