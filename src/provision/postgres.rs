//! The `postgres` provisioner: access to a PostgreSQL server is membership of one configured
//! role (`target_role`), in one of two modes.
//!
//! - `membership`: the holder's existing login role (the lease's account) becomes a member of
//!   the target role; revoke takes the membership away and ends the login's sessions, so none
//!   keeps what `SET ROLE` gave it. The grant key is the login, so leases of several resources
//!   on one provisioner share it.
//! - `ephemeral`: a login role named `<role_prefix><lease id>` (`elevate_req_7`) is made per
//!   lease, with a fresh random password handed to the holder once and `VALID UNTIL` the
//!   lease's end, so PostgreSQL itself refuses the password after expiry even if elevate is
//!   down. Revoke forbids new logins, ends the role's sessions, hands what it owns in the
//!   connected database to the admin role and drops it. Objects it owns in other databases
//!   make the drop fail, which is reported and retried.
//!
//! Every operation connects, acts, and confirms by asking the catalog again (read-back): a
//! revoke is `Ok` only once `pg_auth_members` (or `pg_roles`) says the access is gone. Names go
//! into statements only through [`quote_ident`], values through [`quote_literal`]; catalog
//! queries take them as parameters. Passwords are sent as SCRAM verifiers made here, so the
//! plain password never reaches the server or its logs, and never appears in an error or a log
//! line of elevate. Operations are serialized per grant key within the daemon.
//!
//! Longer than most files: the provisioner's grant, revoke, read-back, listing and password
//! handling are one protocol with one target; its configuration, TLS and sessions are
//! submodules.

pub mod config;
mod quote;
mod session;

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use tokio::time::Instant;

pub use quote::{MAX_IDENTIFIER_BYTES, QuoteError, identifier_problem, quote_ident, quote_literal};

use self::session::{Server, Session, column};
use super::{BoxFuture, Credentials, Granted, Holding, LeaseTarget, ProvisionError, Provisioner};
use crate::keyed::KeyedLocks;
use crate::model::{RequestId, ResourceName, Timestamp};
use config::{PostgresConfig, PostgresMode};

/// The longest `role_prefix`: what leaves room for the longest lease id (`req_` and 20 digits)
/// within PostgreSQL's 63-byte names.
pub const MAX_ROLE_PREFIX_BYTES: usize = MAX_IDENTIFIER_BYTES - "req_18446744073709551615".len();

/// How long revoke waits for ended sessions to be gone.
const SESSION_END_WAIT: Duration = Duration::from_secs(2);

/// Length of generated passwords, from 62 letters and digits (about 190 bits).
const PASSWORD_LENGTH: usize = 32;

/// The name of the ephemeral role of `lease`: `prefix` then the lease id with `-` as `_`
/// (`elevate_req_7`), so that it needs no quoting in a client's connection string.
pub fn ephemeral_role(prefix: &str, lease: RequestId) -> String {
    format!("{prefix}{}", lease.to_string().replace('-', "_"))
}

/// Whether `name` is an ephemeral role name: `prefix`, `req_`, then a number.
fn is_ephemeral_role(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("req_"))
        .and_then(|digits| digits.parse::<RequestId>().ok())
        .is_some_and(|lease| ephemeral_role(prefix, lease) == name)
}

/// What the provisioner does to the target role.
#[derive(Debug)]
enum Mode {
    Membership {
        terminate_sessions: bool,
        /// Members that elevate does not manage.
        keep: BTreeSet<String>,
    },
    Ephemeral {
        role_prefix: String,
    },
}

/// Where holders of ephemeral roles connect, as handed to them.
#[derive(Debug)]
struct Endpoint {
    host: String,
    port: u16,
    database: String,
}

/// Grants membership of one PostgreSQL role.
pub struct PostgresProvisioner {
    server: Server,
    endpoint: Endpoint,
    admin_role: String,
    target_role: String,
    mode: Mode,
    /// One operation at a time per grant key (a login or an ephemeral role).
    changes: KeyedLocks<String>,
}

impl fmt::Debug for PostgresProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresProvisioner")
            .field("server", &self.server)
            .field("admin_role", &self.admin_role)
            .field("target_role", &self.target_role)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PostgresProvisioner {
    /// A provisioner for a checked configuration section. Reads the password file and the
    /// certificates now, so that unusable ones stop the daemon before it serves.
    pub fn new(config: &PostgresConfig) -> Result<Self, String> {
        let crate::pg::Settings {
            config: settings,
            tls,
            shown,
        } = config.login().settings()?;
        let mode = match config.mode {
            PostgresMode::Membership => Mode::Membership {
                terminate_sessions: config.terminate_sessions(),
                keep: config.keep_members.iter().cloned().collect(),
            },
            PostgresMode::Ephemeral => Mode::Ephemeral {
                role_prefix: config.role_prefix().to_owned(),
            },
        };
        Ok(Self {
            server: Server::new(settings, tls, config.timeout, shown),
            endpoint: Endpoint {
                host: config.host.clone(),
                port: config.port,
                database: config.database.clone(),
            },
            admin_role: config.admin_role.clone(),
            target_role: config.target_role.clone(),
            mode,
            changes: KeyedLocks::default(),
        })
    }

    /// The role of `lease` in ephemeral mode, `None` in membership mode.
    pub fn role_of(&self, lease: RequestId) -> Option<String> {
        match &self.mode {
            Mode::Ephemeral { role_prefix } => Some(ephemeral_role(role_prefix, lease)),
            Mode::Membership { .. } => None,
        }
    }

    /// Connects and checks that the target role exists.
    async fn connect(&self) -> Result<Session, ProvisionError> {
        let session = self.server.connect().await?;
        if role(&session, &self.target_role).await?.is_none() {
            return Err(ProvisionError(format!(
                "target role {:?} does not exist on {}",
                self.target_role,
                self.server.shown()
            )));
        }
        Ok(session)
    }

    /// Why elevate leaves `login`'s membership alone, if it does.
    fn unmanaged(&self, login: &str) -> Option<&'static str> {
        match &self.mode {
            _ if login == self.admin_role => Some("is elevate's admin role"),
            Mode::Membership { keep, .. } if keep.contains(login) => Some("is in keep_members"),
            _ => None,
        }
    }

    // Membership mode.

    async fn add_member(&self, login: &str) -> Result<(), ProvisionError> {
        if let Some(reason) = self.unmanaged(login) {
            return Err(ProvisionError(format!(
                "login role {login:?} {reason}; elevate does not manage its membership of {:?}",
                self.target_role
            )));
        }
        let member = quote_ident(login)?;
        let _held = self.changes.lock(login.to_owned()).await;
        super::fence::check()?;
        let session = self.connect().await?;
        if role(&session, login).await?.is_none() {
            return Err(ProvisionError(format!(
                "login role {login:?} does not exist on {}",
                self.server.shown()
            )));
        }
        if !is_member(&session, &self.target_role, login).await? {
            session
                .execute(
                    &format!("granting {:?} to {login:?}", self.target_role),
                    &format!("GRANT {} TO {member}", self.target()?),
                )
                .await?;
        }
        if !is_member(&session, &self.target_role, login).await? {
            return Err(ProvisionError(format!(
                "{login:?} is still not a member of {:?} after GRANT",
                self.target_role
            )));
        }
        session.close().await;
        Ok(())
    }

    async fn remove_member(&self, login: &str) -> Result<(), ProvisionError> {
        if let Some(reason) = self.unmanaged(login) {
            tracing::debug!(login, reason, "not revoking an unmanaged membership");
            return Ok(());
        }
        let terminate = matches!(
            self.mode,
            Mode::Membership {
                terminate_sessions: true,
                ..
            }
        );
        let member = quote_ident(login)?;
        let _held = self.changes.lock(login.to_owned()).await;
        super::fence::check()?;
        // Without the target role there is no membership to take away: no check for it.
        let session = self.server.connect().await?;
        if role(&session, login).await?.is_none() {
            // No role, no membership and no sessions.
            session.close().await;
            return Ok(());
        }
        self.revoke_grants(&session, login, &member).await?;
        if terminate {
            end_sessions(&session, login).await?;
        }
        if is_member(&session, &self.target_role, login).await? {
            return Err(ProvisionError(format!(
                "{login:?} is still a member of {:?} after REVOKE",
                self.target_role
            )));
        }
        session.close().await;
        Ok(())
    }

    /// Revokes every direct grant of the target role to `login`. From PostgreSQL 16 on, one
    /// membership may be granted by several grantors and `REVOKE` removes only the current
    /// user's grant, so each grantor's is revoked by name.
    async fn revoke_grants(
        &self,
        session: &Session,
        login: &str,
        member: &str,
    ) -> Result<(), ProvisionError> {
        let what = format!(
            "looking up the grants of {:?} to {login:?}",
            self.target_role
        );
        let rows = session
            .query(
                &what,
                "SELECT DISTINCT g.rolname::text FROM pg_auth_members m \
                 JOIN pg_roles r ON r.oid = m.roleid \
                 JOIN pg_roles u ON u.oid = m.member \
                 LEFT JOIN pg_roles g ON g.oid = m.grantor \
                 WHERE r.rolname = $1 AND u.rolname = $2",
                &[&self.target_role, &login],
            )
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let revoking = format!("revoking {:?} from {login:?}", self.target_role);
        let statement = format!("REVOKE {} FROM {member}", self.target()?);
        if server_version(session).await? < 160_000 {
            return session.execute(&revoking, &statement).await;
        }
        for row in &rows {
            match column::<Option<String>>(row, 0, &what)? {
                Some(grantor) => {
                    let by = quote_ident(&grantor)?;
                    session
                        .execute(
                            &format!("{revoking} (granted by {grantor:?})"),
                            &format!("{statement} GRANTED BY {by}"),
                        )
                        .await?;
                }
                None => session.execute(&revoking, &statement).await?,
            }
        }
        Ok(())
    }

    // Ephemeral mode.

    /// Makes or renews the ephemeral role `name` until `expires_at`. With `keep_password`, a
    /// role that exists keeps its password and no credentials are returned.
    async fn provide_role(
        &self,
        name: &str,
        expires_at: Timestamp,
        keep_password: bool,
    ) -> Result<Granted, ProvisionError> {
        let quoted = quote_ident(name)?;
        let until = valid_until(expires_at)?;
        let _held = self.changes.lock(name.to_owned()).await;
        super::fence::check()?;
        let session = self.connect().await?;
        let target = self.target()?;
        let existing = role(&session, name).await?;
        let password = match existing {
            Some(Role { superuser: true }) => {
                return Err(ProvisionError(format!(
                    "role {name:?} exists and is a superuser; elevate will not hand it out"
                )));
            }
            Some(Role { superuser: false }) if keep_password => {
                session
                    .execute(
                        &format!("renewing role {name:?}"),
                        &format!("ALTER ROLE {quoted} LOGIN VALID UNTIL {until}"),
                    )
                    .await?;
                None
            }
            Some(Role { superuser: false }) => {
                let password = new_password()?;
                session
                    .execute(
                        &format!("renewing role {name:?} with a new password"),
                        &format!(
                            "ALTER ROLE {quoted} LOGIN PASSWORD {} VALID UNTIL {until}",
                            verifier(&password)?
                        ),
                    )
                    .await?;
                Some(password)
            }
            None => {
                let password = new_password()?;
                session
                    .execute(
                        &format!("creating role {name:?}"),
                        &format!(
                            "CREATE ROLE {quoted} LOGIN PASSWORD {} VALID UNTIL {until} IN ROLE {target}",
                            verifier(&password)?
                        ),
                    )
                    .await?;
                Some(password)
            }
        };
        if !is_member(&session, &self.target_role, name).await? {
            session
                .execute(
                    &format!("granting {:?} to {name:?}", self.target_role),
                    &format!("GRANT {target} TO {quoted}"),
                )
                .await?;
            if !is_member(&session, &self.target_role, name).await? {
                return Err(ProvisionError(format!(
                    "{name:?} is still not a member of {:?} after GRANT",
                    self.target_role
                )));
            }
        }
        session.close().await;
        Ok(Granted {
            credentials: password.map(|password| self.credentials(name, password, expires_at)),
        })
    }

    fn credentials(&self, user: &str, password: String, expires_at: Timestamp) -> Credentials {
        Credentials::new([
            ("user".to_owned(), user.to_owned()),
            ("password".to_owned(), password),
            ("host".to_owned(), self.endpoint.host.clone()),
            ("port".to_owned(), self.endpoint.port.to_string()),
            ("database".to_owned(), self.endpoint.database.clone()),
            ("valid_until".to_owned(), expires_at.rfc3339()),
        ])
    }

    async fn move_expiry(&self, name: &str, expires_at: Timestamp) -> Result<(), ProvisionError> {
        let quoted = quote_ident(name)?;
        let until = valid_until(expires_at)?;
        let _held = self.changes.lock(name.to_owned()).await;
        super::fence::check()?;
        let session = self.server.connect().await?;
        if role(&session, name).await?.is_none() {
            return Err(ProvisionError(format!(
                "role {name:?} does not exist on {}",
                self.server.shown()
            )));
        }
        session
            .execute(
                &format!("moving the end of role {name:?}"),
                &format!("ALTER ROLE {quoted} VALID UNTIL {until}"),
            )
            .await?;
        session.close().await;
        Ok(())
    }

    /// Forbids new logins of `name`, ends its sessions, hands what it owns here to the admin
    /// role, drops it, and confirms it is gone.
    async fn drop_role(&self, name: &str) -> Result<(), ProvisionError> {
        let quoted = quote_ident(name)?;
        let _held = self.changes.lock(name.to_owned()).await;
        super::fence::check()?;
        let session = self.server.connect().await?;
        if role(&session, name).await?.is_some() {
            session
                .execute(
                    &format!("forbidding logins of role {name:?}"),
                    &format!("ALTER ROLE {quoted} NOLOGIN"),
                )
                .await?;
            end_sessions(&session, name).await?;
            if owns_anything(&session, name).await? {
                let admin = quote_ident(&self.admin_role)?;
                // REASSIGN and DROP OWNED need the privileges of the role they act on.
                if !has_privileges_of(&session, name).await? {
                    session
                        .execute(
                            &format!("granting role {name:?} to the admin role to clean it up"),
                            &format!("GRANT {quoted} TO {admin}"),
                        )
                        .await?;
                }
                session
                    .execute(
                        &format!("handing the objects of role {name:?} to the admin role"),
                        &format!("REASSIGN OWNED BY {quoted} TO {admin}; DROP OWNED BY {quoted}"),
                    )
                    .await?;
            }
            session
                .execute(
                    &format!("dropping role {name:?}"),
                    &format!("DROP ROLE IF EXISTS {quoted}"),
                )
                .await?;
        }
        if role(&session, name).await?.is_some() {
            return Err(ProvisionError(format!(
                "role {name:?} still exists after DROP ROLE"
            )));
        }
        session.close().await;
        Ok(())
    }

    fn target(&self) -> Result<String, ProvisionError> {
        Ok(quote_ident(&self.target_role)?)
    }

    async fn holdings(&self) -> Result<Vec<Holding>, ProvisionError> {
        let session = self.connect().await?;
        let what = format!("listing the members of {:?}", self.target_role);
        let rows = session
            .query(
                &what,
                "SELECT u.rolname::text, bool_or(m.admin_option) FROM pg_auth_members m \
                 JOIN pg_roles r ON r.oid = m.roleid \
                 JOIN pg_roles u ON u.oid = m.member \
                 WHERE r.rolname = $1 GROUP BY 1 ORDER BY 1",
                &[&self.target_role],
            )
            .await?;
        session.close().await;
        let mut holdings = Vec::new();
        for row in &rows {
            let member: String = column(row, 0, &what)?;
            let administers: bool = column(row, 1, &what)?;
            let managed = match &self.mode {
                Mode::Membership { .. } => self.unmanaged(&member).is_none(),
                Mode::Ephemeral { role_prefix } => is_ephemeral_role(role_prefix, &member),
            };
            // Elevate never grants ADMIN OPTION: members holding it administer the role.
            if managed && !administers {
                holdings.push(Holding {
                    key: member.clone(),
                    account: member,
                    resource: None,
                });
            }
        }
        Ok(holdings)
    }
}

impl Provisioner for PostgresProvisioner {
    fn grant<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        Box::pin(async move {
            match &self.mode {
                Mode::Membership { .. } => {
                    self.add_member(&target.account).await?;
                    Ok(Granted::default())
                }
                Mode::Ephemeral { role_prefix } => {
                    let name = ephemeral_role(role_prefix, target.lease);
                    self.provide_role(&name, target.expires_at, false).await
                }
            }
        })
    }

    fn revoke<'a>(&'a self, target: &'a LeaseTarget) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            match &self.mode {
                Mode::Membership { .. } => self.remove_member(&target.account).await,
                Mode::Ephemeral { role_prefix } => {
                    self.drop_role(&ephemeral_role(role_prefix, target.lease))
                        .await
                }
            }
        })
    }

    fn extend<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        Box::pin(async move {
            match &self.mode {
                Mode::Membership { .. } => {}
                Mode::Ephemeral { role_prefix } => {
                    let name = ephemeral_role(role_prefix, target.lease);
                    self.move_expiry(&name, target.expires_at).await?;
                }
            }
            Ok(Granted::default())
        })
    }

    fn restore<'a>(
        &'a self,
        target: &'a LeaseTarget,
    ) -> BoxFuture<'a, Result<Granted, ProvisionError>> {
        Box::pin(async move {
            match &self.mode {
                Mode::Membership { .. } => self.grant(target).await,
                Mode::Ephemeral { role_prefix } => {
                    let name = ephemeral_role(role_prefix, target.lease);
                    self.provide_role(&name, target.expires_at, true).await
                }
            }
        })
    }

    fn keys_span_resources(&self) -> bool {
        // A membership's key is the login: every resource using this provisioner shares it.
        matches!(self.mode, Mode::Membership { .. })
    }

    fn grant_key(&self, target: &LeaseTarget) -> String {
        match &self.mode {
            Mode::Membership { .. } => target.account.clone(),
            Mode::Ephemeral { role_prefix } => ephemeral_role(role_prefix, target.lease),
        }
    }

    fn list<'a>(
        &'a self,
        resources: &'a [ResourceName],
    ) -> BoxFuture<'a, Result<Option<Vec<Holding>>, ProvisionError>> {
        // One target role per provisioner: the holdings are the same for every resource.
        let _ = resources;
        Box::pin(async move { self.holdings().await.map(Some) })
    }

    fn remove<'a>(&'a self, holding: &'a Holding) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            match &self.mode {
                Mode::Membership { .. } => self.remove_member(&holding.account).await,
                Mode::Ephemeral { role_prefix } => {
                    if !is_ephemeral_role(role_prefix, &holding.account) {
                        return Err(ProvisionError(format!(
                            "role {:?} is not named {role_prefix}req_<number>; elevate drops only the roles it makes",
                            holding.account
                        )));
                    }
                    self.drop_role(&holding.account).await
                }
            }
        })
    }
}

/// A fresh password of letters and digits from the system's random source.
fn new_password() -> Result<String, ProvisionError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // The largest multiple of the alphabet's size that fits a byte: bytes at or above it are
    // skipped, so that every character is equally likely.
    const LIMIT: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let random = SystemRandom::new();
    let mut password = String::with_capacity(PASSWORD_LENGTH);
    let mut bytes = [0u8; 64];
    while password.len() < PASSWORD_LENGTH {
        random
            .fill(&mut bytes)
            .map_err(|_| ProvisionError("the system's random source failed".to_owned()))?;
        for byte in bytes.iter().filter(|byte| **byte < LIMIT) {
            if password.len() == PASSWORD_LENGTH {
                break;
            }
            password.push(char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]));
        }
    }
    Ok(password)
}

/// The SCRAM-SHA-256 verifier of `password` as a literal: the server stores it as is, and the
/// plain password never leaves elevate.
fn verifier(password: &str) -> Result<String, ProvisionError> {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    Ok(quote_literal(&verifier)?)
}

fn valid_until(expires_at: Timestamp) -> Result<String, ProvisionError> {
    Ok(quote_literal(&expires_at.rfc3339())?)
}

/// What the catalog says about a role.
struct Role {
    superuser: bool,
}

async fn role(session: &Session, name: &str) -> Result<Option<Role>, ProvisionError> {
    let what = format!("looking up role {name:?}");
    let rows = session
        .query(
            &what,
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await?;
    rows.first()
        .map(|row| {
            Ok(Role {
                superuser: column(row, 0, &what)?,
            })
        })
        .transpose()
}

/// Whether `member` is a direct member of `role`.
async fn is_member(session: &Session, role: &str, member: &str) -> Result<bool, ProvisionError> {
    let what = format!("checking whether {member:?} is a member of {role:?}");
    let rows = session
        .query(
            &what,
            "SELECT EXISTS (SELECT 1 FROM pg_auth_members m \
             JOIN pg_roles r ON r.oid = m.roleid \
             JOIN pg_roles u ON u.oid = m.member \
             WHERE r.rolname = $1 AND u.rolname = $2)",
            &[&role, &member],
        )
        .await?;
    match rows.first() {
        Some(row) => column(row, 0, &what),
        None => Err(ProvisionError(format!("{what}: no answer"))),
    }
}

async fn server_version(session: &Session) -> Result<i32, ProvisionError> {
    let what = "asking the server's version";
    let rows = session
        .query(
            what,
            "SELECT current_setting('server_version_num')::int4",
            &[],
        )
        .await?;
    match rows.first() {
        Some(row) => column(row, 0, what),
        None => Err(ProvisionError(format!("{what}: no answer"))),
    }
}

/// Whether the admin role has the privileges of role `name` (is a superuser, or inherits it).
async fn has_privileges_of(session: &Session, name: &str) -> Result<bool, ProvisionError> {
    let what = format!("asking whether the admin role has the privileges of {name:?}");
    let rows = session
        .query(
            &what,
            "SELECT pg_has_role(current_user, r.oid, 'USAGE') FROM pg_roles r \
             WHERE r.rolname = $1",
            &[&name],
        )
        .await?;
    match rows.first() {
        Some(row) => column(row, 0, &what),
        None => Ok(false),
    }
}

/// Whether anything depends on role `name`: objects it owns or privileges granted to it, in
/// any database.
async fn owns_anything(session: &Session, name: &str) -> Result<bool, ProvisionError> {
    let what = format!("looking up what role {name:?} owns");
    let rows = session
        .query(
            &what,
            "SELECT EXISTS (SELECT 1 FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid \
             WHERE d.refclassid = 'pg_authid'::regclass AND r.rolname = $1)",
            &[&name],
        )
        .await?;
    match rows.first() {
        Some(row) => column(row, 0, &what),
        None => Err(ProvisionError(format!("{what}: no answer"))),
    }
}

/// Ends the sessions `login` has now and waits until they are gone. Sessions started later
/// are not waited for: they began after the change and cannot hold what it took away.
async fn end_sessions(session: &Session, login: &str) -> Result<(), ProvisionError> {
    let what = format!("listing the sessions of {login:?}");
    let rows = session
        .query(
            &what,
            "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
            &[&login],
        )
        .await?;
    let pids = rows
        .iter()
        .map(|row| column::<i32>(row, 0, &what))
        .collect::<Result<Vec<_>, _>>()?;
    if pids.is_empty() {
        return Ok(());
    }
    session
        .query(
            &format!("ending the sessions of {login:?}"),
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int4[]) AS pid",
            &[&pids],
        )
        .await?;
    let deadline = Instant::now() + SESSION_END_WAIT;
    let what = format!("waiting for the sessions of {login:?} to end");
    loop {
        let rows = session
            .query(
                &what,
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&pids],
            )
            .await?;
        let left: i64 = match rows.first() {
            Some(row) => column(row, 0, &what)?,
            None => 0,
        };
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ProvisionError(format!(
                "{left} session(s) of {login:?} still running {SESSION_END_WAIT:?} after being ended"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn ephemeral_roles_are_named_after_the_lease() {
        assert_eq!(
            ephemeral_role("elevate_", RequestId::from_raw(7)),
            "elevate_req_7"
        );
        let longest = ephemeral_role(
            &"p".repeat(MAX_ROLE_PREFIX_BYTES),
            RequestId::from_raw(u64::MAX),
        );
        assert_eq!(longest.len(), MAX_IDENTIFIER_BYTES);
        assert!(identifier_problem(&longest).is_none());
        assert!(is_ephemeral_role("elevate_", "elevate_req_7"));
        for other in [
            "elevate_admin",
            "elevate_req_",
            "elevate_req_07",
            "elevate_req_0",
            "elevate_req_7x",
            "elevate_req_+7",
            "x_elevate_req_7",
        ] {
            assert!(!is_ephemeral_role("elevate_", other), "{other}");
        }
    }

    #[test]
    fn passwords_are_long_fresh_letters_and_digits() {
        let first = new_password().unwrap();
        assert_eq!(first.len(), PASSWORD_LENGTH);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(first, new_password().unwrap());
    }

    #[test]
    fn verifiers_hide_the_password() {
        let literal = verifier("s3cret").unwrap();
        assert!(literal.starts_with("'SCRAM-SHA-256$4096:"), "{literal}");
        assert!(!literal.contains("s3cret"));
    }
}
