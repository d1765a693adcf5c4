//! Table layout and the write side of a transaction: applying a job's changes together with
//! their secondary indexes and audit events.
//!
//! | table | key → value | kept for |
//! |---|---|---|
//! | `requests` | id → JSON record | the records, never deleted |
//! | `requests_by_state` | (state code, id) | pending lists, state queries |
//! | `requests_by_principal` | (principal, id) | "my requests", history by principal |
//! | `requests_by_resource` | (resource, id) | history by resource |
//! | `deadlines` | (unix ms, id) | rebuilding the timer wheel at startup, soonest first |
//! | `open_requests` | (principal, resource, id) | open requests of a principal: duplicates, overlapping leases |
//! | `audit` | seq → JSON event | the hash-chained audit log, append-only |
//! | `audit_by_request` | (id, seq) | one request's history |
//! | `audit_by_time` | (unix ms, seq) | audit queries by time, newest first |
//! | `audit_by_principal` | (principal, unix ms, seq) | events about or by a principal |
//! | `audit_by_resource` | (resource, unix ms, seq) | events about a resource |
//! | `audit_by_action` | (action, unix ms, seq) | events of one kind |
//! | `checkpoints` | seq → JSON checkpoint | signed heads of the audit chain |
//! | `break_glass_by_principal` | (principal, created ms, id) | rate limits and consequences |
//! | `reviews_by_state` | (review state code, id) | open and overdue reviews |
//! | `extensions_pending` | id | active leases whose extension waits for approvals |
//! | `outbox` | seq → JSON notification | notifications not yet delivered |
//! | `outbox_due` | (next attempt ms, seq) | the next notifications to deliver |
//! | `offboarded` | principal → JSON offboarding | principals an administrator offboarded |
//! | `idempotency` | key → JSON claim | idempotency keys and what their first call changed |
//! | `directory` | (kind, id) → JSON resource | the directory of record pushed over SCIM |
//! | `meta` | name → bytes | schema version, id and sequence counters, chain head, audit key |
//!
//! Longer than most files: the layout, and applying one job's changes to every table and index
//! it touches, are one concept; splitting them would split each index from its upkeep.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use redb::{Database, ReadableTable, Table, TableDefinition};

use super::{Outgoing, Signing, StoreError};
use crate::audit::key::{Checkpoint, PublicKey};
use crate::audit::{Actor, Event, GENESIS};
use crate::model::{
    AccessRequest, Offboarding, Principal, RequestId, ResourceName, ReviewState, StateKind,
};
use crate::store::DirectoryWrite;
use crate::store::Upgraded;
use crate::store::batch::Transaction;
use crate::store::idempotency::Claim;
use crate::store::records::{Upgrade, decode, encode, entry_bytes, upgrade_entry, upgrade_request};
use crate::store::seam::View;

pub(super) const AUDIT_BY_TIME: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("audit_by_time");
pub(super) const AUDIT_BY_PRINCIPAL: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("audit_by_principal");
pub(super) const AUDIT_BY_RESOURCE: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("audit_by_resource");
pub(super) const AUDIT_BY_ACTION: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("audit_by_action");
pub(super) const CHECKPOINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("checkpoints");
pub(super) const REQUESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("requests");
pub(super) const BY_STATE: TableDefinition<(u8, u64), ()> =
    TableDefinition::new("requests_by_state");
pub(super) const BY_PRINCIPAL: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("requests_by_principal");
pub(super) const BY_RESOURCE: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("requests_by_resource");
pub(super) const DEADLINES: TableDefinition<(u64, u64), ()> = TableDefinition::new("deadlines");
pub(super) const OPEN: TableDefinition<(&str, &str, u64), ()> =
    TableDefinition::new("open_requests");
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
pub(super) const AUDIT_BY_REQUEST: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("audit_by_request");
pub(super) const BREAK_GLASS_BY_PRINCIPAL: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("break_glass_by_principal");
pub(super) const REVIEWS_BY_STATE: TableDefinition<(u8, u64), ()> =
    TableDefinition::new("reviews_by_state");
pub(super) const EXTENSIONS_PENDING: TableDefinition<u64, ()> =
    TableDefinition::new("extensions_pending");
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
pub(super) const OUTBOX_DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("outbox_due");
pub(super) const OFFBOARDED: TableDefinition<&str, &[u8]> = TableDefinition::new("offboarded");
pub(super) const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
pub(super) const DIRECTORY: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("directory");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The layout version this build reads and writes: 4 since requests and audit entries are
/// stored in the binary encoding ([`crate::store::records`]).
const SCHEMA: u64 = 4;

/// The oldest layout this build upgrades in place: 3, whose records are the JSON the binary
/// encoding replaced (every table is the same).
const UPGRADES_FROM: u64 = 3;

const META_SCHEMA: &str = "schema";
const META_NEXT_ID: &str = "next_request_id";
pub(super) const META_NEXT_SEQ: &str = "audit_next_seq";
pub(super) const META_AUDIT_HEAD: &str = "audit_head";
const META_NEXT_OUTBOX: &str = "outbox_next_seq";
pub(super) const META_AUDIT_KEY: &str = "audit_key";

/// The stable one-byte code of a request state in the `requests_by_state` index.
pub(in crate::store) fn state_code(kind: StateKind) -> u8 {
    match kind {
        StateKind::Pending => 1,
        StateKind::Approved => 2,
        StateKind::Active => 3,
        StateKind::Denied => 4,
        StateKind::Cancelled => 5,
        StateKind::TimedOut => 6,
        StateKind::Expired => 7,
        StateKind::Released => 8,
        StateKind::Revoked => 9,
        StateKind::RevokeFailing => 10,
        StateKind::Failed => 11,
    }
}

/// The by-state index code of a review state.
pub(in crate::store) fn review_code(state: ReviewState) -> u8 {
    match state {
        ReviewState::Pending => 1,
        ReviewState::Overdue => 2,
        ReviewState::Justified => 3,
        ReviewState::Unjustified => 4,
    }
}

pub(super) fn u64_of(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_le_bytes)
}

/// Creates every table, checks the schema version (upgrading a store of the previous layout
/// in place, in the same transaction), and records the audit key on first use (refusing a
/// different one later: checkpoints signed by two keys would not verify). Says what an upgrade
/// rewrote.
pub(super) fn initialize(
    db: &Database,
    path: &Path,
    key: Option<PublicKey>,
) -> Result<Option<Upgraded>, StoreError> {
    let txn = db.begin_write()?;
    let mut upgraded = None;
    {
        let mut meta = txn.open_table(META)?;
        let found = meta.get(META_SCHEMA)?.and_then(|v| u64_of(v.value()));
        match found {
            None => {
                meta.insert(META_SCHEMA, SCHEMA.to_le_bytes().as_slice())?;
            }
            Some(SCHEMA) => {}
            Some(UPGRADES_FROM) => {
                let started = std::time::Instant::now();
                let requests =
                    rewrite(&mut txn.open_table(REQUESTS)?, "requests", upgrade_request)?;
                let entries = rewrite(&mut txn.open_table(AUDIT)?, "audit", upgrade_entry)?;
                meta.insert(META_SCHEMA, SCHEMA.to_le_bytes().as_slice())?;
                upgraded = Some(Upgraded::since(
                    started,
                    (UPGRADES_FROM, SCHEMA),
                    requests,
                    entries,
                ));
            }
            Some(found) => {
                return Err(StoreError::Schema {
                    file: path.to_path_buf(),
                    found,
                    expected: SCHEMA,
                });
            }
        }
        if let Some(key) = key {
            let recorded = meta
                .get(META_AUDIT_KEY)?
                .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
                .map(PublicKey::from_bytes);
            match recorded {
                None => {
                    meta.insert(META_AUDIT_KEY, key.bytes().as_slice())?;
                }
                Some(recorded) if recorded == key => {}
                Some(recorded) => {
                    return Err(StoreError::AuditKey {
                        file: path.to_path_buf(),
                        recorded,
                        given: key,
                    });
                }
            }
        }
        txn.open_table(REQUESTS)?;
        txn.open_table(BY_STATE)?;
        txn.open_table(BY_PRINCIPAL)?;
        txn.open_table(BY_RESOURCE)?;
        txn.open_table(DEADLINES)?;
        txn.open_table(OPEN)?;
        txn.open_table(AUDIT)?;
        txn.open_table(AUDIT_BY_REQUEST)?;
        txn.open_table(AUDIT_BY_TIME)?;
        txn.open_table(AUDIT_BY_PRINCIPAL)?;
        txn.open_table(AUDIT_BY_RESOURCE)?;
        txn.open_table(AUDIT_BY_ACTION)?;
        txn.open_table(CHECKPOINTS)?;
        txn.open_table(BREAK_GLASS_BY_PRINCIPAL)?;
        txn.open_table(REVIEWS_BY_STATE)?;
        txn.open_table(OUTBOX)?;
        txn.open_table(OUTBOX_DUE)?;
        txn.open_table(EXTENSIONS_PENDING)?;
        txn.open_table(OFFBOARDED)?;
        txn.open_table(IDEMPOTENCY)?;
        txn.open_table(DIRECTORY)?;
    }
    txn.commit()?;
    Ok(upgraded)
}

/// Rewrites every record of `table` that `upgrade` changes, a page at a time; returns how many.
fn rewrite(
    table: &mut Table<'_, u64, &'static [u8]>,
    name: &'static str,
    upgrade: Upgrade,
) -> Result<u64, StoreError> {
    const PAGE: usize = 10_000;
    let mut from = 0u64;
    let mut rewritten = 0;
    loop {
        let mut page = Vec::with_capacity(PAGE);
        let mut last = None;
        for entry in table.range(from..)?.take(PAGE) {
            let (key, value) = entry?;
            last = Some(key.value());
            if let Some(bytes) = upgrade(name, key.value(), value.value()) {
                page.push((key.value(), bytes));
            }
        }
        for (key, bytes) in &page {
            table.insert(*key, bytes.as_slice())?;
        }
        rewritten += page.len() as u64;
        match last {
            Some(last) if last < u64::MAX => from = last + 1,
            _ => return Ok(rewritten),
        }
    }
}

/// Every table, open in one write transaction.
pub(super) struct Tables<'txn> {
    requests: Table<'txn, u64, &'static [u8]>,
    by_state: Table<'txn, (u8, u64), ()>,
    by_principal: Table<'txn, (&'static str, u64), ()>,
    by_resource: Table<'txn, (&'static str, u64), ()>,
    deadlines: Table<'txn, (u64, u64), ()>,
    open: Table<'txn, (&'static str, &'static str, u64), ()>,
    audit: Table<'txn, u64, &'static [u8]>,
    audit_by_request: Table<'txn, (u64, u64), ()>,
    audit_by_time: Table<'txn, (u64, u64), ()>,
    audit_by_principal: Table<'txn, (&'static str, u64, u64), ()>,
    audit_by_resource: Table<'txn, (&'static str, u64, u64), ()>,
    audit_by_action: Table<'txn, (&'static str, u64, u64), ()>,
    checkpoints: Table<'txn, u64, &'static [u8]>,
    break_glass: Table<'txn, (&'static str, u64, u64), ()>,
    reviews: Table<'txn, (u8, u64), ()>,
    outbox: Table<'txn, u64, &'static [u8]>,
    extensions: Table<'txn, u64, ()>,
    outbox_due: Table<'txn, (u64, u64), ()>,
    offboarded: Table<'txn, &'static str, &'static [u8]>,
    idempotency: Table<'txn, &'static str, &'static [u8]>,
    directory: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    meta: Table<'txn, &'static str, &'static [u8]>,
    signing: Option<&'txn Signing>,
    /// Outbox entries queued in this transaction (the writer wakes the dispatcher for them).
    pub(super) queued: usize,
    /// The index keys of each request read or written in this transaction, so that storing a
    /// request a job has just read does not decode its record a second time.
    indexed: RefCell<HashMap<u64, Indexed>>,
}

/// Where a stored version of a request sits in the indexes: what storing the next version
/// must remove.
struct Indexed {
    kind: StateKind,
    deadline: Option<u64>,
    requester: Principal,
    resource: ResourceName,
    review: Option<ReviewState>,
    extension_pending: bool,
}

impl Indexed {
    fn of(request: &AccessRequest) -> Self {
        Self {
            kind: request.kind(),
            deadline: request.next_deadline().map(|at| at.unix_millis()),
            requester: request.requester.clone(),
            resource: request.resource.clone(),
            review: request.review().map(|review| review.state),
            extension_pending: request.extension_pending(),
        }
    }
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(
        txn: &'txn redb::WriteTransaction,
        signing: Option<&'txn Signing>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            queued: 0,
            indexed: RefCell::default(),
            signing,
            requests: txn.open_table(REQUESTS)?,
            by_state: txn.open_table(BY_STATE)?,
            by_principal: txn.open_table(BY_PRINCIPAL)?,
            by_resource: txn.open_table(BY_RESOURCE)?,
            deadlines: txn.open_table(DEADLINES)?,
            open: txn.open_table(OPEN)?,
            audit: txn.open_table(AUDIT)?,
            audit_by_request: txn.open_table(AUDIT_BY_REQUEST)?,
            audit_by_time: txn.open_table(AUDIT_BY_TIME)?,
            audit_by_principal: txn.open_table(AUDIT_BY_PRINCIPAL)?,
            audit_by_resource: txn.open_table(AUDIT_BY_RESOURCE)?,
            audit_by_action: txn.open_table(AUDIT_BY_ACTION)?,
            checkpoints: txn.open_table(CHECKPOINTS)?,
            break_glass: txn.open_table(BREAK_GLASS_BY_PRINCIPAL)?,
            reviews: txn.open_table(REVIEWS_BY_STATE)?,
            outbox: txn.open_table(OUTBOX)?,
            extensions: txn.open_table(EXTENSIONS_PENDING)?,
            outbox_due: txn.open_table(OUTBOX_DUE)?,
            offboarded: txn.open_table(OFFBOARDED)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            directory: txn.open_table(DIRECTORY)?,
            meta: txn.open_table(META)?,
        })
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.meta.get(key)?.and_then(|v| u64_of(v.value())))
    }

    fn request(&self, id: RequestId) -> Result<Option<AccessRequest>, StoreError> {
        let Some(bytes) = self.requests.get(id.raw())? else {
            return Ok(None);
        };
        let request: AccessRequest = decode("requests", bytes.value())?;
        self.indexed
            .borrow_mut()
            .insert(id.raw(), Indexed::of(&request));
        Ok(Some(request))
    }

    /// Where the stored version of `id` sits in the indexes, if it is stored.
    fn indexed(&self, id: RequestId) -> Result<Option<Indexed>, StoreError> {
        if let Some(known) = self.indexed.borrow_mut().remove(&id.raw()) {
            return Ok(Some(known));
        }
        Ok(self.request(id)?.map(|request| Indexed::of(&request)))
    }

    /// Adds `outgoing` to the outbox under the next sequence number.
    fn queue(&mut self, outgoing: &Outgoing) -> Result<(), StoreError> {
        let seq = self.meta_u64(META_NEXT_OUTBOX)?.unwrap_or(1);
        self.meta
            .insert(META_NEXT_OUTBOX, (seq + 1).to_le_bytes().as_slice())?;
        self.put_outgoing(seq, outgoing)?;
        self.queued += 1;
        Ok(())
    }

    fn put_outgoing(&mut self, seq: u64, outgoing: &Outgoing) -> Result<(), StoreError> {
        self.outbox.insert(seq, encode(outgoing).as_slice())?;
        self.outbox_due
            .insert((outgoing.next_attempt_at.unix_millis(), seq), ())?;
        Ok(())
    }

    /// Removes an outbox entry and its due-index row; false when it was gone already.
    fn remove_outgoing(&mut self, seq: u64) -> Result<bool, StoreError> {
        let Some(bytes) = self.outbox.remove(seq)? else {
            return Ok(false);
        };
        let outgoing: Outgoing = decode("outbox", bytes.value())?;
        drop(bytes);
        self.outbox_due
            .remove((outgoing.next_attempt_at.unix_millis(), seq))?;
        Ok(true)
    }

    fn put_request(&mut self, request: &AccessRequest) -> Result<(), StoreError> {
        let id = request.id.raw();
        match self.indexed(request.id)? {
            Some(previous) => {
                let kind = previous.kind;
                self.by_state.remove((state_code(kind), id))?;
                if let Some(deadline) = previous.deadline {
                    self.deadlines.remove((deadline, id))?;
                }
                if kind.is_open() && !request.kind().is_open() {
                    self.open.remove((
                        previous.requester.as_str(),
                        previous.resource.as_str(),
                        id,
                    ))?;
                }
                if let Some(review) = previous.review {
                    self.reviews.remove((review_code(review), id))?;
                }
                if previous.extension_pending {
                    self.extensions.remove(id)?;
                }
            }
            None => {
                self.by_principal
                    .insert((request.requester.as_str(), id), ())?;
                self.by_resource
                    .insert((request.resource.as_str(), id), ())?;
                if request.is_break_glass() {
                    self.break_glass.insert(
                        (
                            request.requester.as_str(),
                            request.created_at.unix_millis(),
                            id,
                        ),
                        (),
                    )?;
                }
                let next = self
                    .meta_u64(META_NEXT_ID)?
                    .unwrap_or(RequestId::FIRST.raw());
                if id >= next {
                    self.meta
                        .insert(META_NEXT_ID, (id + 1).to_le_bytes().as_slice())?;
                }
            }
        }
        let kind = request.kind();
        self.by_state.insert((state_code(kind), id), ())?;
        if let Some(deadline) = request.next_deadline() {
            self.deadlines.insert((deadline.unix_millis(), id), ())?;
        }
        if kind.is_open() {
            self.open.insert(
                (request.requester.as_str(), request.resource.as_str(), id),
                (),
            )?;
        }
        if let Some(review) = request.review() {
            self.reviews.insert((review_code(review.state), id), ())?;
        }
        if request.extension_pending() {
            self.extensions.insert(id, ())?;
        }
        self.requests.insert(id, encode(request).as_slice())?;
        self.indexed.borrow_mut().insert(id, Indexed::of(request));
        Ok(())
    }

    fn audit_head(&self) -> Result<[u8; 32], StoreError> {
        match self.meta.get(META_AUDIT_HEAD)? {
            Some(bytes) => <[u8; 32]>::try_from(bytes.value()).map_err(|_| StoreError::Corrupt {
                table: "meta",
                message: "audit head is not 32 bytes".to_owned(),
            }),
            None => Ok(GENESIS),
        }
    }

    fn append_events(&mut self, drafts: Vec<crate::audit::Draft>) -> Result<(), StoreError> {
        let mut seq = self.meta_u64(META_NEXT_SEQ)?.unwrap_or(1);
        let mut head = self.audit_head()?;
        let mut last_at = None;
        for draft in drafts {
            let (event, canonical, hash) = Event::sealed(draft, seq, &head);
            let entry = entry_bytes(
                canonical,
                head.to_vec(),
                hash.to_vec(),
                event.actor == Actor::Scim,
            );
            self.audit.insert(seq, entry.as_slice())?;
            self.index_event(&event)?;
            last_at = Some(event.at);
            head = hash;
            seq += 1;
        }
        self.meta
            .insert(META_NEXT_SEQ, seq.to_le_bytes().as_slice())?;
        self.meta.insert(META_AUDIT_HEAD, head.as_slice())?;
        if let (Some(at), Some(signing)) = (last_at, self.signing) {
            self.checkpoint(at, signing.every)?;
        }
        Ok(())
    }

    fn index_event(&mut self, event: &Event) -> Result<(), StoreError> {
        let (at, seq) = (event.at.unix_millis(), event.seq);
        if let Some(request) = event.request {
            self.audit_by_request.insert((request.raw(), seq), ())?;
        }
        self.audit_by_time.insert((at, seq), ())?;
        self.audit_by_action
            .insert((event.action.as_str(), at, seq), ())?;
        if let Some(resource) = &event.resource {
            self.audit_by_resource
                .insert((resource.as_str(), at, seq), ())?;
        }
        if let Some(principal) = &event.principal {
            self.audit_by_principal
                .insert((principal.as_str(), at, seq), ())?;
        }
        if let Actor::Principal(actor) = &event.actor {
            if event.principal.as_ref() != Some(actor) {
                self.audit_by_principal
                    .insert((actor.as_str(), at, seq), ())?;
            }
        }
        Ok(())
    }

    /// Signs the chain's head as of now when at least `after` events are not yet covered by a
    /// checkpoint (and a signing key is configured).
    fn checkpoint(&mut self, at: crate::model::Timestamp, after: u64) -> Result<(), StoreError> {
        let Some(signing) = self.signing else {
            return Ok(());
        };
        let last = self.meta_u64(META_NEXT_SEQ)?.unwrap_or(1).saturating_sub(1);
        let covered = match self.checkpoints.last()? {
            Some((seq, _)) => seq.value(),
            None => 0,
        };
        if last == 0 || last < covered.saturating_add(after.max(1)) {
            return Ok(());
        }
        let checkpoint: Checkpoint = signing.key.checkpoint(last, &self.audit_head()?, at);
        self.checkpoints
            .insert(last, encode(&checkpoint).as_slice())?;
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
}

impl Transaction for Tables<'_> {
    fn put_request(&mut self, request: &AccessRequest) -> Result<(), StoreError> {
        Tables::put_request(self, request)
    }

    fn append_events(&mut self, drafts: Vec<crate::audit::Draft>) -> Result<(), StoreError> {
        Tables::append_events(self, drafts)
    }

    fn checkpoint(&mut self, at: crate::model::Timestamp, after: u64) -> Result<(), StoreError> {
        Tables::checkpoint(self, at, after)
    }

    fn queue(&mut self, outgoing: &Outgoing) -> Result<(), StoreError> {
        Tables::queue(self, outgoing)
    }

    fn reschedule(&mut self, seq: u64, outgoing: &Outgoing) -> Result<(), StoreError> {
        if Tables::remove_outgoing(self, seq)? {
            self.put_outgoing(seq, outgoing)?;
        }
        Ok(())
    }

    fn remove_outgoing(&mut self, seq: u64) -> Result<(), StoreError> {
        Tables::remove_outgoing(self, seq).map(drop)
    }

    fn offboard(&mut self, offboarding: &Offboarding) -> Result<(), StoreError> {
        self.offboarded.insert(
            offboarding.principal.as_str(),
            encode(offboarding).as_slice(),
        )?;
        Ok(())
    }

    fn reinstate(&mut self, principal: &Principal) -> Result<(), StoreError> {
        self.offboarded.remove(principal.as_str())?;
        Ok(())
    }

    fn claim(&mut self, claim: &Claim) -> Result<(), StoreError> {
        self.idempotency
            .insert(claim.key.as_str(), encode(claim).as_slice())?;
        Ok(())
    }

    fn put_directory(&mut self, write: &DirectoryWrite) -> Result<(), StoreError> {
        match write {
            DirectoryWrite::Put(record) => {
                self.directory.insert(
                    (record.kind.as_str(), record.id.as_str()),
                    record.resource.as_slice(),
                )?;
            }
            DirectoryWrite::Remove(kind, id) => {
                self.directory.remove((kind.as_str(), id.as_str()))?;
            }
        }
        Ok(())
    }
}

/// What a write job may read: the state as of the jobs committed before it, including the
/// earlier jobs of its own batch.
impl View for Tables<'_> {
    /// The request with `id`.
    fn request(&self, id: RequestId) -> Result<Option<AccessRequest>, StoreError> {
        self.request(id)
    }

    /// The open (pending, approved, active or revoke-failing) requests of `principal` for
    /// `resource`, oldest first.
    fn open_requests(
        &self,
        principal: &Principal,
        resource: &ResourceName,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let mut out = Vec::new();
        let key = (principal.as_str(), resource.as_str());
        for entry in self
            .open
            .range((key.0, key.1, 0)..=(key.0, key.1, u64::MAX))?
        {
            let (key, _) = entry?;
            if let Some(request) = self.request(RequestId::from_raw(key.value().2))? {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// Every break-glass request of `principal`, newest first.
    fn break_glass_of(&self, principal: &Principal) -> Result<Vec<AccessRequest>, StoreError> {
        let mut out = Vec::new();
        let range = (principal.as_str(), 0, 0)..=(principal.as_str(), u64::MAX, u64::MAX);
        for entry in self.break_glass.range(range)?.rev() {
            let (key, _) = entry?;
            let (_, _, id) = key.value();
            if let Some(request) = self.request(RequestId::from_raw(id))? {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// The outbox entry `seq`, if still queued.
    fn outgoing(&self, seq: u64) -> Result<Option<Outgoing>, StoreError> {
        match self.outbox.get(seq)? {
            Some(bytes) => decode("outbox", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The id the next new request gets.
    fn next_request_id(&self) -> Result<RequestId, StoreError> {
        Ok(RequestId::from_raw(
            self.meta_u64(META_NEXT_ID)?
                .unwrap_or(RequestId::FIRST.raw()),
        ))
    }

    fn claimed(&self, key: &str) -> Result<Option<Claim>, StoreError> {
        match self.idempotency.get(key)? {
            Some(bytes) => decode("idempotency", bytes.value()).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_codes_are_stable_and_distinct() {
        // Stored in every existing file: never renumber.
        let states = [
            (StateKind::Pending, 1),
            (StateKind::Approved, 2),
            (StateKind::Active, 3),
            (StateKind::Denied, 4),
            (StateKind::Cancelled, 5),
            (StateKind::TimedOut, 6),
            (StateKind::Expired, 7),
            (StateKind::Released, 8),
            (StateKind::Revoked, 9),
            (StateKind::RevokeFailing, 10),
            (StateKind::Failed, 11),
        ];
        for (kind, code) in states {
            assert_eq!(state_code(kind), code, "{kind}");
        }
        let reviews = [
            ReviewState::Pending,
            ReviewState::Overdue,
            ReviewState::Justified,
            ReviewState::Unjustified,
        ];
        let codes: std::collections::BTreeSet<u8> = reviews.into_iter().map(review_code).collect();
        assert_eq!(codes.len(), reviews.len());
    }
}
