//! A throwaway PostgreSQL cluster per test: `initdb` into a temporary directory, TLS with a
//! generated CA, trust on its own Unix socket, `scram-sha-256` on 127.0.0.1 (so delivered
//! passwords are really checked) and certificate authentication for one role; stopped when
//! dropped. The server binaries come from `PATH` or the highest `/usr/lib/postgresql/*/bin`;
//! as root, the server runs as the `postgres` user. Without the binaries the tests fail with
//! the command that installs them.
//!
//! Roles made at start: the superuser [`SUPERUSER`], elevate's admin [`ADMIN`] (LOGIN
//! CREATEROLE, `pg_signal_backend`, password in [`Cluster::admin_password_file`]) and
//! [`CERT_ADMIN`], the same privileges but logging in with [`Cluster::client_cert`].

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elevate::config::{PostgresConfig, ProvisionerConfig};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

/// The bootstrap superuser.
pub const SUPERUSER: &str = "postgres";
/// The role elevate logs in as (password).
pub const ADMIN: &str = "elevate_admin";
/// The role elevate logs in as with a client certificate.
pub const CERT_ADMIN: &str = "elevate_cert";

/// A running throwaway cluster.
pub struct Cluster {
    /// Kept for its Drop, after the server is stopped.
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Run the server binaries as `postgres` (the tests run as root).
    as_postgres: bool,
    port: u16,
    superuser_password: String,
    admin_password: String,
}

impl Cluster {
    /// Makes and starts a cluster. Panics with the reason (and the server log) on failure.
    pub fn start() -> Cluster {
        let bin = server_binaries();
        let as_postgres = rustix::process::geteuid().is_root();
        let dir = tempfile::Builder::new()
            .prefix("elevate-pg")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let root = root.as_path();
        let superuser_password = "superuser-secret".to_owned();
        let admin_password = "admin 'secret\" \\ pass".to_owned();
        std::fs::write(
            root.join("superuser.password"),
            format!("{superuser_password}\n"),
        )
        .unwrap();
        let admin_file = root.join("admin.password");
        std::fs::write(&admin_file, format!("{admin_password}\n")).unwrap();
        std::fs::set_permissions(&admin_file, std::fs::Permissions::from_mode(0o600)).unwrap();

        let certs = root.join("certs");
        elevate::tls::issue::init(&certs, &[], false).unwrap();
        elevate::tls::issue::issue(&certs, CERT_ADMIN, "elevate.local", 30, false).unwrap();
        let server = root.join("server");
        std::fs::create_dir(&server).unwrap();
        for file in ["ca.crt", "server.crt", "server.key"] {
            std::fs::copy(certs.join(file), server.join(file)).unwrap();
        }
        std::fs::create_dir(root.join("socket")).unwrap();
        if as_postgres {
            let (uid, gid) = postgres_user();
            for path in [
                root.to_path_buf(),
                root.join("superuser.password"),
                root.join("socket"),
                server.clone(),
                server.join("ca.crt"),
                server.join("server.crt"),
                server.join("server.key"),
            ] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }

        let port = free_port();
        let cluster = Cluster {
            dir,
            bin,
            as_postgres,
            port,
            superuser_password,
            admin_password,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                SUPERUSER,
                &format!("--pwfile={}", root.join("superuser.password").display()),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 hostssl all {CERT_ADMIN} 127.0.0.1/32 cert\n\
                 host all {CERT_ADMIN} 127.0.0.1/32 reject\n\
                 host all all 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        let mut settings = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        settings.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket}'\n\
             ssl = on\n\
             ssl_cert_file = '{server}/server.crt'\n\
             ssl_key_file = '{server}/server.key'\n\
             ssl_ca_file = '{server}/ca.crt'\n\
             password_encryption = 'scram-sha-256'\n\
             log_statement = 'ddl'\n\
             max_connections = 80\n\
             shared_buffers = 16MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            socket = cluster.socket_dir().display(),
            server = server.display(),
        ));
        std::fs::write(data.join("postgresql.conf"), settings).unwrap();
        cluster.start_again();
        cluster.psql(&format!(
            "CREATE ROLE {ADMIN} LOGIN CREATEROLE PASSWORD {password};\n\
             CREATE ROLE {CERT_ADMIN} LOGIN CREATEROLE;\n\
             GRANT pg_signal_backend TO {ADMIN}, {CERT_ADMIN};\n",
            password = literal(&cluster.admin_password),
        ));
        cluster
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's Unix socket (trust authentication).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// The file holding [`ADMIN`]'s password (mode 0600).
    pub fn admin_password_file(&self) -> PathBuf {
        self.dir.path().join("admin.password")
    }

    /// The CA that signed the server's certificate (valid for 127.0.0.1 and localhost).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.crt")
    }

    /// The certificate and key that [`CERT_ADMIN`] logs in with.
    pub fn client_cert(&self) -> (PathBuf, PathBuf) {
        let certs = self.dir.path().join("certs");
        (
            certs.join(format!("{CERT_ADMIN}.crt")),
            certs.join(format!("{CERT_ADMIN}.key")),
        )
    }

    /// A `[provisioners.NAME]` section for this cluster: [`ADMIN`] with its password file over
    /// TCP with `tls = "verify-full"` and [`Cluster::ca`], database `postgres`, a 5 s timeout.
    pub fn config_toml(&self, name: &str, mode: &str, target_role: &str) -> String {
        let string = |text: &str| toml::Value::String(text.to_owned()).to_string();
        format!(
            "[provisioners.{name}]\n\
             kind = \"postgres\"\n\
             host = \"127.0.0.1\"\n\
             port = {port}\n\
             database = \"postgres\"\n\
             admin_role = {admin}\n\
             password_file = {password_file}\n\
             tls = \"verify-full\"\n\
             ca = {ca}\n\
             mode = {mode}\n\
             target_role = {target_role}\n\
             timeout = \"5s\"\n",
            port = self.port,
            admin = string(ADMIN),
            password_file = string(&self.admin_password_file().display().to_string()),
            ca = string(&self.ca().display().to_string()),
            mode = string(mode),
            target_role = string(target_role),
        )
    }

    /// [`Cluster::config_toml`] parsed and checked.
    pub fn provisioner_config(&self, mode: &str, target_role: &str) -> PostgresConfig {
        let text = self.config_toml("pg", mode, target_role);
        let mut file: toml::Table = toml::from_str(&text).unwrap();
        let section = file
            .remove("provisioners")
            .and_then(|mut provisioners| provisioners.as_table_mut()?.remove("pg"))
            .unwrap();
        match section.try_into::<ProvisionerConfig>().unwrap() {
            ProvisionerConfig::Postgres(config) => {
                config.check().unwrap();
                config
            }
            other => panic!("not a postgres section: {other:?}"),
        }
    }

    /// Makes `role` (NOLOGIN) for elevate to grant: [`ADMIN`] and [`CERT_ADMIN`] get it WITH
    /// ADMIN OPTION.
    pub async fn target_role(&self, role: &str) {
        self.sql(&format!(
            "CREATE ROLE {role} NOLOGIN; GRANT {role} TO {ADMIN}, {CERT_ADMIN} WITH ADMIN OPTION",
            role = ident(role)
        ))
        .await;
    }

    /// A superuser session over TCP.
    pub async fn superuser(&self) -> Client {
        self.connect_as(SUPERUSER, &self.superuser_password)
            .await
            .unwrap_or_else(|error| panic!("superuser login failed: {error}"))
    }

    /// Runs statements as the superuser; panics when they fail.
    pub async fn sql(&self, sql: &str) {
        self.try_sql(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// Runs statements as the superuser.
    pub async fn try_sql(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.superuser().await.batch_execute(sql).await
    }

    /// Runs a query as the superuser; panics when it fails.
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
        self.superuser()
            .await
            .query(sql, params)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Whether `member` is a direct member of `role`.
    pub async fn is_member(&self, role: &str, member: &str) -> bool {
        self.query(
            "SELECT EXISTS (SELECT 1 FROM pg_auth_members m \
             JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
             WHERE r.rolname = $1 AND u.rolname = $2)",
            &[&role, &member],
        )
        .await[0]
            .get(0)
    }

    /// Whether role `name` exists.
    pub async fn role_exists(&self, name: &str) -> bool {
        !self
            .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
            .await
            .is_empty()
    }

    /// A superuser session over TCP on database `database`.
    pub async fn superuser_on(&self, database: &str) -> Client {
        self.login(SUPERUSER, &self.superuser_password, database)
            .await
            .unwrap_or_else(|error| panic!("superuser login to {database} failed: {error}"))
    }

    /// Logs in as `user` over TCP (no TLS, scram-sha-256) to database `postgres`; the
    /// connection runs in a spawned task until the client is dropped or the server ends it.
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        self.login(user, password, "postgres").await
    }

    async fn login(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .dbname(database)
            .user(user)
            .password(password)
            .connect(NoTls)
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Stops the server (fast shutdown: sessions are ended).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }

    /// Starts the server again after [`Cluster::stop`].
    pub fn start_again(&self) {
        let log = self.dir.path().join("postgres.log");
        if !self
            .command(
                "pg_ctl",
                &self.pg_ctl_args(&["-l", &log.display().to_string(), "start"]),
            )
            .status()
            .unwrap()
            .success()
        {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("PostgreSQL did not start; its log:\n{text}");
        }
    }

    /// What the server logged so far (statements that change roles included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "-D".to_owned(),
            self.data().display().to_string(),
            "-w".to_owned(),
            "-t".to_owned(),
            "60".to_owned(),
            "-s".to_owned(),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args
    }

    fn pg_ctl(&self, args: &[&str]) {
        let args = self.pg_ctl_args(args);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("pg_ctl", &refs);
    }

    /// Runs SQL through the Unix socket with psql (setup, before any async runtime is
    /// needed).
    fn psql(&self, sql: &str) {
        let socket = self.socket_dir().display().to_string();
        let port = self.port.to_string();
        self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &socket,
                "-p",
                &port,
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-c",
                sql,
            ],
        );
    }

    fn command(&self, program: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        command.args(args).current_dir(self.dir.path());
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program, args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let args = self.pg_ctl_args(&["stop", "-m", "immediate"]);
        let _ = self.command("pg_ctl", &args).output();
    }
}

/// `name` as a quoted identifier (test SQL only).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a string literal (test SQL only).
pub fn literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The directory of `initdb`, `pg_ctl`, `postgres` and `psql`.
fn server_binaries() -> PathBuf {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql"]
            .iter()
            .all(|program| dir.join(program).is_file())
    };
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .find(|dir| has_all(dir));
    if let Some(dir) = on_path {
        return dir;
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((version, entry.path().join("bin")))
                })
                .filter(|(_, dir)| has_all(dir))
                .collect()
        })
        .unwrap_or_default();
    installed.sort();
    match installed.pop() {
        Some((_, dir)) => dir,
        None => panic!(
            "the PostgreSQL tests need the PostgreSQL server (initdb, pg_ctl, postgres, psql on \
             PATH or under /usr/lib/postgresql/*/bin); install it: apt-get install -y postgresql"
        ),
    }
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "running the tests as root needs a 'postgres' user to run the server as \
             (apt-get install -y postgresql makes one)"
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
