//! Reads of the PostgreSQL store: each read is one `REPEATABLE READ READ ONLY` transaction, so
//! it sees one consistent snapshot, and never waits for the writer.
//!
//! Longer than most files: it is every query of the backend (the [`Reads`] of the seam), each
//! one statement over one index.

use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use super::failed;
use super::schema::{META_AUDIT_HEAD, META_AUDIT_KEY, META_NEXT_SEQ, u64_of};
use crate::audit::Event;
use crate::audit::key::{Checkpoint, PublicKey};
use crate::audit::query::{ActionFilter, Filter};
use crate::model::{
    AccessRequest, Offboarding, Page, Principal, RequestId, ResourceName, ReviewState, StateKind,
    Timestamp,
};
use crate::store::embedded::{review_code, state_code};
use crate::store::records::decode;
use crate::store::seam::Reads;
use crate::store::{AuditCursor, AuditPage, OutboxDue, Outgoing, StoreError};

/// One read transaction on a pooled connection.
pub(super) struct Snapshot<'a> {
    client: Client,
    runtime: &'a Handle,
    /// Whether a statement failed (the connection is then not reused).
    broken: std::cell::Cell<bool>,
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl<'a> Snapshot<'a> {
    pub(super) fn begin(client: Client, runtime: &'a Handle) -> Result<Self, StoreError> {
        runtime
            .block_on(client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            .map_err(|e| failed("beginning a read", &e))?;
        Ok(Self {
            client,
            runtime,
            broken: std::cell::Cell::new(false),
        })
    }

    /// Ends the transaction; the connection, when it can be used again.
    pub(super) fn finish(self) -> Option<Client> {
        if self.broken.get() {
            return None;
        }
        self.runtime
            .block_on(self.client.batch_execute("COMMIT"))
            .ok()
            .map(|()| self.client)
    }

    fn query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.runtime
            .block_on(self.client.query(sql, params))
            .map_err(|e| {
                self.broken.set(true);
                failed(what, &e)
            })
    }

    /// The records (first column) `sql` selects from `table`, decoded.
    fn records<T: crate::store::records::Stored>(
        &self,
        table: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.query(&format!("reading {table}"), sql, params)?;
        rows.iter().map(|row| decode(table, row.get(0))).collect()
    }

    fn requests_where(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<AccessRequest>, StoreError> {
        self.records("elevate_requests", sql, params)
    }

    fn count(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let rows = self.query("counting", sql, params)?;
        Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.query(
            "reading the store's metadata",
            "SELECT value FROM elevate_meta WHERE name = $1",
            &[&name],
        )?;
        Ok(rows.first().map(|row| row.get(0)))
    }
}

impl Reads for Snapshot<'_> {
    fn request(&self, id: RequestId) -> Result<Option<AccessRequest>, StoreError> {
        Ok(self
            .requests_where(
                "SELECT record FROM elevate_requests WHERE id = $1",
                &[&int(id.raw())],
            )?
            .pop())
    }

    fn requests_of(
        &self,
        principal: &Principal,
        state: Option<StateKind>,
        page: Page,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let before = int(page.before.map_or(u64::MAX, RequestId::raw));
        let state = state.map(|kind| i16::from(state_code(kind)));
        self.requests_where(
            "SELECT record FROM elevate_requests WHERE requester = $1 AND id < $2 \
             AND ($3::smallint IS NULL OR state = $3) ORDER BY id DESC LIMIT $4",
            &[&principal.as_str(), &before, &state, &limit(page.limit)],
        )
    }

    fn requests(
        &self,
        state: Option<StateKind>,
        page: Page,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let before = int(page.before.map_or(u64::MAX, RequestId::raw));
        match state {
            Some(kind) => self.requests_where(
                "SELECT record FROM elevate_requests WHERE state = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3",
                &[&i16::from(state_code(kind)), &before, &limit(page.limit)],
            ),
            None => self.requests_where(
                "SELECT record FROM elevate_requests WHERE id < $1 ORDER BY id DESC LIMIT $2",
                &[&before, &limit(page.limit)],
            ),
        }
    }

    fn requests_in_state(&self, kind: StateKind) -> Result<Vec<AccessRequest>, StoreError> {
        self.requests_where(
            "SELECT record FROM elevate_requests WHERE state = $1 ORDER BY id",
            &[&i16::from(state_code(kind))],
        )
    }

    fn ids_in_state(&self, kind: StateKind) -> Result<Vec<RequestId>, StoreError> {
        let rows = self.query(
            "reading request ids",
            "SELECT id FROM elevate_requests WHERE state = $1 ORDER BY id",
            &[&i16::from(state_code(kind))],
        )?;
        Ok(rows
            .iter()
            .map(|row| RequestId::from_raw(row.get::<_, i64>(0) as u64))
            .collect())
    }

    fn open_ids_where(
        &self,
        keep: &mut dyn FnMut(&str, &str) -> bool,
    ) -> Result<Vec<RequestId>, StoreError> {
        let rows = self.query(
            "reading open requests",
            "SELECT requester, resource, id FROM elevate_requests WHERE open \
             ORDER BY requester, resource, id",
            &[],
        )?;
        let mut out = Vec::new();
        let mut last: Option<(&str, &str, bool)> = None;
        for row in &rows {
            let (requester, resource): (&str, &str) = (row.get(0), row.get(1));
            let kept = match last {
                Some((who, on, kept)) if who == requester && on == resource => kept,
                _ => {
                    let kept = keep(requester, resource);
                    last = Some((requester, resource, kept));
                    kept
                }
            };
            if kept {
                out.push(RequestId::from_raw(row.get::<_, i64>(2) as u64));
            }
        }
        Ok(out)
    }

    fn count_in_state(&self, kind: StateKind) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM elevate_requests WHERE state = $1",
            &[&i16::from(state_code(kind))],
        )
    }

    fn extensions_pending(&self) -> Result<Vec<AccessRequest>, StoreError> {
        self.requests_where(
            "SELECT record FROM elevate_requests WHERE extension_pending ORDER BY id",
            &[],
        )
    }

    fn open_of_except(
        &self,
        principal: &Principal,
        resource: Option<&ResourceName>,
        except: RequestId,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        self.requests_where(
            "SELECT record FROM elevate_requests WHERE open AND requester = $1 \
             AND ($2::text IS NULL OR resource = $2) AND id <> $3 ORDER BY resource, id",
            &[
                &principal.as_str(),
                &resource.map(ResourceName::as_str),
                &int(except.raw()),
            ],
        )
    }

    fn deadlines(&self) -> Result<Vec<(Timestamp, RequestId)>, StoreError> {
        let rows = self.query(
            "reading deadlines",
            "SELECT deadline, id FROM elevate_requests WHERE deadline IS NOT NULL \
             ORDER BY deadline, id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    Timestamp::from_unix_millis(row.get::<_, i64>(0) as u64),
                    RequestId::from_raw(row.get::<_, i64>(1) as u64),
                )
            })
            .collect())
    }

    fn reviews(&self, states: &[ReviewState]) -> Result<Vec<AccessRequest>, StoreError> {
        let codes: Vec<i16> = states
            .iter()
            .map(|state| i16::from(review_code(*state)))
            .collect();
        self.requests_where(
            "SELECT record FROM elevate_requests WHERE review = ANY($1) ORDER BY id",
            &[&codes],
        )
    }

    fn count_reviews(&self, state: ReviewState) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM elevate_requests WHERE review = $1",
            &[&i16::from(review_code(state))],
        )
    }

    fn outbox_due(
        &self,
        now: Timestamp,
        limit_: usize,
        skip: &std::collections::BTreeSet<String>,
        scan: usize,
    ) -> Result<OutboxDue, StoreError> {
        let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
        let rows = self.query(
            "reading the outbox",
            "SELECT seq, due, record FROM elevate_outbox WHERE NOT (notifier = ANY($1)) \
             ORDER BY due, seq LIMIT $2",
            &[&skip, &limit(scan)],
        )?;
        let mut found = OutboxDue {
            due: Vec::new(),
            next: None,
            complete: rows.len() < scan,
        };
        for row in &rows {
            let (seq, at) = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
            if at > now.unix_millis() {
                found.next = Some(Timestamp::from_unix_millis(at));
                found.complete = true;
                break;
            }
            let outgoing: Outgoing = decode("elevate_outbox", row.get(2))?;
            found.due.push((seq, outgoing));
            if found.due.len() >= limit_ {
                break;
            }
        }
        Ok(found)
    }

    fn directory(&self) -> Result<Vec<crate::store::DirectoryRecord>, StoreError> {
        let rows = self.query(
            "reading elevate_directory",
            "SELECT kind, id, resource FROM elevate_directory ORDER BY kind, id",
            &[],
        )?;
        rows.iter()
            .map(|row| {
                let kind: &str = row.get(0);
                let kind = crate::store::DirectoryKind::parse(kind).ok_or_else(|| {
                    StoreError::Corrupt {
                        table: "elevate_directory",
                        message: format!("unknown resource kind '{kind}'"),
                    }
                })?;
                Ok(crate::store::DirectoryRecord {
                    kind,
                    id: row.get(1),
                    resource: row.get(2),
                })
            })
            .collect()
    }

    fn offboarded(&self) -> Result<Vec<Offboarding>, StoreError> {
        self.records(
            "elevate_offboarded",
            "SELECT record FROM elevate_offboarded ORDER BY principal",
            &[],
        )
    }

    fn claimed(&self, key: &str) -> Result<Option<crate::store::idempotency::Claim>, StoreError> {
        Ok(self
            .records(
                "elevate_idempotency",
                "SELECT outcome FROM elevate_idempotency WHERE key = $1",
                &[&key],
            )?
            .pop())
    }

    fn claims(&self) -> Result<Vec<crate::store::idempotency::Claim>, StoreError> {
        self.records(
            "elevate_idempotency",
            "SELECT outcome FROM elevate_idempotency ORDER BY key",
            &[],
        )
    }

    fn outbox_len(&self) -> Result<u64, StoreError> {
        self.count("SELECT count(*) FROM elevate_outbox", &[])
    }

    fn events_of(&self, id: RequestId) -> Result<Vec<Event>, StoreError> {
        self.records(
            "elevate_audit",
            "SELECT record FROM elevate_audit WHERE request = $1 ORDER BY seq",
            &[&int(id.raw())],
        )
    }

    fn events_with_keys(&self, from: u64, limit_: usize) -> Result<Vec<(u64, Event)>, StoreError> {
        self.event_records(from, limit_)?
            .into_iter()
            .map(|(seq, bytes)| Ok((seq, decode("elevate_audit", &bytes)?)))
            .collect()
    }

    fn event_records(&self, from: u64, limit_: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows = self.query(
            "reading the audit log",
            "SELECT seq, record FROM elevate_audit WHERE seq >= $1 ORDER BY seq LIMIT $2",
            &[&int(from), &limit(limit_)],
        )?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, i64>(0) as u64, row.get(1)))
            .collect())
    }

    fn audit_head(&self) -> Result<[u8; 32], StoreError> {
        Ok(self
            .meta(META_AUDIT_HEAD)?
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .unwrap_or(crate::audit::GENESIS))
    }

    fn audit_page(
        &self,
        filter: &Filter,
        cursor: Option<AuditCursor>,
        limit_: usize,
        _scan: usize,
    ) -> Result<AuditPage, StoreError> {
        let since = int(filter.since.map_or(0, |t| t.unix_millis()));
        let (upper_at, upper_seq) = cursor.map_or(
            (filter.until.map_or(u64::MAX, |t| t.unix_millis()), 0),
            |c| (c.at, c.seq),
        );
        let mut page = AuditPage {
            events: Vec::new(),
            next: None,
        };
        if (upper_at, upper_seq) <= (since as u64, 0) {
            return Ok(page);
        }
        let (family, exact) = match &filter.action {
            Some(ActionFilter::Exact(action)) => (None, Some(action.as_str())),
            Some(ActionFilter::Family(prefix)) => (Some(prefix.as_str()), None),
            None => (None, None),
        };
        let resource = filter.resource.as_ref().map(ResourceName::as_str);
        let (upper_at, upper_seq) = (int(upper_at), int(upper_seq));
        // Every condition is in the statement, so that each page is one index scan (by
        // principal, resource, action or time, as the planner picks), newest first.
        let rows = match &filter.principal {
            Some(principal) => self.query(
                "querying the audit log",
                "SELECT a.at, a.seq, a.record FROM elevate_audit_principals p \
                 JOIN elevate_audit a ON a.seq = p.seq \
                 WHERE p.principal = $1 AND (p.at, p.seq) >= ($2, 0) AND (p.at, p.seq) < ($3, $4) \
                 AND ($5::text IS NULL OR a.resource = $5) \
                 AND ($6::text IS NULL OR a.action = $6) \
                 AND ($7::text IS NULL OR starts_with(a.action, $7)) \
                 ORDER BY p.at DESC, p.seq DESC LIMIT $8",
                &[
                    &principal.as_str(),
                    &since,
                    &upper_at,
                    &upper_seq,
                    &resource,
                    &exact,
                    &family,
                    &limit(limit_.saturating_add(1)),
                ],
            )?,
            None => self.query(
                "querying the audit log",
                "SELECT at, seq, record FROM elevate_audit \
                 WHERE (at, seq) >= ($1, 0) AND (at, seq) < ($2, $3) \
                 AND ($4::text IS NULL OR resource = $4) \
                 AND ($5::text IS NULL OR action = $5) \
                 AND ($6::text IS NULL OR starts_with(action, $6)) \
                 ORDER BY at DESC, seq DESC LIMIT $7",
                &[
                    &since,
                    &upper_at,
                    &upper_seq,
                    &resource,
                    &exact,
                    &family,
                    &limit(limit_.saturating_add(1)),
                ],
            )?,
        };
        for row in &rows {
            let (at, seq) = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
            if page.events.len() >= limit_ {
                page.next = Some(AuditCursor { at, seq: seq + 1 });
                break;
            }
            let event: Event = decode("elevate_audit", row.get(2))?;
            if filter.matches(&event) {
                page.events.push(event);
            }
        }
        Ok(page)
    }

    fn checkpoints(&self, from: u64, limit_: usize) -> Result<Vec<Checkpoint>, StoreError> {
        self.records(
            "elevate_checkpoints",
            "SELECT record FROM elevate_checkpoints WHERE seq >= $1 ORDER BY seq LIMIT $2",
            &[&int(from), &limit(limit_)],
        )
    }

    fn checkpoint_at(&self, seq: u64) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .records(
                "elevate_checkpoints",
                "SELECT record FROM elevate_checkpoints WHERE seq = $1",
                &[&int(seq)],
            )?
            .pop())
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .records(
                "elevate_checkpoints",
                "SELECT record FROM elevate_checkpoints ORDER BY seq DESC LIMIT 1",
                &[],
            )?
            .pop())
    }

    fn last_event(&self) -> Result<Option<Event>, StoreError> {
        Ok(self
            .records(
                "elevate_audit",
                "SELECT record FROM elevate_audit ORDER BY seq DESC LIMIT 1",
                &[],
            )?
            .pop())
    }

    fn audit_key(&self) -> Result<Option<PublicKey>, StoreError> {
        Ok(self
            .meta(META_AUDIT_KEY)?
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(PublicKey::from_bytes))
    }

    fn audit_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta(META_NEXT_SEQ)?
            .and_then(|bytes| u64_of(&bytes))
            .unwrap_or(1)
            .saturating_sub(1))
    }

    fn requests_after(
        &self,
        after: Option<RequestId>,
        limit_: usize,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let from = after.map_or(0, |id| id.raw().saturating_add(1));
        self.requests_where(
            "SELECT record FROM elevate_requests WHERE id >= $1 ORDER BY id LIMIT $2",
            &[&int(from), &limit(limit_)],
        )
    }
}
