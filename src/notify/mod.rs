//! Notifications that reach people: who must decide, who got access, who must review.
//!
//! Events are derived from each committed transition ([`derive`]), routed to the configured
//! notifiers ([`Routing`]), and queued in the store's outbox in the same transaction as the
//! change that caused them. The [`outbox`] dispatcher delivers them with retries and backoff,
//! after a restart too. Delivery never blocks or fails a transition: a dead webhook only grows
//! the outbox. Delivery is at least once; each event carries a stable `id` to deduplicate on.

pub mod derive;
mod exec;
mod file;
pub mod outbox;
mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use exec::ExecNotifier;
pub use file::FileNotifier;
pub use webhook::{Format, WebhookNotifier, has_userinfo, read_headers_file};

use crate::BoxFuture;
use crate::audit::key::Checkpoint;
use crate::model::Timestamp;
use crate::store::Outgoing;

/// Every event kind.
pub const KINDS: [&str; 13] = [
    "request.waiting",
    "request.reminder",
    "request.decided",
    "access.granted",
    "access.expiring",
    "access.expired",
    "access.revoked",
    "break_glass.granted",
    "review.due",
    "review.overdue",
    "review.reminder",
    "review.closed",
    "revoke.failing",
];

/// Whether a routing pattern can match: a kind, a family (`review.*`) or `*`.
pub fn known_pattern(pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => KINDS.iter().any(|kind| kind.starts_with(prefix)),
        None => KINDS.contains(&pattern),
    }
}

/// How urgent an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Routine.
    Normal,
    /// Needs attention now: break-glass, overdue reviews, failing revokes.
    High,
}

/// One event, as notifiers receive it (JSON). Field names are a contract for receivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable id of this event: deduplicate on it (delivery is at least once).
    pub id: String,
    /// What happened: `request.waiting`, `request.reminder`, `request.decided`,
    /// `access.granted`, `access.expiring`, `access.expired`, `access.revoked`,
    /// `break_glass.granted`, `review.due`, `review.overdue`, `review.reminder`,
    /// `review.closed`, `revoke.failing`; and `audit.checkpoint` for the audit witness.
    pub kind: String,
    /// How urgent.
    pub priority: Priority,
    /// When (RFC 3339).
    pub at: String,
    /// Who should hear about it (principals).
    pub recipients: Vec<String>,
    /// One line for people ("oncall broke glass on prod-db-admin for INC-7: …").
    pub text: String,
    /// The request it is about (none for `audit.checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestSummary>,
    /// The signed checkpoint, for `audit.checkpoint`: what the audit witness keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

/// The kind of the events that carry a signed checkpoint to the audit witness.
pub const CHECKPOINT_KIND: &str = "audit.checkpoint";

impl Event {
    /// The event that hands `checkpoint` to the audit witness, as outbox JSON.
    pub fn witnessing(checkpoint: &Checkpoint) -> serde_json::Value {
        let event = Self {
            id: format!("checkpoint:{}:{}", checkpoint.seq, checkpoint.head),
            kind: CHECKPOINT_KIND.to_owned(),
            priority: Priority::Normal,
            at: checkpoint.at.rfc3339(),
            recipients: Vec::new(),
            text: format!(
                "audit checkpoint: entry {} has hash {}",
                checkpoint.seq, checkpoint.head
            ),
            request: None,
            checkpoint: Some(checkpoint.clone()),
        };
        serde_json::to_value(event).unwrap_or_default()
    }
}

/// The request an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// `req-<n>`.
    pub id: String,
    /// The requester (holder).
    pub requester: String,
    /// The resource.
    pub resource: String,
    /// Its state.
    pub state: String,
    /// Why it was asked.
    pub reason: Option<String>,
    /// Ticket reference.
    pub ticket: Option<String>,
    /// Whether it is a break-glass request.
    pub break_glass: bool,
    /// The incident, for break-glass.
    pub incident: Option<String>,
    /// When the lease ends (RFC 3339).
    pub expires_at: Option<String>,
    /// The review's state, for break-glass.
    pub review: Option<String>,
    /// When the review is due (RFC 3339).
    pub review_due_at: Option<String>,
}

/// Delivering failed; retried with backoff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotifyError(pub String);

/// Delivers events to one destination.
pub trait Notifier: Send + Sync + fmt::Debug + 'static {
    /// Delivers `event`; `Ok` means the destination accepted it.
    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// The configured notifiers, by name.
#[derive(Clone, Debug, Default)]
pub struct Notifiers {
    by_name: BTreeMap<String, Arc<dyn Notifier>>,
}

impl Notifiers {
    /// Adds (or replaces) the notifier called `name`.
    pub fn insert(&mut self, name: impl Into<String>, notifier: Arc<dyn Notifier>) {
        self.by_name.insert(name.into(), notifier);
    }

    /// The notifier called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Notifier>> {
        self.by_name.get(name)
    }

    /// Whether `name` is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

/// One routing rule: events of these kinds (and at least this priority) go to this notifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Event kinds: exact (`review.overdue`), a family (`review.*`), or everything (`*`).
    pub events: Vec<String>,
    /// Lowest priority routed.
    pub min_priority: Priority,
    /// The notifier.
    pub notifier: String,
}

impl Route {
    fn matches(&self, event: &Event) -> bool {
        event.priority >= self.min_priority
            && self
                .events
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => event.kind.starts_with(prefix),
                    None => *pattern == event.kind,
                })
    }
}

/// Time-driven notices: when reminders and early warnings go out. `None` turns one off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notices {
    /// Re-notify the approvers of a stage still pending after this long, and every such
    /// interval after.
    pub approval_reminder: Option<Duration>,
    /// Tell the holder this long before the lease expires.
    pub expiring_soon: Option<Duration>,
    /// Tell the reviewers this long before a review is due.
    pub review_due_soon: Option<Duration>,
}

/// Where events go, and when time-driven ones fall due.
#[derive(Clone, Debug, Default)]
pub struct Routing {
    /// The rules, all applied: an event goes to every notifier whose rule matches (once each).
    pub routes: Vec<Route>,
    /// Reminder and warning lead times.
    pub notices: Notices,
}

impl Routing {
    /// Outbox entries for `events`, one per event and matching notifier.
    pub fn route(&self, events: Vec<Event>, now: Timestamp) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for event in events {
            let mut notifiers: Vec<&str> = self
                .routes
                .iter()
                .filter(|route| route.matches(&event))
                .map(|route| route.notifier.as_str())
                .collect();
            notifiers.sort_unstable();
            notifiers.dedup();
            if notifiers.is_empty() {
                continue;
            }
            let value = serde_json::to_value(&event).unwrap_or(serde_json::Value::Null);
            for notifier in notifiers {
                out.push(Outgoing {
                    notifier: notifier.to_owned(),
                    event: value.clone(),
                    queued_at: now,
                    attempts: 0,
                    next_attempt_at: now,
                    last_error: None,
                });
            }
        }
        out
    }
}
