//! Logging in to PostgreSQL, shared by the `postgres` provisioner and the PostgreSQL store:
//! where the server is, who elevate logs in as, the password file, and TLS with rustls
//! ([`tls`]). [`Login::check`] finds every mistake that can be found without connecting;
//! [`Login::settings`] reads the password and certificates and makes the connection settings.

pub mod tls;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use self::tls::{RustlsConnector, Verify};

/// How the connection to PostgreSQL is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresTls {
    /// Plain TCP.
    Disable,
    /// TLS without checking the server's certificate: protects against eavesdropping only.
    Require,
    /// TLS with the server's certificate checked against the CA and the host name.
    VerifyFull,
}

/// Where a PostgreSQL server is and how elevate logs in to it.
#[derive(Clone, Debug)]
pub struct Login<'a> {
    /// A host name, an IP address, or the absolute path of a Unix-socket directory.
    pub host: &'a str,
    /// The port (also names the socket file in a socket directory).
    pub port: u16,
    /// The database.
    pub database: &'a str,
    /// The role elevate logs in as, and the configuration key that names it.
    pub user: (&'static str, &'a str),
    /// A file holding the role's password.
    pub password_file: Option<&'a Path>,
    /// TLS as configured (`None`: the default for the host).
    pub tls: Option<PostgresTls>,
    /// CA certificates the server's certificate must chain to.
    pub ca: Option<&'a Path>,
    /// A client certificate chain and its key.
    pub client_cert: Option<&'a Path>,
    /// The key of `client_cert`.
    pub client_key: Option<&'a Path>,
    /// Longest connect, and longest single statement.
    pub timeout: Duration,
}

/// Connection settings made from a [`Login`].
pub struct Settings {
    /// Host, port, database, user and password.
    pub config: tokio_postgres::Config,
    /// TLS, unless disabled.
    pub tls: Option<RustlsConnector>,
    /// `host:port/database`, for messages.
    pub shown: String,
}

impl Login<'_> {
    /// Whether `host` is a Unix-socket directory.
    pub fn is_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// The TLS mode in force: as configured, else `verify-full` over TCP and `disable` over a
    /// socket.
    pub fn tls_mode(&self) -> PostgresTls {
        match self.tls {
            Some(tls) => tls,
            None if self.is_socket() => PostgresTls::Disable,
            None => PostgresTls::VerifyFull,
        }
    }

    /// Every mistake that can be found without connecting, as `key: problem`.
    pub fn check(&self) -> Result<(), String> {
        if self.host.is_empty() {
            return Err("host: must not be empty".to_owned());
        }
        if self.host.contains('/') && !self.is_socket() {
            return Err(format!(
                "host: '{}' looks like a path; a Unix-socket directory must be absolute",
                self.host
            ));
        }
        if self.host.chars().any(char::is_control) {
            return Err("host: must not contain control characters".to_owned());
        }
        if self.port == 0 {
            return Err("port: must be above zero".to_owned());
        }
        for (field, name) in [("database", self.database), self.user] {
            if let Some(problem) = crate::provision::postgres::identifier_problem(name) {
                return Err(format!("{field}: {problem}"));
            }
        }
        for (field, file) in [
            ("password_file", self.password_file),
            ("ca", self.ca),
            ("client_cert", self.client_cert),
            ("client_key", self.client_key),
        ] {
            if let Some(file) = file.filter(|file| !file.is_file()) {
                return Err(format!("{field}: {} does not exist", file.display()));
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(
                "client_cert: client_cert and client_key must be given together".to_owned(),
            );
        }
        let tls = self.tls_mode();
        if self.is_socket() && tls != PostgresTls::Disable {
            return Err(
                "tls: TLS is not used over a Unix socket; leave tls out or set it to \"disable\""
                    .to_owned(),
            );
        }
        if self.ca.is_some() && tls != PostgresTls::VerifyFull {
            return Err("ca: only used with tls = \"verify-full\"".to_owned());
        }
        if self.client_cert.is_some() && tls == PostgresTls::Disable {
            return Err("client_cert: certificates need TLS; tls is \"disable\"".to_owned());
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            return Err("timeout: must be above zero and at most 5m".to_owned());
        }
        Ok(())
    }

    /// Reads the password file and the certificates, and makes the connection settings.
    pub fn settings(&self) -> Result<Settings, String> {
        let mut config = tokio_postgres::Config::new();
        if self.is_socket() {
            config.host_path(self.host);
        } else {
            config.host(self.host);
        }
        config
            .port(self.port)
            .dbname(self.database)
            .user(self.user.1);
        if let Some(file) = self.password_file {
            config.password(read_password(file)?);
        }
        let tls = match self.tls_mode() {
            PostgresTls::Disable => None,
            mode => Some(RustlsConnector::new(
                if mode == PostgresTls::VerifyFull {
                    Verify::Full
                } else {
                    Verify::Nothing
                },
                self.ca,
                self.client_cert.zip(self.client_key),
            )?),
        };
        Ok(Settings {
            config,
            tls,
            shown: format!("{}:{}/{}", self.host, self.port, self.database),
        })
    }
}

/// Reads a password file: its contents without one trailing newline. Refuses files open to
/// others ([`crate::private_file`]), and empty passwords.
pub fn read_password(file: &Path) -> Result<String, String> {
    let shown = file.display();
    crate::private_file::check(file, "password file").map_err(|error| error.to_string())?;
    let text = std::fs::read_to_string(file).map_err(|error| format!("{shown}: {error}"))?;
    let password = text
        .strip_suffix('\n')
        .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(format!("{shown}: the password file is empty"));
    }
    Ok(password.to_owned())
}

/// The server's message (with its detail and hint), or the client's error with its cause.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = db.message().to_owned();
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (hint: {hint})"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn password_files_lose_one_trailing_newline_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "pa ss\n\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&file).unwrap(), "pa ss\n");
        std::fs::write(&file, "word\r\n").unwrap();
        assert_eq!(read_password(&file).unwrap(), "word");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_password(&file).unwrap_err().contains("empty"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_password(&file).unwrap_err().contains("chmod 600"));
    }
}
