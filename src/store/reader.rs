//! Queries in read transactions. They see a consistent snapshot and never wait for the writer.

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::Outgoing;
use super::StoreError;
use super::codec::decode;
use super::tables::{
    AUDIT, AUDIT_BY_REQUEST, BY_PRINCIPAL, BY_STATE, DEADLINES, OUTBOX, OUTBOX_DUE, REQUESTS,
    REVIEWS_BY_STATE, review_code,
};
use crate::audit::Event;
use crate::model::{AccessRequest, Principal, RequestId, ReviewState, StateKind, Timestamp};

/// Which slice of a newest-first listing to return.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    /// Only ids below this one (the last id of the previous page).
    pub before: Option<RequestId>,
    /// At most this many.
    pub limit: usize,
}

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

/// A read transaction over the store.
pub struct Reader {
    txn: redb::ReadTransaction,
}

impl Reader {
    pub(super) fn begin(db: &Database) -> Result<Self, StoreError> {
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
                for entry in index.range((kind.code(), 0)..(kind.code(), before))?.rev() {
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
        for entry in index.range((kind.code(), 0)..=(kind.code(), u64::MAX))? {
            let (key, _) = entry?;
            if let Some(request) = Self::decode_request(&requests, key.value().1)? {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// How many requests are in `kind`, without reading them.
    pub fn count_in_state(&self, kind: StateKind) -> Result<u64, StoreError> {
        let index = self.txn.open_table(BY_STATE)?;
        let mut count = 0;
        for entry in index.range((kind.code(), 0)..=(kind.code(), u64::MAX))? {
            entry?;
            count += 1;
        }
        Ok(count)
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

    /// Audit events with sequence numbers from `from`, at most `limit`, oldest first.
    pub fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let audit = self.txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for entry in audit.range(from..)?.take(limit) {
            let (_, bytes) = entry?;
            out.push(decode("audit", bytes.value())?);
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
