//! The audit trail as auditors see it: queries, one request's history, signed exports and the
//! access report; and the daemon's own entries (start, stop, refusals) and checkpoints. The
//! audit service holds only this part.
//!
//! Queries and exports are read page by page, each page in its own read transaction, and sent
//! through a bounded channel: a million-event answer never sits in memory, and a slow reader
//! holds no transaction open.

use std::sync::Arc;

use tokio::sync::mpsc;

use tokio_util::sync::CancellationToken;

use super::{BrokerError, Caller, Recovery};
use crate::audit::export::{Encoder, ExportedEvent, Format, Header, Link, Record};
use crate::audit::key::AuditKey;
use crate::audit::query::Filter;
use crate::audit::report::{Builder, Report, Window};
use crate::audit::{Actor, Draft, Event, entry};
use crate::clock::SharedClock;
use crate::model::{AccessRequest, Happened, RequestId};
use crate::policy::Snapshot;
use crate::store::Store;
use crate::store::{AuditCursor, Changes};

/// Events per page read from the store.
const PAGE: usize = 256;
/// Index rows looked at per page at most, so that a selective filter does not hold one read
/// transaction for long.
const SCAN: usize = 16_384;
/// Pages (or chunks) buffered ahead of a slow reader.
const AHEAD: usize = 4;
/// Export bytes per chunk sent.
const CHUNK: usize = 64 * 1024;

/// A stream of query results.
pub type EventStream = mpsc::Receiver<Result<Event, BrokerError>>;
/// A stream of export bytes.
pub type ByteStream = mpsc::Receiver<Result<Vec<u8>, BrokerError>>;

/// The audit trail: cheap to clone. Its entries go through the same store (and writer) as the
/// workflow's, so that they are chained in commit order.
#[derive(Clone)]
pub struct Trail {
    /// Where the entries are; shared with the workflow.
    store: Store,
    /// The daemon's one clock.
    clock: SharedClock,
    /// Signs checkpoints and exports; `None` for a daemon without an audit key.
    audit_key: Option<Arc<AuditKey>>,
    /// Cancelled when shutdown begins (shared with the workflow): query streams end.
    closing: CancellationToken,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Trail {
    /// The trail in `store`, signed with `audit_key`; its streams end when `closing` is
    /// cancelled.
    pub fn new(
        store: Store,
        clock: SharedClock,
        audit_key: Option<Arc<AuditKey>>,
        closing: CancellationToken,
    ) -> Self {
        Self {
            store,
            clock,
            audit_key,
            closing,
        }
    }

    fn audit_key(&self) -> Result<&Arc<AuditKey>, BrokerError> {
        self.audit_key
            .as_ref()
            .ok_or_else(|| BrokerError::Invalid("this daemon has no audit key".to_owned()))
    }

    /// Records the start: what policy and directory are in force, the audit key, and what
    /// recovery did.
    pub async fn record_start(
        &self,
        recovery: &Recovery,
        snapshot: &Snapshot,
    ) -> Result<(), BrokerError> {
        let draft = entry::of(
            self.clock.now(),
            Actor::System,
            Happened::Started {
                policy_version: snapshot.policy.version().to_owned(),
                directory_version: snapshot.directory.version().to_owned(),
                overdue: recovery.overdue,
                scheduled: recovery.scheduled,
                audit_key: self.audit_key.as_ref().map(|key| key.public().to_string()),
            },
        );
        self.record(draft).await
    }

    /// Writes one entry that concerns no request.
    pub async fn record(&self, draft: Draft) -> Result<(), BrokerError> {
        self.record_with(draft, None).await
    }

    /// Writes one entry that concerns no request, signing a checkpoint after it when
    /// `checkpoint` names the time.
    async fn record_with(
        &self,
        draft: Draft,
        checkpoint: Option<crate::model::Timestamp>,
    ) -> Result<(), BrokerError> {
        self.store
            .write(move |_| -> Result<_, BrokerError> {
                Ok((
                    Changes {
                        events: vec![draft],
                        checkpoint,
                        ..Changes::default()
                    },
                    (),
                ))
            })
            .await
    }

    /// Records a clean stop and signs the final head.
    pub async fn record_stop(&self) {
        let now = self.clock.now();
        let draft = entry::of(now, Actor::System, Happened::Stopped);
        if let Err(error) = self.record_with(draft, Some(now)).await {
            tracing::warn!(%error, "could not record the stop and its checkpoint");
        }
    }

    /// Signs a checkpoint every `interval` when events were added, until shutdown.
    pub fn spawn_checkpoints(&self, interval: std::time::Duration, shutdown: CancellationToken) {
        let trail = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let now = trail.clock.now();
                match trail.store.checkpoint(now).await {
                    Ok(()) => {}
                    Err(crate::store::StoreError::Closed) => return,
                    Err(error) => tracing::warn!(%error, "periodic audit checkpoint failed"),
                }
            }
        });
    }

    /// Events matching `filter`, newest first, at most `limit` (0: all), streamed.
    pub fn query_events(
        &self,
        caller: &Caller,
        filter: Filter,
        limit: usize,
    ) -> Result<EventStream, BrokerError> {
        caller.require_auditor("querying the audit trail")?;
        let limit = if limit == 0 { usize::MAX } else { limit };
        let (sender, receiver) = mpsc::channel(PAGE * AHEAD);
        let store = self.store.clone();
        let closing = self.closing.clone();
        tokio::spawn(async move {
            let mut cursor: Option<AuditCursor> = None;
            let mut sent = 0usize;
            loop {
                let want = (limit - sent).min(PAGE);
                let page = {
                    let filter = filter.clone();
                    store
                        .read(move |r| r.audit_page(&filter, cursor, want, SCAN))
                        .await
                };
                let page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                };
                for event in page.events {
                    tokio::select! {
                        () = closing.cancelled() => return,
                        sent_ok = sender.send(Ok(event)) => if sent_ok.is_err() { return },
                    }
                    sent += 1;
                }
                match page.next {
                    Some(next) if sent < limit => cursor = Some(next),
                    _ => return,
                }
            }
        });
        Ok(receiver)
    }

    /// Request `id` and every event about it, oldest first: for auditors and for whoever may
    /// see the request (its requester and approvers).
    pub async fn history(
        &self,
        caller: &Caller,
        id: RequestId,
    ) -> Result<(AccessRequest, Vec<Event>), BrokerError> {
        let request = self
            .store
            .read(move |r| r.request(id))
            .await?
            .filter(|request| caller.may_see(request))
            .ok_or(BrokerError::NotFound(id))?;
        let events = self.store.read(move |r| r.events_of(id)).await?;
        Ok((request, events))
    }

    /// A signed export of the events matching `filter` (see [`crate::audit::export`]), streamed
    /// as bytes. Signs a fresh checkpoint first, so that every exported entry is covered.
    pub async fn export(
        &self,
        caller: &Caller,
        filter: Filter,
        format: Format,
    ) -> Result<ByteStream, BrokerError> {
        caller.require_auditor("exporting the audit trail")?;
        let key = self.audit_key()?.clone();
        let now = self.clock.now();
        self.store.checkpoint(now).await?;
        let head = self
            .store
            .read(|r| r.latest_checkpoint())
            .await?
            .map_or(0, |checkpoint| checkpoint.seq);
        let header = Header {
            format: crate::audit::export::FORMAT.to_owned(),
            version: crate::audit::export::VERSION,
            exported_at: now,
            exported_by: caller.principal.to_string(),
            complete: filter.is_everything(),
            filter,
            head_seq: head,
            key: key.public(),
        };
        let (sender, receiver) = mpsc::channel(AHEAD);
        let store = self.store.clone();
        tokio::spawn(async move {
            let result = export_records(&store, &key, header, format, &sender).await;
            if let Err(error) = result {
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(receiver)
    }

    /// The access report over requests submitted in `window`.
    pub async fn report(&self, caller: &Caller, window: Window) -> Result<Report, BrokerError> {
        caller.require_auditor("the access report")?;
        let mut builder = Builder::new(window);
        let mut after = None;
        loop {
            let page = self
                .store
                .read(move |r| r.requests_after(after, PAGE))
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for request in &page {
                builder.add(request);
            }
        }
        Ok(builder.finish())
    }
}

/// Writes the export: the header; then, oldest first, each matching entry and (for a filtered
/// export) the links from it to the checkpoint covering it; each checkpoint that closes a run;
/// finally the signed end.
async fn export_records(
    store: &crate::store::Store,
    key: &AuditKey,
    header: Header,
    format: Format,
    sender: &mpsc::Sender<Result<Vec<u8>, BrokerError>>,
) -> Result<(), BrokerError> {
    let mut encoder = Encoder::new(format);
    let mut chunk = Vec::with_capacity(CHUNK);
    let head = header.head_seq;
    let filter = header.filter.clone();
    let complete = header.complete;
    chunk.extend(encoder.record(&Record::Header(header)));
    let mut checkpoints = std::collections::VecDeque::new();
    let mut next_checkpoint_from = 1;
    let mut from = 1;
    // Inside a run: from a matching entry up to the checkpoint that covers it.
    let mut open = false;
    // Pages advance by the store's keys, so even a store whose entries were tampered with
    // cannot make the export loop; the verifier then reports what is wrong.
    'pages: while from <= head {
        let page = store.read(move |r| r.events_with_keys(from, PAGE)).await?;
        if page.is_empty() {
            break;
        }
        for (key, event) in page {
            if key > head {
                break 'pages;
            }
            from = key.saturating_add(1);
            if checkpoints.is_empty() && next_checkpoint_from <= event.seq {
                let start = next_checkpoint_from.max(event.seq);
                let found = store.read(move |r| r.checkpoints(start, PAGE)).await?;
                next_checkpoint_from = found.last().map_or(u64::MAX, |c| c.seq.saturating_add(1));
                checkpoints.extend(found);
            }
            let matching = complete || filter.matches(&event);
            if matching {
                chunk.extend(encoder.record(&Record::Event(ExportedEvent::of(&event))));
                open = true;
            } else if open {
                chunk.extend(encoder.record(&Record::Link(Link::of(&event))));
            }
            while checkpoints.front().is_some_and(|c| c.seq < event.seq) {
                checkpoints.pop_front();
            }
            if checkpoints.front().is_some_and(|c| c.seq == event.seq) {
                if let Some(checkpoint) = checkpoints.pop_front() {
                    if open {
                        chunk.extend(encoder.record(&Record::Checkpoint(checkpoint)));
                        open = false;
                    }
                }
            }
            if chunk.len() >= CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if sender.send(Ok(full)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    chunk.extend(encoder.finish(key));
    let _ = sender.send(Ok(chunk)).await;
    Ok(())
}
