//! One connection per operation: [`Server::connect`] logs in within the timeout and spawns the
//! connection's task; a [`Session`] runs statements, each within the timeout (client side, and
//! `statement_timeout` and `lock_timeout` on the server). A connection per operation keeps no
//! state that a restarted server could invalidate.

use std::fmt;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::pg::describe;
use crate::pg::tls::RustlsConnector;
use crate::provision::ProvisionError;

/// How to log in to one PostgreSQL server.
#[derive(Clone)]
pub struct Server {
    /// The connection settings, with the admin password when there is one.
    config: tokio_postgres::Config,
    tls: Option<RustlsConnector>,
    timeout: Duration,
    /// `host:port/database`, for messages.
    shown: String,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("at", &self.shown)
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Server {
    /// A server at `config` (host, port, database, user and password set), over `tls` when
    /// given, bounding every step by `timeout`.
    pub fn new(
        mut config: tokio_postgres::Config,
        tls: Option<RustlsConnector>,
        timeout: Duration,
        shown: String,
    ) -> Self {
        let millis = timeout.as_millis();
        config
            .application_name("elevate")
            .connect_timeout(timeout)
            .options(format!(
                "-c statement_timeout={millis} -c lock_timeout={millis}"
            ))
            .ssl_mode(if tls.is_some() {
                tokio_postgres::config::SslMode::Require
            } else {
                tokio_postgres::config::SslMode::Disable
            });
        Self {
            config,
            tls,
            timeout,
            shown,
        }
    }

    /// `host:port/database`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Logs in.
    pub async fn connect(&self) -> Result<Session, ProvisionError> {
        let failed = |error: &dyn fmt::Display| {
            ProvisionError(format!(
                "cannot connect to PostgreSQL at {}: {error}",
                self.shown
            ))
        };
        let connecting = async {
            match &self.tls {
                Some(tls) => {
                    let (client, connection) = self.config.connect(tls.clone()).await?;
                    Ok::<_, tokio_postgres::Error>((client, tokio::spawn(drive(connection))))
                }
                None => {
                    let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                    Ok((client, tokio::spawn(drive(connection))))
                }
            }
        };
        let (client, task) = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| failed(&format!("timed out after {:?}", self.timeout)))?
            .map_err(|error| failed(&describe(&error)))?;
        Ok(Session {
            client,
            connection: Connection(task),
            timeout: self.timeout,
        })
    }
}

/// Runs a connection until its client is dropped or the server goes away.
async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "PostgreSQL connection ended with an error");
    }
}

/// The task of a connection, stopped when dropped (a session abandoned on an error).
struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A logged-in connection.
pub struct Session {
    client: Client,
    connection: Connection,
    timeout: Duration,
}

impl Session {
    /// Runs utility statements (no parameters, no rows); `what` says what they do, for errors.
    pub async fn execute(&self, what: &str, sql: &str) -> Result<(), ProvisionError> {
        tokio::time::timeout(self.timeout, self.client.batch_execute(sql))
            .await
            .map_err(|_| self.timed_out(what))?
            .map_err(|error| failed(what, &error))
    }

    /// Runs a query with parameters; `what` says what it asks, for errors.
    pub async fn query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, ProvisionError> {
        tokio::time::timeout(self.timeout, self.client.query(sql, params))
            .await
            .map_err(|_| self.timed_out(what))?
            .map_err(|error| failed(what, &error))
    }

    /// Logs out, waiting (within the timeout) for the connection to close cleanly.
    pub async fn close(self) {
        let Session {
            client,
            mut connection,
            timeout,
        } = self;
        drop(client);
        let _ = tokio::time::timeout(timeout, &mut connection.0).await;
    }

    fn timed_out(&self, what: &str) -> ProvisionError {
        ProvisionError(format!("{what}: timed out after {:?}", self.timeout))
    }
}

/// The value of column `index` of `row`, or an error saying what was asked.
pub fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    what: &str,
) -> Result<T, ProvisionError> {
    row.try_get(index)
        .map_err(|error| ProvisionError(format!("{what}: unexpected answer: {error}")))
}

fn failed(what: &str, error: &tokio_postgres::Error) -> ProvisionError {
    ProvisionError(format!("{what}: {}", describe(error)))
}
