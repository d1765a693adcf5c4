//! Queries in read transactions. They see a consistent snapshot and never wait for the writer.

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::Outgoing;
use super::StoreError;
use super::codec::decode;
use super::tables::{
    AUDIT, AUDIT_BY_ACTION, AUDIT_BY_PRINCIPAL, AUDIT_BY_REQUEST, AUDIT_BY_RESOURCE, AUDIT_BY_TIME,
    BY_PRINCIPAL, BY_STATE, CHECKPOINTS, DEADLINES, EXTENSIONS_PENDING, META, META_AUDIT_KEY,
    OFFBOARDED, OPEN, OUTBOX, OUTBOX_DUE, REQUESTS, REVIEWS_BY_STATE, review_code, state_code,
};
use crate::audit::Event;
use crate::audit::key::{Checkpoint, PublicKey};
use crate::audit::query::{ActionFilter, Filter};
use crate::model::{
    AccessRequest, Offboarding, Page, Principal, RequestId, ResourceName, ReviewState, StateKind,
    Timestamp,
};

/// What [`Reader::outbox_due`] found.
#[derive(Debug)]
pub struct OutboxDue {
    /// Entries due now, soonest first.
    pub due: Vec<(u64, Outgoing)>,
    /// When the next entry (of the notifiers asked about) falls due, if known.
    pub next: Option<Timestamp>,
    /// Whether the scan covered the whole outbox.
    pub complete: bool,
}

/// Where the next page of an audit query starts: before this (time, sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditCursor {
    /// Unix milliseconds.
    pub at: u64,
    /// Sequence number.
    pub seq: u64,
}

/// One page of an audit query.
#[derive(Debug)]
pub struct AuditPage {
    /// Matching events, newest first.
    pub events: Vec<Event>,
    /// Where the next page starts; `None` when the answer is complete.
    pub next: Option<AuditCursor>,
}

/// `(at, seq)` keys of audit index rows, newest first.
type Keys = Box<dyn Iterator<Item = Result<(u64, u64), StoreError>>>;

/// Index rows `(name, at, seq)` for `name` in `[since, upper)`, newest first.
fn named(
    index: ReadOnlyTable<(&'static str, u64, u64), ()>,
    name: &str,
    since: u64,
    upper: (u64, u64),
) -> Result<Keys, StoreError> {
    let rows = index
        .range((name, since, 0)..(name, upper.0, upper.1))?
        .rev()
        .map(|entry| {
            let (key, _) = entry?;
            let (_, at, seq) = key.value();
            Ok((at, seq))
        });
    Ok(Box::new(rows))
}

/// A read transaction over the store.
pub struct Reader {
    txn: redb::ReadTransaction,
}

impl Reader {
    pub(super) fn begin(db: &impl ReadableDatabase) -> Result<Self, StoreError> {
        Ok(Self {
            txn: db.begin_read()?,
        })
    }

    fn requests_table(&self) -> Result<ReadOnlyTable<u64, &'static [u8]>, StoreError> {
        Ok(self.txn.open_table(REQUESTS)?)
    }

    /// The request with `id`.
    pub fn request(&self, id: RequestId) -> Result<Option<AccessRequest>, StoreError> {
        match self.requests_table()?.get(id.raw())? {
            Some(bytes) => decode("requests", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Requests of `principal`, newest first, optionally only in one state.
    pub fn requests_of(
        &self,
        principal: &Principal,
        state: Option<StateKind>,
        page: Page,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let index = self.txn.open_table(BY_PRINCIPAL)?;
        let requests = self.requests_table()?;
        let before = page.before.map_or(u64::MAX, RequestId::raw);
        let mut out = Vec::new();
        for entry in index
            .range((principal.as_str(), 0)..(principal.as_str(), before))?
            .rev()
        {
            if out.len() >= page.limit {
                break;
            }
            let (key, _) = entry?;
            let (_, id) = key.value();
            if let Some(request) = Self::decode_request(&requests, id)? {
                if state.is_none_or(|s| request.kind() == s) {
                    out.push(request);
                }
            }
        }
        Ok(out)
    }

    /// Every principal's requests, newest first, optionally only in one state.
    pub fn requests(
        &self,
        state: Option<StateKind>,
        page: Page,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let before = page.before.map_or(u64::MAX, RequestId::raw);
        let mut out = Vec::new();
        match state {
            Some(kind) => {
                let index = self.txn.open_table(BY_STATE)?;
                let requests = self.requests_table()?;
                for entry in index
                    .range((state_code(kind), 0)..(state_code(kind), before))?
                    .rev()
                {
                    if out.len() >= page.limit {
                        break;
                    }
                    let (key, _) = entry?;
                    if let Some(request) = Self::decode_request(&requests, key.value().1)? {
                        out.push(request);
                    }
                }
            }
            None => {
                for entry in self.requests_table()?.range(..before)?.rev() {
                    if out.len() >= page.limit {
                        break;
                    }
                    let (_, bytes) = entry?;
                    out.push(decode("requests", bytes.value())?);
                }
            }
        }
        Ok(out)
    }

    /// Every request in `kind`, oldest first.
    pub fn requests_in_state(&self, kind: StateKind) -> Result<Vec<AccessRequest>, StoreError> {
        let index = self.txn.open_table(BY_STATE)?;
        let requests = self.requests_table()?;
        let mut out = Vec::new();
        for entry in index.range((state_code(kind), 0)..=(state_code(kind), u64::MAX))? {
            let (key, _) = entry?;
            if let Some(request) = Self::decode_request(&requests, key.value().1)? {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// The ids of every request in `kind`, oldest first, without reading the requests.
    pub fn ids_in_state(&self, kind: StateKind) -> Result<Vec<RequestId>, StoreError> {
        let index = self.txn.open_table(BY_STATE)?;
        let mut out = Vec::new();
        for entry in index.range((state_code(kind), 0)..=(state_code(kind), u64::MAX))? {
            let (key, _) = entry?;
            out.push(RequestId::from_raw(key.value().1));
        }
        Ok(out)
    }

    /// The ids of the open requests whose (requester, resource) pair `keep` accepts, read from
    /// the open-request index alone: `keep` is asked once per distinct pair and no request is
    /// decoded, so a sweep over a million open leases costs an index scan.
    pub fn open_ids_where(
        &self,
        mut keep: impl FnMut(&str, &str) -> bool,
    ) -> Result<Vec<RequestId>, StoreError> {
        let index = self.txn.open_table(OPEN)?;
        let mut out = Vec::new();
        let mut last: Option<(String, String, bool)> = None;
        for entry in index.iter()? {
            let (key, _) = entry?;
            let (requester, resource, id) = key.value();
            let kept = match &last {
                Some((who, on, kept)) if who == requester && on == resource => *kept,
                _ => {
                    let kept = keep(requester, resource);
                    last = Some((requester.to_owned(), resource.to_owned(), kept));
                    kept
                }
            };
            if kept {
                out.push(RequestId::from_raw(id));
            }
        }
        Ok(out)
    }

    /// How many requests are in `kind`, without reading them.
    pub fn count_in_state(&self, kind: StateKind) -> Result<u64, StoreError> {
        let index = self.txn.open_table(BY_STATE)?;
        let mut count = 0;
        for entry in index.range((state_code(kind), 0)..=(state_code(kind), u64::MAX))? {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    /// Active leases whose extension waits for approvals, oldest first.
    pub fn extensions_pending(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let index = self.txn.open_table(EXTENSIONS_PENDING)?;
        let requests = self.requests_table()?;
        let mut out = Vec::new();
        for entry in index.iter()? {
            let (key, _) = entry?;
            if let Some(request) = Self::decode_request(&requests, key.value())? {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// The open requests of `principal` for `resource` (or any resource when `None`) other
    /// than `except`, decoding only those: a lease alone on its grant costs an index read.
    pub fn open_of_except(
        &self,
        principal: &Principal,
        resource: Option<&ResourceName>,
        except: RequestId,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let index = self.txn.open_table(OPEN)?;
        let requests = self.requests_table()?;
        let mut out = Vec::new();
        let from = resource.map_or("", ResourceName::as_str);
        for entry in index.range((principal.as_str(), from, 0)..)? {
            let (key, _) = entry?;
            let (who, on, id) = key.value();
            if who != principal.as_str() || resource.is_some_and(|r| r.as_str() != on) {
                break;
            }
            if id == except.raw() {
                continue;
            }
            if let Some(request) = Self::decode_request(&requests, id)? {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// Every scheduled deadline, soonest first: what the timer wheel must hold.
    pub fn deadlines(&self) -> Result<Vec<(Timestamp, RequestId)>, StoreError> {
        let table = self.txn.open_table(DEADLINES)?;
        let mut out = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
        for entry in table.iter()? {
            let (key, _) = entry?;
            let (deadline, id) = key.value();
            out.push((
                Timestamp::from_unix_millis(deadline),
                RequestId::from_raw(id),
            ));
        }
        Ok(out)
    }

    /// Break-glass requests whose review is in one of `states`, oldest first.
    pub fn reviews(&self, states: &[ReviewState]) -> Result<Vec<AccessRequest>, StoreError> {
        let index = self.txn.open_table(REVIEWS_BY_STATE)?;
        let requests = self.requests_table()?;
        let mut out = Vec::new();
        for state in states {
            let code = review_code(*state);
            for entry in index.range((code, 0)..=(code, u64::MAX))? {
                let (key, _) = entry?;
                if let Some(request) = Self::decode_request(&requests, key.value().1)? {
                    out.push(request);
                }
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// How many break-glass reviews are in `state`, without reading them.
    pub fn count_reviews(&self, state: ReviewState) -> Result<u64, StoreError> {
        let index = self.txn.open_table(REVIEWS_BY_STATE)?;
        let code = review_code(state);
        let mut count = 0;
        for entry in index.range((code, 0)..=(code, u64::MAX))? {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    /// Outbox entries due at `now` for notifiers not in `skip`, soonest first, at most
    /// `limit`; and when the next entry for such a notifier falls due. Looks at no more than
    /// `scan` entries (then the next time is unknown and `complete` is false).
    pub fn outbox_due(
        &self,
        now: Timestamp,
        limit: usize,
        skip: &std::collections::BTreeSet<String>,
        scan: usize,
    ) -> Result<OutboxDue, StoreError> {
        let due = self.txn.open_table(OUTBOX_DUE)?;
        let outbox = self.txn.open_table(OUTBOX)?;
        let mut found = OutboxDue {
            due: Vec::new(),
            next: None,
            complete: true,
        };
        for (scanned, entry) in due.iter()?.enumerate() {
            if scanned >= scan {
                found.complete = false;
                break;
            }
            let (key, _) = entry?;
            let (at, seq) = key.value();
            let Some(bytes) = outbox.get(seq)? else {
                continue;
            };
            let outgoing: Outgoing = decode("outbox", bytes.value())?;
            if skip.contains(&outgoing.notifier) {
                continue;
            }
            if at > now.unix_millis() {
                found.next = Some(Timestamp::from_unix_millis(at));
                break;
            }
            found.due.push((seq, outgoing));
            if found.due.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    /// Every principal an administrator offboarded (and has not reinstated).
    pub fn offboarded(&self) -> Result<Vec<Offboarding>, StoreError> {
        let table = self.txn.open_table(OFFBOARDED)?;
        let mut found = Vec::new();
        for row in table.iter()? {
            let (_, value) = row?;
            found.push(decode("offboarded", value.value())?);
        }
        Ok(found)
    }

    /// How many notifications wait in the outbox.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(OUTBOX)?.len()?)
    }

    /// Every audit event about request `id`, oldest first.
    pub fn events_of(&self, id: RequestId) -> Result<Vec<Event>, StoreError> {
        let index = self.txn.open_table(AUDIT_BY_REQUEST)?;
        let audit = self.txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for entry in index.range((id.raw(), 0)..=(id.raw(), u64::MAX))? {
            let (key, _) = entry?;
            if let Some(bytes) = audit.get(key.value().1)? {
                out.push(decode("audit", bytes.value())?);
            }
        }
        Ok(out)
    }

    /// Audit events stored under keys from `from`, with their keys, at most `limit`, in key
    /// order (for verification, which checks that each key matches its event).
    pub fn events_with_keys(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let audit = self.txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for entry in audit.range(from..)?.take(limit) {
            let (key, bytes) = entry?;
            out.push((key.value(), decode("audit", bytes.value())?));
        }
        Ok(out)
    }

    /// Up to `limit` audit entries from `from` on, with their keys, as stored (undecoded).
    pub fn event_records(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let audit = self.txn.open_table(AUDIT)?;
        let mut out = Vec::with_capacity(limit.min(1 << 16));
        for entry in audit.range(from..)?.take(limit) {
            let (key, bytes) = entry?;
            out.push((key.value(), bytes.value().to_vec()));
        }
        Ok(out)
    }

    /// The store's recorded audit head (the last entry's hash).
    pub fn audit_head(&self) -> Result<[u8; 32], StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta
            .get(super::tables::META_AUDIT_HEAD)?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
            .unwrap_or(crate::audit::GENESIS))
    }

    /// Audit events with sequence numbers from `from`, at most `limit`, oldest first.
    pub fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .events_with_keys(from, limit)?
            .into_iter()
            .map(|(_, event)| event)
            .collect())
    }

    /// One page of the events matching `filter`, newest first (by time, then sequence
    /// number), strictly before `cursor` when given. Looks at no more than `scan` index rows, so
    /// a selective filter over a long log answers in bounded time; `next` says where to go on.
    pub fn audit_page(
        &self,
        filter: &Filter,
        cursor: Option<AuditCursor>,
        limit: usize,
        scan: usize,
    ) -> Result<AuditPage, StoreError> {
        let audit = self.txn.open_table(AUDIT)?;
        let since = filter.since.map_or(0, |t| t.unix_millis());
        let upper = cursor.map_or(
            (filter.until.map_or(u64::MAX, |t| t.unix_millis()), 0),
            |c| (c.at, c.seq),
        );
        let mut page = AuditPage {
            events: Vec::new(),
            next: None,
        };
        if upper <= (since, 0) {
            return Ok(page);
        }
        // The most selective index the filter allows; the rest of the filter is applied to
        // each event.
        let keys: Keys = match (&filter.principal, &filter.resource, &filter.action) {
            (Some(principal), _, _) => named(
                self.txn.open_table(AUDIT_BY_PRINCIPAL)?,
                principal.as_str(),
                since,
                upper,
            )?,
            (None, Some(resource), _) => named(
                self.txn.open_table(AUDIT_BY_RESOURCE)?,
                resource.as_str(),
                since,
                upper,
            )?,
            (None, None, Some(ActionFilter::Exact(action))) => {
                named(self.txn.open_table(AUDIT_BY_ACTION)?, action, since, upper)?
            }
            _ => {
                let index = self.txn.open_table(AUDIT_BY_TIME)?;
                let rows = index.range((since, 0)..upper)?.rev().map(|entry| {
                    let (key, _) = entry?;
                    Ok(key.value())
                });
                Box::new(rows)
            }
        };
        for (scanned, key) in keys.enumerate() {
            let (at, seq) = key?;
            if scanned >= scan || page.events.len() >= limit {
                page.next = Some(AuditCursor { at, seq: seq + 1 });
                // Resume at this row: the cursor is exclusive, so step just past it.
                break;
            }
            let Some(bytes) = audit.get(seq)? else {
                continue;
            };
            let event: Event = decode("audit", bytes.value())?;
            if filter.matches(&event) {
                page.events.push(event);
            }
        }
        Ok(page)
    }

    /// Every checkpoint with `from <= seq`, oldest first, at most `limit`.
    pub fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS)?;
        let mut out = Vec::new();
        for entry in table.range(from..)?.take(limit) {
            let (_, bytes) = entry?;
            out.push(decode("checkpoints", bytes.value())?);
        }
        Ok(out)
    }

    /// The checkpoint of entry `seq`, if one was signed.
    pub fn checkpoint_at(&self, seq: u64) -> Result<Option<Checkpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS)?;
        match table.get(seq)? {
            Some(bytes) => decode("checkpoints", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The newest checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS)?;
        match table.last()? {
            Some((_, bytes)) => decode("checkpoints", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The last audit event, if any.
    pub fn last_event(&self) -> Result<Option<Event>, StoreError> {
        let audit = self.txn.open_table(AUDIT)?;
        match audit.last()? {
            Some((_, bytes)) => decode("audit", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The audit key the store was first used with.
    pub fn audit_key(&self) -> Result<Option<PublicKey>, StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta
            .get(META_AUDIT_KEY)?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
            .map(PublicKey::from_bytes))
    }

    /// The store's audit counter: how many events were ever appended (the next sequence
    /// number minus one).
    pub fn audit_count(&self) -> Result<u64, StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta
            .get(super::tables::META_NEXT_SEQ)?
            .and_then(|v| super::tables::u64_of(v.value()))
            .unwrap_or(1)
            .saturating_sub(1))
    }

    /// Requests with ids above `after`, oldest first, at most `limit`.
    pub fn requests_after(
        &self,
        after: Option<RequestId>,
        limit: usize,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let from = after.map_or(0, |id| id.raw().saturating_add(1));
        let mut out = Vec::new();
        for entry in self.requests_table()?.range(from..)?.take(limit) {
            let (_, bytes) = entry?;
            out.push(decode("requests", bytes.value())?);
        }
        Ok(out)
    }

    fn decode_request(
        table: &ReadOnlyTable<u64, &'static [u8]>,
        id: u64,
    ) -> Result<Option<AccessRequest>, StoreError> {
        match table.get(id)? {
            Some(bytes) => decode("requests", bytes.value()).map(Some),
            None => Ok(None),
        }
    }
}
