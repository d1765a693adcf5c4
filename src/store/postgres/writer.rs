//! The writer thread of the PostgreSQL store: group commit, fenced. It takes the first queued
//! job, drains whatever else is queued (up to the batch limit) into one transaction, checks
//! the leadership epoch inside it, applies each job's changes as the job returns them (so the
//! next job of the batch reads them), commits once, tells the commit listener, then answers
//! every caller.
//!
//! Longer than most files: applying one job's changes to every table and column it touches is
//! one concept (as in the embedded backend's `tables`), and the View of a job reads the same
//! transaction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::schema::{META_AUDIT_HEAD, META_NEXT_ID, META_NEXT_OUTBOX, META_NEXT_SEQ, u64_of};
use super::{Target, failed};
use crate::audit::key::Checkpoint;
use crate::audit::{Actor, Draft, Event, GENESIS};
use crate::model::{AccessRequest, Offboarding, Principal, RequestId, ResourceName, Timestamp};
use crate::store::batch::{self, Batch, Queue, Transaction};
use crate::store::embedded::{review_code, state_code};
use crate::store::idempotency::Claim;
use crate::store::records::{decode, encode, entry_bytes, upgrade_entry};
use crate::store::seam::{Job, View};
use crate::store::{CommitListener, Outgoing, Signing, StoreError, StoreOptions, StoreStats};

pub(super) fn spawn(
    target: Arc<Target>,
    runtime: Handle,
    options: StoreOptions,
    listener: Arc<dyn CommitListener>,
    stats: Arc<StoreStats>,
) -> Result<Queue, StoreError> {
    Queue::spawn(move |receiver| {
        let mut writer = Writer {
            target,
            runtime,
            connection: None,
            options,
        };
        let max_batch = writer.options.max_batch;
        batch::serve(receiver, max_batch, &stats, |jobs| {
            writer.commit_batch(jobs, &*listener, &stats);
        });
    })
}

struct Writer {
    target: Arc<Target>,
    runtime: Handle,
    /// The writer's connection and the statements prepared on it; made again after it broke.
    connection: Option<(Client, Prepared)>,
    options: StoreOptions,
}

impl Writer {
    /// The writer's connection, made when there is none (or it broke).
    fn connection(&mut self) -> Result<&mut (Client, Prepared), StoreError> {
        if self
            .connection
            .as_ref()
            .is_none_or(|(client, _)| client.is_closed())
        {
            self.connection = None;
            let statement = self.target.timeout;
            // A transaction left open by a daemon that stopped (paused, or cut off) is ended by
            // the server well within the leadership lease, so it cannot hold up a takeover.
            let idle = self
                .options
                .fence
                .as_ref()
                .map_or(statement, |fence| (fence.lease() / 3).min(statement));
            let client = self
                .runtime
                .block_on(self.target.connect(statement, idle))?;
            self.connection = Some((client, Prepared::default()));
        }
        self.connection.as_mut().ok_or(StoreError::WriterGone)
    }

    fn commit_batch(&mut self, jobs: Vec<Job>, listener: &dyn CommitListener, stats: &StoreStats) {
        let mut batch = Batch::new(jobs.len());
        // Taken when they run; refused when the transaction could not even start.
        let mut jobs = Some(jobs);
        let runtime = self.runtime.clone();
        let fence = self.options.fence.clone();
        let signing = self.options.signing.clone();
        let outcome = (|| -> Result<(), StoreError> {
            let epoch = match &fence {
                Some(fence) => Some(fence.current().ok_or_else(|| {
                    StoreError::Fenced("this node's leadership lapsed".to_owned())
                })?),
                None => None,
            };
            let (client, prepared) = self.connection()?;
            let txn = runtime
                .block_on(client.transaction())
                .map_err(|e| failed("beginning a transaction", &e))?;
            let mut tables = Tables {
                runtime: &runtime,
                txn: &txn,
                prepared,
                signing: signing.as_ref(),
                counters: Counters::default(),
                queued: 0,
                epoch: epoch.map_or(0, id),
                node: fence.as_ref().map(|fence| fence.node()).unwrap_or_default(),
                events: EventRows::default(),
                claims: Vec::new(),
            };
            let result = (|| {
                if let Some(epoch) = epoch {
                    tables.check_epoch(epoch)?;
                }
                tables.counters = tables.load_counters()?;
                batch.run(jobs.take().unwrap_or_default(), &mut tables)?;
                tables.store_counters()?;
                batch.queued = tables.queued;
                if stats.refuse_commit() {
                    return Err(StoreError::Failed(
                        "the commit was refused (injected fault)".to_owned(),
                    ));
                }
                // Still the leader by this daemon's own clock? A daemon paused since the
                // check above must not commit now (the epoch row says the same once a standby
                // took over; this also covers the time before it does).
                if let (Some(fence), Some(epoch)) = (&fence, epoch)
                    && fence.current() != Some(epoch)
                {
                    return Err(StoreError::Fenced(
                        "this node's leadership lapsed during the transaction".to_owned(),
                    ));
                }
                Ok(())
            })();
            match result {
                Ok(()) => runtime
                    .block_on(txn.commit())
                    .map_err(|e| failed("committing", &e)),
                Err(error) => {
                    let _ = runtime.block_on(txn.rollback());
                    Err(error)
                }
            }
        })();
        match &outcome {
            Ok(()) => {}
            Err(StoreError::Fenced(why)) => {
                stats.fenced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%why, "a write was refused: this node is not the leader");
                if let Some(fence) = &fence {
                    fence.deposed();
                }
            }
            Err(error) => {
                if matches!(error, StoreError::Unreachable(_)) {
                    self.connection = None;
                }
                tracing::error!(%error, "store commit failed");
            }
        }
        if let (Some(jobs), Err(error)) = (jobs, &outcome) {
            batch::refuse(jobs, error);
        }
        batch.finish(outcome, listener, stats);
    }
}

/// Statements prepared on the writer's connection, by their text.
#[derive(Default)]
struct Prepared(RefCell<HashMap<&'static str, Statement>>);

/// The counters of `elevate_meta`, read at the start of a batch and written at its end.
#[derive(Default)]
struct Counters {
    next_id: u64,
    next_seq: u64,
    head: [u8; 32],
    next_outbox: u64,
    /// The newest checkpoint's sequence number.
    covered: u64,
}

/// One write transaction.
struct Tables<'a> {
    runtime: &'a Handle,
    txn: &'a tokio_postgres::Transaction<'a>,
    prepared: &'a Prepared,
    signing: Option<&'a Signing>,
    counters: Counters,
    /// Outbox entries queued in this transaction.
    queued: usize,
    /// The leadership epoch the transaction commits in, and the node (0 and empty without a
    /// cluster), recorded with each audit entry.
    epoch: i64,
    node: &'a str,
    /// Audit entries and idempotency keys queued for the batch's end.
    events: EventRows,
    claims: Vec<Claim>,
}

/// Audit entries waiting to be written, column by column (for `unnest`).
#[derive(Default)]
struct EventRows {
    seq: Vec<i64>,
    at: Vec<i64>,
    request: Vec<Option<i64>>,
    resource: Vec<Option<String>>,
    action: Vec<String>,
    record: Vec<Vec<u8>>,
    principal: Vec<String>,
    principal_at: Vec<i64>,
    principal_seq: Vec<i64>,
}

fn id(raw: u64) -> i64 {
    raw as i64
}

impl Tables<'_> {
    fn statement(&self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.prepared.0.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .runtime
            .block_on(self.txn.prepare(sql))
            .map_err(|e| failed("preparing a statement", &e))?;
        self.prepared.0.borrow_mut().insert(sql, statement.clone());
        Ok(statement)
    }

    fn query(
        &self,
        what: &str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        self.runtime
            .block_on(self.txn.query(&statement, params))
            .map_err(|e| failed(what, &e))
    }

    fn execute(
        &self,
        what: &str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        self.runtime
            .block_on(self.txn.execute(&statement, params))
            .map_err(|e| failed(what, &e))
    }

    /// Takes the leadership row for this transaction and checks it is still `epoch`'s.
    fn check_epoch(&self, epoch: u64) -> Result<(), StoreError> {
        let rows = self.query(
            "checking the leadership epoch",
            "SELECT epoch FROM elevate_leader WHERE id = 1 FOR SHARE",
            &[],
        )?;
        let current = rows.first().map(|row| row.get::<_, i64>(0) as u64);
        if current != Some(epoch) {
            return Err(StoreError::Fenced(format!(
                "epoch {epoch} was superseded by epoch {}",
                current.unwrap_or(0)
            )));
        }
        Ok(())
    }

    fn load_counters(&self) -> Result<Counters, StoreError> {
        let rows = self.query(
            "reading the counters",
            "SELECT name, value FROM elevate_meta WHERE name = ANY($1)",
            &[&vec![
                META_NEXT_ID,
                META_NEXT_SEQ,
                META_AUDIT_HEAD,
                META_NEXT_OUTBOX,
            ]],
        )?;
        let mut counters = Counters {
            next_id: RequestId::FIRST.raw(),
            next_seq: 1,
            head: GENESIS,
            next_outbox: 1,
            covered: 0,
        };
        for row in rows {
            let name: &str = row.get(0);
            let value: &[u8] = row.get(1);
            let number = || {
                u64_of(value).ok_or_else(|| StoreError::Corrupt {
                    table: "elevate_meta",
                    message: format!("{name} is not 8 bytes"),
                })
            };
            match name {
                META_NEXT_ID => counters.next_id = number()?,
                META_NEXT_SEQ => counters.next_seq = number()?,
                META_NEXT_OUTBOX => counters.next_outbox = number()?,
                _ => {
                    counters.head =
                        <[u8; 32]>::try_from(value).map_err(|_| StoreError::Corrupt {
                            table: "elevate_meta",
                            message: "audit head is not 32 bytes".to_owned(),
                        })?;
                }
            }
        }
        let covered = self.query(
            "reading the newest checkpoint",
            "SELECT seq FROM elevate_checkpoints ORDER BY seq DESC LIMIT 1",
            &[],
        )?;
        counters.covered = covered.first().map_or(0, |row| row.get::<_, i64>(0) as u64);
        Ok(counters)
    }

    /// Writes what the batch queued (its audit entries) and the counters: the batch's last
    /// statements before the commit.
    fn store_counters(&mut self) -> Result<(), StoreError> {
        self.flush_events()?;
        self.flush_claims()?;
        let counters = &self.counters;
        let values: [(&str, Vec<u8>); 4] = [
            (META_NEXT_ID, counters.next_id.to_le_bytes().to_vec()),
            (META_NEXT_SEQ, counters.next_seq.to_le_bytes().to_vec()),
            (META_AUDIT_HEAD, counters.head.to_vec()),
            (
                META_NEXT_OUTBOX,
                counters.next_outbox.to_le_bytes().to_vec(),
            ),
        ];
        let names: Vec<&str> = values.iter().map(|(name, _)| *name).collect();
        let bytes: Vec<&[u8]> = values.iter().map(|(_, value)| value.as_slice()).collect();
        self.execute(
            "writing the counters",
            "INSERT INTO elevate_meta (name, value) SELECT * FROM unnest($1::text[], $2::bytea[]) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&names, &bytes],
        )?;
        Ok(())
    }

    /// Stores audit entry `event` as `record` (its stored bytes), with its columns and the
    /// rows of who it is about or by: queued, and written with the rest of the batch's entries
    /// by [`Tables::flush_events`] (no job reads the log back within its batch).
    fn put_event(&mut self, event: &Event, record: Vec<u8>) {
        let seq = id(event.seq);
        let at = id(event.at.unix_millis());
        let rows = &mut self.events;
        rows.seq.push(seq);
        rows.at.push(at);
        rows.request
            .push(event.request.map(|request| id(request.raw())));
        rows.resource
            .push(event.resource.as_ref().map(|r| r.as_str().to_owned()));
        rows.action.push(event.action.clone());
        rows.record.push(record);
        for principal in principals_of(event) {
            rows.principal.push(principal.as_str().to_owned());
            rows.principal_at.push(at);
            rows.principal_seq.push(seq);
        }
    }

    /// Writes the queued idempotency keys, one statement for all. No conflict clause: a key
    /// is claimed once (each job checked inside this transaction), so a duplicate is a
    /// failure, never an overwrite.
    fn flush_claims(&mut self) -> Result<(), StoreError> {
        if self.claims.is_empty() {
            return Ok(());
        }
        let claims = std::mem::take(&mut self.claims);
        let keys: Vec<&str> = claims.iter().map(|claim| claim.key.as_str()).collect();
        let principals: Vec<&str> = claims
            .iter()
            .map(|claim| claim.principal.as_str())
            .collect();
        let at: Vec<i64> = claims
            .iter()
            .map(|claim| id(claim.at.unix_millis()))
            .collect();
        let outcomes: Vec<Vec<u8>> = claims.iter().map(encode).collect();
        self.execute(
            "recording idempotency keys",
            "INSERT INTO elevate_idempotency (key, principal, at, outcome) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[])",
            &[&keys, &principals, &at, &outcomes],
        )?;
        Ok(())
    }

    /// Writes the queued audit entries and their principal rows, two statements for all.
    fn flush_events(&mut self) -> Result<(), StoreError> {
        if self.events.seq.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.events);
        self.execute(
            "appending audit entries",
            "INSERT INTO elevate_audit (seq, at, request, resource, action, record, epoch, node) \
             SELECT seq, at, request, resource, action, record, $7, $8 FROM unnest(\
             $1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bytea[]) \
             AS t(seq, at, request, resource, action, record)",
            &[
                &rows.seq,
                &rows.at,
                &rows.request,
                &rows.resource,
                &rows.action,
                &rows.record,
                &self.epoch,
                &self.node,
            ],
        )?;
        if !rows.principal.is_empty() {
            self.execute(
                "indexing audit entries",
                "INSERT INTO elevate_audit_principals (principal, at, seq) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])",
                &[&rows.principal, &rows.principal_at, &rows.principal_seq],
            )?;
        }
        Ok(())
    }

    fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.execute(
            "storing a checkpoint",
            "INSERT INTO elevate_checkpoints (seq, record) VALUES ($1, $2)",
            &[&id(checkpoint.seq), &encode(checkpoint)],
        )?;
        Ok(())
    }

    fn put_outgoing(&self, seq: u64, outgoing: &Outgoing) -> Result<(), StoreError> {
        self.execute(
            "queueing a notification",
            "INSERT INTO elevate_outbox (seq, due, notifier, record) VALUES ($1, $2, $3, $4)",
            &[
                &id(seq),
                &id(outgoing.next_attempt_at.unix_millis()),
                &outgoing.notifier,
                &encode(outgoing),
            ],
        )?;
        Ok(())
    }

    fn request(&self, id_: RequestId) -> Result<Option<AccessRequest>, StoreError> {
        let rows = self.query(
            "reading a request",
            "SELECT record FROM elevate_requests WHERE id = $1",
            &[&id(id_.raw())],
        )?;
        rows.first()
            .map(|row| decode("elevate_requests", row.get(0)))
            .transpose()
    }

    fn requests(&self, rows: Vec<Row>) -> Result<Vec<AccessRequest>, StoreError> {
        rows.iter()
            .map(|row| decode("elevate_requests", row.get(0)))
            .collect()
    }
}

/// Who an audit entry is about or by: the rows of `elevate_audit_principals`.
pub(super) fn principals_of(event: &Event) -> Vec<&Principal> {
    let mut out: Vec<&Principal> = event.principal.iter().collect();
    if let Actor::Principal(actor) = &event.actor
        && event.principal.as_ref() != Some(actor)
    {
        out.push(actor);
    }
    out
}

impl Transaction for Tables<'_> {
    fn put_request(&mut self, request: &AccessRequest) -> Result<(), StoreError> {
        let raw = request.id.raw();
        let kind = request.kind();
        self.execute(
            "storing a request",
            "INSERT INTO elevate_requests (id, state, requester, resource, deadline, open, review, \
             extension_pending, break_glass_at, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, deadline = EXCLUDED.deadline, \
             open = EXCLUDED.open, review = EXCLUDED.review, \
             extension_pending = EXCLUDED.extension_pending, record = EXCLUDED.record",
            &[
                &id(raw),
                &i16::from(state_code(kind)),
                &request.requester.as_str(),
                &request.resource.as_str(),
                &request.next_deadline().map(|at| id(at.unix_millis())),
                &kind.is_open(),
                &request
                    .review()
                    .map(|review| i16::from(review_code(review.state))),
                &request.extension_pending(),
                &request
                    .is_break_glass()
                    .then(|| id(request.created_at.unix_millis())),
                &encode(request),
            ],
        )?;
        self.counters.next_id = self.counters.next_id.max(raw + 1);
        Ok(())
    }

    fn append_events(&mut self, drafts: Vec<Draft>) -> Result<(), StoreError> {
        let mut last_at = None;
        for draft in drafts {
            let seq = self.counters.next_seq;
            let (event, canonical, hash) = Event::sealed(draft, seq, &self.counters.head);
            let entry = entry_bytes(
                canonical,
                self.counters.head.to_vec(),
                hash.to_vec(),
                event.actor == crate::audit::Actor::Scim,
            );
            self.put_event(&event, entry);
            last_at = Some(event.at);
            self.counters.head = hash;
            self.counters.next_seq = seq + 1;
        }
        if let (Some(at), Some(signing)) = (last_at, self.signing) {
            self.checkpoint(at, signing.every)?;
        }
        Ok(())
    }

    /// Signs the chain's head as of now when at least `after` events are not yet covered by a
    /// checkpoint (and a signing key is configured).
    fn checkpoint(&mut self, at: Timestamp, after: u64) -> Result<(), StoreError> {
        let Some(signing) = self.signing else {
            return Ok(());
        };
        let last = self.counters.next_seq.saturating_sub(1);
        if last == 0 || last < self.counters.covered.saturating_add(after.max(1)) {
            return Ok(());
        }
        let checkpoint: Checkpoint = signing.key.checkpoint(last, &self.counters.head, at);
        self.put_checkpoint(&checkpoint)?;
        self.counters.covered = last;
        if let Some(witness) = &signing.witness {
            self.queue(&Outgoing {
                notifier: witness.notifier.clone(),
                event: (witness.event)(&checkpoint),
                queued_at: at,
                attempts: 0,
                next_attempt_at: at,
                last_error: None,
            })?;
        }
        Ok(())
    }

    /// Adds `outgoing` to the outbox under the next sequence number.
    fn queue(&mut self, outgoing: &Outgoing) -> Result<(), StoreError> {
        let seq = self.counters.next_outbox;
        self.put_outgoing(seq, outgoing)?;
        self.counters.next_outbox = seq + 1;
        self.queued += 1;
        Ok(())
    }

    fn reschedule(&mut self, seq: u64, outgoing: &Outgoing) -> Result<(), StoreError> {
        self.execute(
            "rescheduling a notification",
            "UPDATE elevate_outbox SET due = $2, notifier = $3, record = $4 WHERE seq = $1",
            &[
                &id(seq),
                &id(outgoing.next_attempt_at.unix_millis()),
                &outgoing.notifier,
                &encode(outgoing),
            ],
        )?;
        Ok(())
    }

    fn remove_outgoing(&mut self, seq: u64) -> Result<(), StoreError> {
        self.execute(
            "removing a delivered notification",
            "DELETE FROM elevate_outbox WHERE seq = $1",
            &[&id(seq)],
        )?;
        Ok(())
    }

    fn offboard(&mut self, offboarding: &Offboarding) -> Result<(), StoreError> {
        self.execute(
            "recording an offboarding",
            "INSERT INTO elevate_offboarded (principal, record) VALUES ($1, $2) \
             ON CONFLICT (principal) DO UPDATE SET record = EXCLUDED.record",
            &[&offboarding.principal.as_str(), &encode(offboarding)],
        )?;
        Ok(())
    }

    fn reinstate(&mut self, principal: &Principal) -> Result<(), StoreError> {
        self.execute(
            "removing an offboarding",
            "DELETE FROM elevate_offboarded WHERE principal = $1",
            &[&principal.as_str()],
        )?;
        Ok(())
    }

    fn claim(&mut self, claim: &Claim) -> Result<(), StoreError> {
        // Queued like the audit entries; later jobs of the batch find it there.
        self.claims.push(claim.clone());
        Ok(())
    }

    fn put_directory(&mut self, write: &crate::store::DirectoryWrite) -> Result<(), StoreError> {
        match write {
            crate::store::DirectoryWrite::Put(record) => self.execute(
                "storing a directory resource",
                "INSERT INTO elevate_directory (kind, id, resource) VALUES ($1, $2, $3) \
                 ON CONFLICT (kind, id) DO UPDATE SET resource = EXCLUDED.resource",
                &[&record.kind.as_str(), &record.id, &record.resource],
            )?,
            crate::store::DirectoryWrite::Remove(kind, id) => self.execute(
                "removing a directory resource",
                "DELETE FROM elevate_directory WHERE kind = $1 AND id = $2",
                &[&kind.as_str(), id],
            )?,
        };
        Ok(())
    }
}

/// What a write job may read: the transaction, with the earlier jobs of its batch applied.
impl View for Tables<'_> {
    fn request(&self, id: RequestId) -> Result<Option<AccessRequest>, StoreError> {
        self.request(id)
    }

    fn open_requests(
        &self,
        principal: &Principal,
        resource: &ResourceName,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let rows = self.query(
            "reading open requests",
            "SELECT record FROM elevate_requests WHERE open AND requester = $1 AND resource = $2 \
             ORDER BY id",
            &[&principal.as_str(), &resource.as_str()],
        )?;
        self.requests(rows)
    }

    fn break_glass_of(&self, principal: &Principal) -> Result<Vec<AccessRequest>, StoreError> {
        let rows = self.query(
            "reading break-glass requests",
            "SELECT record FROM elevate_requests \
             WHERE requester = $1 AND break_glass_at IS NOT NULL \
             ORDER BY break_glass_at DESC, id DESC",
            &[&principal.as_str()],
        )?;
        self.requests(rows)
    }

    fn outgoing(&self, seq: u64) -> Result<Option<Outgoing>, StoreError> {
        let rows = self.query(
            "reading a notification",
            "SELECT record FROM elevate_outbox WHERE seq = $1",
            &[&id(seq)],
        )?;
        rows.first()
            .map(|row| decode("elevate_outbox", row.get(0)))
            .transpose()
    }

    fn next_request_id(&self) -> Result<RequestId, StoreError> {
        Ok(RequestId::from_raw(self.counters.next_id))
    }

    fn claimed(&self, key: &str) -> Result<Option<Claim>, StoreError> {
        if let Some(queued) = self.claims.iter().find(|claim| claim.key == key) {
            return Ok(Some(queued.clone()));
        }
        let rows = self.query(
            "reading an idempotency key",
            "SELECT outcome FROM elevate_idempotency WHERE key = $1",
            &[&key],
        )?;
        rows.first()
            .map(|row| decode("elevate_idempotency", row.get(0)))
            .transpose()
    }
}

/// What [`import`] copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Requests.
    pub requests: u64,
    /// Audit entries.
    pub entries: u64,
    /// Signed checkpoints.
    pub checkpoints: u64,
    /// Notifications waiting in the outbox.
    pub queued: u64,
    /// Offboarded principals.
    pub offboarded: u64,
    /// Claimed idempotency keys.
    pub claims: u64,
    /// Users and groups of the directory of record.
    pub directory: u64,
}

/// Entries read from the source per step.
const IMPORT_PAGE: usize = 4096;

/// Copies everything `source` holds into the empty store at `target`, in one transaction:
/// requests, the audit entries as their stored bytes (so the chain and its head stay exactly
/// the same), checkpoints, the outbox, offboardings, idempotency keys, the directory of record and counters. Runs on a blocking
/// thread.
pub(super) fn import(
    target: &Target,
    runtime: &Handle,
    source: &dyn crate::store::Reads,
) -> Result<Imported, StoreError> {
    let mut client = runtime.block_on(target.connect_plain())?;
    let txn = runtime
        .block_on(client.transaction())
        .map_err(|e| failed("beginning the import", &e))?;
    let prepared = Prepared::default();
    let mut tables = Tables {
        runtime,
        txn: &txn,
        prepared: &prepared,
        signing: None,
        counters: Counters::default(),
        queued: 0,
        epoch: 0,
        node: "",
        events: EventRows::default(),
        claims: Vec::new(),
    };
    let held = tables.query(
        "checking the store is empty",
        "SELECT (SELECT count(*) FROM elevate_requests) + (SELECT count(*) FROM elevate_audit)",
        &[],
    )?;
    if held.first().is_some_and(|row| row.get::<_, i64>(0) > 0) {
        return Err(StoreError::Failed(format!(
            "{} is not empty: a store is migrated into an empty one only",
            target.shown()
        )));
    }
    tables.counters = tables.load_counters()?;
    let mut imported = Imported::default();
    let mut after = None;
    loop {
        let page = source.requests_after(after, IMPORT_PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for request in &page {
            tables.put_request(request)?;
            imported.requests += 1;
        }
    }
    let mut from = 1;
    loop {
        let page = source.event_records(from, IMPORT_PAGE)?;
        let Some(&(last, _)) = page.last() else { break };
        for (seq, record) in &page {
            let event: Event = decode("audit", record)?;
            if event.seq != *seq {
                return Err(StoreError::Corrupt {
                    table: "audit",
                    message: format!("the entry stored as {seq} says it is entry {}", event.seq),
                });
            }
            // An entry of an earlier release arrives in this release's encoding, its hashes
            // as stored.
            let record = upgrade_entry("audit", *seq, record).unwrap_or_else(|| record.clone());
            tables.put_event(&event, record);
            imported.entries += 1;
        }
        tables.flush_events()?;
        from = last + 1;
    }
    let mut from = 1;
    loop {
        let page = source.checkpoints(from, IMPORT_PAGE)?;
        let Some(last) = page.last().map(|c| c.seq) else {
            break;
        };
        for checkpoint in &page {
            tables.put_checkpoint(checkpoint)?;
            imported.checkpoints += 1;
        }
        from = last + 1;
    }
    let outbox = source.outbox_due(
        Timestamp::from_unix_millis(u64::MAX),
        usize::MAX,
        &Default::default(),
        usize::MAX,
    )?;
    for (seq, outgoing) in &outbox.due {
        tables.put_outgoing(*seq, outgoing)?;
        tables.counters.next_outbox = tables.counters.next_outbox.max(seq + 1);
        imported.queued += 1;
    }
    for offboarding in source.offboarded()? {
        tables.offboard(&offboarding)?;
        imported.offboarded += 1;
    }
    for claim in source.claims()? {
        tables.claim(&claim)?;
        imported.claims += 1;
    }
    for record in source.directory()? {
        tables.put_directory(&crate::store::DirectoryWrite::Put(record))?;
        imported.directory += 1;
    }
    tables.counters.next_seq = source.audit_count()? + 1;
    tables.counters.head = source.audit_head()?;
    tables.store_counters()?;
    runtime
        .block_on(txn.commit())
        .map_err(|e| failed("committing the import", &e))?;
    Ok(imported)
}
