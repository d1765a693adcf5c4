//! Queries in read transactions. They see a consistent snapshot and never wait for the writer.
//!
//! Longer than most files: it is every query of the embedded backend (the [`Reads`] of the
//! seam), each a short walk over one index; they share the table handles and decoding.

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::tables::{
    AUDIT, AUDIT_BY_ACTION, AUDIT_BY_PRINCIPAL, AUDIT_BY_REQUEST, AUDIT_BY_RESOURCE, AUDIT_BY_TIME,
    BY_PRINCIPAL, BY_STATE, CHECKPOINTS, DEADLINES, DIRECTORY, EXTENSIONS_PENDING, IDEMPOTENCY,
    META, META_AUDIT_KEY, OFFBOARDED, OPEN, OUTBOX, OUTBOX_DUE, REQUESTS, REVIEWS_BY_STATE,
    review_code, state_code,
};
use super::{Outgoing, StoreError};
use crate::audit::Event;
use crate::audit::key::{Checkpoint, PublicKey};
use crate::audit::query::{ActionFilter, Filter};
use crate::model::{
    AccessRequest, Offboarding, Page, Principal, RequestId, ResourceName, ReviewState, StateKind,
    Timestamp,
};
use crate::store::records::{Link, decode, link_of};
use crate::store::seam::Reads;
use crate::store::{AuditCursor, AuditPage, OutboxDue};

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

impl Reads for Reader {
    fn request(&self, id: RequestId) -> Result<Option<AccessRequest>, StoreError> {
        match self.requests_table()?.get(id.raw())? {
            Some(bytes) => decode("requests", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    fn requests_of(
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

    fn requests(
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

    fn requests_in_state(&self, kind: StateKind) -> Result<Vec<AccessRequest>, StoreError> {
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

    fn ids_in_state(&self, kind: StateKind) -> Result<Vec<RequestId>, StoreError> {
        let index = self.txn.open_table(BY_STATE)?;
        let mut out = Vec::new();
        for entry in index.range((state_code(kind), 0)..=(state_code(kind), u64::MAX))? {
            let (key, _) = entry?;
            out.push(RequestId::from_raw(key.value().1));
        }
        Ok(out)
    }

    fn open_ids_where(
        &self,
        keep: &mut dyn FnMut(&str, &str) -> bool,
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

    fn count_in_state(&self, kind: StateKind) -> Result<u64, StoreError> {
        let index = self.txn.open_table(BY_STATE)?;
        let mut count = 0;
        for entry in index.range((state_code(kind), 0)..=(state_code(kind), u64::MAX))? {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    fn extensions_pending(&self) -> Result<Vec<AccessRequest>, StoreError> {
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

    fn open_of_except(
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

    fn deadlines(&self) -> Result<Vec<(Timestamp, RequestId)>, StoreError> {
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

    fn reviews(&self, states: &[ReviewState]) -> Result<Vec<AccessRequest>, StoreError> {
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

    fn count_reviews(&self, state: ReviewState) -> Result<u64, StoreError> {
        let index = self.txn.open_table(REVIEWS_BY_STATE)?;
        let code = review_code(state);
        let mut count = 0;
        for entry in index.range((code, 0)..=(code, u64::MAX))? {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    fn outbox_due(
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

    fn directory(&self) -> Result<Vec<crate::store::DirectoryRecord>, StoreError> {
        let table = match self.txn.open_table(DIRECTORY) {
            Ok(table) => table,
            // A store made before the directory of record had its table.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut found = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let (kind, id) = key.value();
            let Some(kind) = crate::store::DirectoryKind::parse(kind) else {
                return Err(StoreError::Corrupt {
                    table: "directory",
                    message: format!("unknown resource kind '{kind}'"),
                });
            };
            found.push(crate::store::DirectoryRecord {
                kind,
                id: id.to_owned(),
                resource: value.value().to_vec(),
            });
        }
        Ok(found)
    }

    fn offboarded(&self) -> Result<Vec<Offboarding>, StoreError> {
        let table = self.txn.open_table(OFFBOARDED)?;
        let mut found = Vec::new();
        for row in table.iter()? {
            let (_, value) = row?;
            found.push(decode("offboarded", value.value())?);
        }
        Ok(found)
    }

    fn claimed(&self, key: &str) -> Result<Option<crate::store::idempotency::Claim>, StoreError> {
        match self.txn.open_table(IDEMPOTENCY)?.get(key)? {
            Some(bytes) => decode("idempotency", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    fn claims(&self) -> Result<Vec<crate::store::idempotency::Claim>, StoreError> {
        let table = self.txn.open_table(IDEMPOTENCY)?;
        let mut found = Vec::new();
        for row in table.iter()? {
            let (_, value) = row?;
            found.push(decode("idempotency", value.value())?);
        }
        Ok(found)
    }

    fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(OUTBOX)?.len()?)
    }

    fn events_of(&self, id: RequestId) -> Result<Vec<Event>, StoreError> {
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

    fn events_with_keys(&self, from: u64, limit: usize) -> Result<Vec<(u64, Event)>, StoreError> {
        let audit = self.txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for entry in audit.range(from..)?.take(limit) {
            let (key, bytes) = entry?;
            out.push((key.value(), decode("audit", bytes.value())?));
        }
        Ok(out)
    }

    fn event_records(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let audit = self.txn.open_table(AUDIT)?;
        let mut out = Vec::with_capacity(limit.min(1 << 16));
        for entry in audit.range(from..)?.take(limit) {
            let (key, bytes) = entry?;
            out.push((key.value(), bytes.value().to_vec()));
        }
        Ok(out)
    }

    /// Each core reads and hashes a share of the page's key span from the same snapshot.
    fn event_links(&self, from: u64, limit: usize) -> Result<Vec<(u64, Link)>, StoreError> {
        let audit = self.txn.open_table(AUDIT)?;
        // The page starts at the first stored key (a gap before it is the chain's to report).
        let Some(first) = audit
            .range(from..)?
            .next()
            .transpose()?
            .map(|(key, _)| key.value())
        else {
            return Ok(Vec::new());
        };
        drop(audit);
        // Keys `first..=last`, shared out in inclusive spans (the last key a u64 holds included).
        let last = first.saturating_add((limit.max(1) - 1) as u64);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u64;
        let share = ((last - first) / workers).saturating_add(1);
        let txn = &self.txn;
        std::thread::scope(|scope| {
            let parts: Vec<_> = (0..workers)
                .map_while(|n| first.checked_add(n.checked_mul(share)?))
                .take_while(|&low| low <= last)
                .map(|low| {
                    let high = low.saturating_add(share - 1).min(last);
                    scope.spawn(move || -> Result<Vec<(u64, Link)>, StoreError> {
                        let audit = txn.open_table(AUDIT)?;
                        let mut out = Vec::with_capacity((high - low) as usize + 1);
                        for entry in audit.range(low..=high)? {
                            let (key, bytes) = entry?;
                            let key = key.value();
                            let bytes = bytes::Bytes::copy_from_slice(bytes.value());
                            out.push((key, link_of(key, bytes)));
                        }
                        Ok(out)
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(limit);
            for part in parts {
                out.extend(part.join().map_err(|_| StoreError::ReadPanicked)??);
            }
            Ok(out)
        })
    }

    fn audit_head(&self) -> Result<[u8; 32], StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta
            .get(super::tables::META_AUDIT_HEAD)?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
            .unwrap_or(crate::audit::GENESIS))
    }

    fn audit_page(
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

    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS)?;
        let mut out = Vec::new();
        for entry in table.range(from..)?.take(limit) {
            let (_, bytes) = entry?;
            out.push(decode("checkpoints", bytes.value())?);
        }
        Ok(out)
    }

    fn checkpoint_at(&self, seq: u64) -> Result<Option<Checkpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS)?;
        match table.get(seq)? {
            Some(bytes) => decode("checkpoints", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS)?;
        match table.last()? {
            Some((_, bytes)) => decode("checkpoints", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    fn last_event(&self) -> Result<Option<Event>, StoreError> {
        let audit = self.txn.open_table(AUDIT)?;
        match audit.last()? {
            Some((_, bytes)) => decode("audit", bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    fn audit_key(&self) -> Result<Option<PublicKey>, StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta
            .get(META_AUDIT_KEY)?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
            .map(PublicKey::from_bytes))
    }

    fn audit_count(&self) -> Result<u64, StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta
            .get(super::tables::META_NEXT_SEQ)?
            .and_then(|v| super::tables::u64_of(v.value()))
            .unwrap_or(1)
            .saturating_sub(1))
    }

    fn requests_after(
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
}
