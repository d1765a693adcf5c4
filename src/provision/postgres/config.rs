//! The `postgres` provisioner's section of the configuration file: where the server is, how
//! elevate logs in, and which of the two modes it runs in. [`PostgresConfig::check`] finds
//! every mistake that can be found without connecting.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::pg::PostgresTls;

use super::{MAX_ROLE_PREFIX_BYTES, identifier_problem};

/// A PostgreSQL server whose roles elevate grants.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// A host name, an IP address, or the absolute path of the directory holding the server's
    /// Unix socket.
    pub host: String,
    /// The server's port (also names the socket file in a socket directory).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The database elevate connects to; ephemeral roles' objects are cleaned up in it.
    pub database: String,
    /// The role elevate logs in as.
    pub admin_role: String,
    /// A file holding the admin role's password (one trailing newline is ignored). Without it
    /// the server must accept the login otherwise (a certificate, or peer/trust on a socket).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `disable`, `require` (encrypted, the server not authenticated) or `verify-full` (the
    /// default over TCP). Over a Unix socket TLS is not used.
    #[serde(default)]
    pub tls: Option<PostgresTls>,
    /// CA certificates (PEM) that the server's certificate must chain to, instead of the public
    /// web roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// A client certificate chain (PEM), for certificate authentication.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// The key of `client_cert` (PEM, mode 0600).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// `membership` (existing logins join `target_role`) or `ephemeral` (a login role made per
    /// lease).
    pub mode: PostgresMode,
    /// The role whose privileges a lease gives.
    pub target_role: String,
    /// Membership mode: end the login's sessions when its membership is revoked (default
    /// true), so that no session keeps what `SET ROLE` gave it.
    #[serde(default)]
    pub terminate_sessions: Option<bool>,
    /// Membership mode: members of `target_role` that elevate does not manage; reconciliation
    /// never removes them and leases are not needed for them.
    #[serde(default)]
    pub keep_members: Vec<String>,
    /// Ephemeral mode: the start of every role elevate makes (default `elevate_`); lowercase
    /// letters, digits and `_`.
    #[serde(default)]
    pub role_prefix: Option<String>,
    /// Longest connect, and longest single statement.
    #[serde(
        default = "default_timeout",
        deserialize_with = "crate::model::humantime"
    )]
    pub timeout: Duration,
}

/// What a lease gives on a PostgreSQL server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostgresMode {
    /// The holder's existing login role becomes a member of the target role.
    Membership,
    /// A login role with a fresh password, member of the target role, is made for the lease
    /// and dropped at its end.
    Ephemeral,
}

/// The default role prefix of ephemeral mode.
pub const DEFAULT_ROLE_PREFIX: &str = "elevate_";

fn default_port() -> u16 {
    5432
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl PostgresConfig {
    /// Where the server is and how elevate logs in.
    pub fn login(&self) -> crate::pg::Login<'_> {
        crate::pg::Login {
            host: &self.host,
            port: self.port,
            database: &self.database,
            user: ("admin_role", &self.admin_role),
            password_file: self.password_file.as_deref(),
            tls: self.tls,
            ca: self.ca.as_deref(),
            client_cert: self.client_cert.as_deref(),
            client_key: self.client_key.as_deref(),
            timeout: self.timeout,
        }
    }

    /// The role prefix in force (ephemeral mode).
    pub fn role_prefix(&self) -> &str {
        self.role_prefix.as_deref().unwrap_or(DEFAULT_ROLE_PREFIX)
    }

    /// Whether membership mode ends sessions at revoke.
    pub fn terminate_sessions(&self) -> bool {
        self.terminate_sessions.unwrap_or(true)
    }

    /// The first problem with this section, as `field: message`.
    pub fn check(&self) -> Result<(), String> {
        self.login().check()?;
        if let Some(problem) = identifier_problem(&self.target_role) {
            return Err(format!("target_role: {problem}"));
        }
        if self.admin_role == self.target_role {
            return Err(
                "target_role: must not be admin_role (elevate would grant its own login)"
                    .to_owned(),
            );
        }
        match self.mode {
            PostgresMode::Membership => {
                if self.role_prefix.is_some() {
                    return Err("role_prefix: only used with mode = \"ephemeral\"".to_owned());
                }
                for (index, member) in self.keep_members.iter().enumerate() {
                    if let Some(problem) = identifier_problem(member) {
                        return Err(format!("keep_members[{index}]: {problem}"));
                    }
                }
            }
            PostgresMode::Ephemeral => {
                if self.terminate_sessions.is_some() {
                    return Err(
                        "terminate_sessions: only used with mode = \"membership\" (an ephemeral role's sessions always end with it)"
                            .to_owned(),
                    );
                }
                if !self.keep_members.is_empty() {
                    return Err(
                        "keep_members: only used with mode = \"membership\" (ephemeral mode manages only roles named with role_prefix)"
                            .to_owned(),
                    );
                }
                let prefix = self.role_prefix();
                if prefix.is_empty()
                    || prefix.len() > MAX_ROLE_PREFIX_BYTES
                    || !prefix.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    || !prefix
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(format!(
                        "role_prefix: 1 to {MAX_ROLE_PREFIX_BYTES} of a-z, 0-9 and '_', starting with a letter or '_'"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProvisionerConfig;

    fn parse(text: &str) -> Result<PostgresConfig, String> {
        match toml::from_str::<ProvisionerConfig>(text).map_err(|e| e.to_string())? {
            ProvisionerConfig::Postgres(config) => Ok(config),
            other => panic!("not postgres: {other:?}"),
        }
    }

    const MEMBERSHIP: &str = r#"
        kind = "postgres"
        host = "db.example.com"
        database = "app"
        admin_role = "elevate"
        mode = "membership"
        target_role = "app_rw"
    "#;

    #[test]
    fn defaults_are_secure_and_follow_the_host() {
        let config = parse(MEMBERSHIP).unwrap();
        config.check().unwrap();
        assert_eq!(config.port, 5432);
        assert_eq!(config.login().tls_mode(), PostgresTls::VerifyFull);
        assert!(config.terminate_sessions());
        assert_eq!(config.timeout, Duration::from_secs(10));
        let socket = parse(&MEMBERSHIP.replace("db.example.com", "/run/postgresql")).unwrap();
        socket.check().unwrap();
        assert_eq!(socket.login().tls_mode(), PostgresTls::Disable);
        let ephemeral = parse(&MEMBERSHIP.replace("membership", "ephemeral")).unwrap();
        ephemeral.check().unwrap();
        assert_eq!(ephemeral.role_prefix(), "elevate_");
        let error = parse(&format!("{MEMBERSHIP}\nsslmode = \"require\"\n")).unwrap_err();
        assert!(error.contains("unknown field `sslmode`"), "{error}");
        let error = parse(&MEMBERSHIP.replace("\"membership\"", "\"lend\"")).unwrap_err();
        assert!(error.contains("unknown variant `lend`"), "{error}");
    }

    #[test]
    fn mistakes_are_named_by_field() {
        let long = "r".repeat(64);
        let cases: Vec<(String, &str)> = vec![
            (
                MEMBERSHIP.replace("\"app_rw\"", "\"\""),
                "target_role: must not be empty",
            ),
            (
                MEMBERSHIP.replace("\"app_rw\"", &format!("\"{long}\"")),
                "target_role: must be at most 63 bytes",
            ),
            (
                MEMBERSHIP.replace("\"elevate\"", "\"a\\u0000b\""),
                "admin_role: must not contain NUL",
            ),
            (
                MEMBERSHIP.replace("\"app_rw\"", "\"elevate\""),
                "target_role: must not be admin_role",
            ),
            (
                MEMBERSHIP.replace("db.example.com", ""),
                "host: must not be empty",
            ),
            (
                MEMBERSHIP.replace("db.example.com", "run/postgresql"),
                "host: 'run/postgresql' looks like a path",
            ),
            (
                format!("{MEMBERSHIP}\npassword_file = \"/nonexistent/pw\"\n"),
                "password_file: /nonexistent/pw does not exist",
            ),
            (
                format!("{MEMBERSHIP}\nclient_cert = \"/etc/hostname\"\n"),
                "client_cert: client_cert and client_key must be given together",
            ),
            (
                format!("{MEMBERSHIP}\ntls = \"require\"\nca = \"/etc/hostname\"\n"),
                "ca: only used with tls = \"verify-full\"",
            ),
            (
                format!(
                    "{}\ntls = \"verify-full\"\n",
                    MEMBERSHIP.replace("db.example.com", "/run/postgresql")
                ),
                "tls: TLS is not used over a Unix socket",
            ),
            (
                format!("{MEMBERSHIP}\ntimeout = \"0s\"\n"),
                "timeout: must be above zero",
            ),
            (
                format!("{MEMBERSHIP}\nkeep_members = [\"dba\", \"\"]\n"),
                "keep_members[1]: must not be empty",
            ),
            (
                format!("{MEMBERSHIP}\nrole_prefix = \"tmp_\"\n"),
                "role_prefix: only used with mode = \"ephemeral\"",
            ),
            (
                format!(
                    "{}\nrole_prefix = \"Tmp-\"\n",
                    MEMBERSHIP.replace("membership", "ephemeral")
                ),
                "role_prefix: 1 to 39 of a-z, 0-9 and '_'",
            ),
            (
                format!(
                    "{}\nrole_prefix = \"{}\"\n",
                    MEMBERSHIP.replace("membership", "ephemeral"),
                    "p".repeat(40)
                ),
                "role_prefix: 1 to 39",
            ),
            (
                format!(
                    "{}\nterminate_sessions = false\n",
                    MEMBERSHIP.replace("membership", "ephemeral")
                ),
                "terminate_sessions: only used with mode = \"membership\"",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).and_then(|config| config.check()).unwrap_err();
            assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
        }
    }
}
