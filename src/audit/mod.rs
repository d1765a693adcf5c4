//! Audit events and their hash chain. Every state change is recorded by an event written in
//! the same store transaction as the change; each event commits to the previous event's hash,
//! so any edit, removal or reordering of history is detectable. Signed checkpoints ([`key`])
//! pin the chain's head, so that even somebody who rewrites the whole chain is caught.
//!
//! An event's hash is built in two steps, so that a link of the chain can be checked without
//! the event's contents (exports filtered to some events carry only the links of the others):
//!
//! ```text
//! content = SHA-256("elevate.audit.content.v1\0" ‖ canonical JSON of the event's fields)
//! hash    = SHA-256("elevate.audit.link.v1\0" ‖ previous hash ‖ content)
//! ```
//!
//! The canonical JSON is [`Content`] serialized with its fields in declaration order and
//! details sorted by key.

pub mod actions;
pub mod entry;
pub mod export;
pub mod key;
pub mod query;
pub mod report;
pub mod verify;
pub mod witness;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::hex;
use crate::model::{Principal, RequestId, ResourceName, Timestamp};

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Actor {
    /// A principal, through an RPC.
    Principal(Principal),
    /// The daemon itself (timers, recovery, retries).
    System,
    /// The identity provider, through the SCIM endpoint (recorded as `scim`).
    Scim,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Principal(principal) => write!(f, "{principal}"),
            Actor::System => f.write_str("elevated"),
            Actor::Scim => f.write_str("scim"),
        }
    }
}

/// An event before the store gives it a place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// When it happened.
    pub at: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// What happened, as a dotted name ("request.submitted", "lease.expired").
    pub action: &'static str,
    /// The request it concerns.
    pub request: Option<RequestId>,
    /// The resource it concerns.
    pub resource: Option<ResourceName>,
    /// The principal it concerns (the requester or holder).
    pub principal: Option<Principal>,
    /// Action-specific details.
    pub details: BTreeMap<String, String>,
    /// What happened, typed, when the entry was made from a domain event ([`entry`]): what
    /// notifications are routed from. Not stored.
    pub happened: Option<crate::model::Happened>,
}

impl Draft {
    /// A draft with no subject and no details.
    pub fn new(at: Timestamp, actor: Actor, action: &'static str) -> Self {
        Self {
            at,
            actor,
            action,
            request: None,
            resource: None,
            principal: None,
            details: BTreeMap::new(),
            happened: None,
        }
    }

    /// Adds one detail.
    pub fn detail(mut self, key: &str, value: impl ToString) -> Self {
        self.details.insert(key.to_owned(), value.to_string());
        self
    }
}

/// The hash that precedes the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// An event's fields as they are hashed: the canonical form shared by the store, exports and
/// verifiers. `actor` is `None` for the daemon itself; `request` is the display form
/// (`req-7`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// Position in the log.
    pub seq: u64,
    /// Unix milliseconds.
    pub at: u64,
    /// The principal who caused it, or `None` for the daemon.
    pub actor: Option<String>,
    /// What happened.
    pub action: String,
    /// The request it concerns.
    pub request: Option<String>,
    /// The resource it concerns.
    pub resource: Option<String>,
    /// The principal it concerns.
    pub principal: Option<String>,
    /// Details.
    pub details: BTreeMap<String, String>,
}

impl Content {
    /// SHA-256 over the domain tag and the canonical JSON.
    pub fn digest(&self) -> [u8; 32] {
        ContentView {
            seq: self.seq,
            at: self.at,
            actor: self.actor.as_deref(),
            action: &self.action,
            request: self.request.as_deref(),
            resource: self.resource.as_deref(),
            principal: self.principal.as_deref(),
            details: &self.details,
        }
        .digest()
    }
}

/// [`Content`] borrowed from wherever its fields live: the one canonical serialization that is
/// hashed (same fields, same order), without copying an event to hash it.
#[derive(Serialize)]
struct ContentView<'a> {
    seq: u64,
    at: u64,
    actor: Option<&'a str>,
    action: &'a str,
    request: Option<&'a str>,
    resource: Option<&'a str>,
    principal: Option<&'a str>,
    details: &'a BTreeMap<String, String>,
}

impl ContentView<'_> {
    /// The canonical bytes: what the digest covers, and what the store keeps.
    fn bytes(&self) -> Vec<u8> {
        // Strings, integers, options and a BTreeMap always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn digest(&self) -> [u8; 32] {
        content_digest_of(&self.bytes())
    }
}

/// The content digest of an entry whose canonical bytes are `canonical`.
pub fn content_digest_of(canonical: &[u8]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"elevate.audit.content.v1\0");
    context.update(canonical);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// The hash of a link of the chain: the previous hash and this event's content digest.
pub fn link_hash(prev: &[u8; 32], content: &[u8; 32]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"elevate.audit.link.v1\0");
    context.update(prev);
    context.update(content);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// A stored audit event: a draft with its sequence number and chain hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// What happened.
    pub action: String,
    /// The request it concerns.
    pub request: Option<RequestId>,
    /// The resource it concerns.
    pub resource: Option<ResourceName>,
    /// The principal it concerns.
    pub principal: Option<Principal>,
    /// Details.
    pub details: BTreeMap<String, String>,
    /// Hex SHA-256 of the previous event (zeros for the first).
    pub prev_hash: String,
    /// Hex [`link_hash`] of `prev_hash` and this event's content.
    pub hash: String,
}

impl Event {
    /// Places `draft` after the event whose hash is `prev`, as number `seq`.
    pub fn chain(draft: Draft, seq: u64, prev: &[u8; 32]) -> (Self, [u8; 32]) {
        let (event, _, hash) = Self::sealed(draft, seq, prev);
        (event, hash)
    }

    /// [`Event::chain`], also returning the canonical bytes its content digest covers (what
    /// the store keeps), serialized once.
    pub fn sealed(draft: Draft, seq: u64, prev: &[u8; 32]) -> (Self, Vec<u8>, [u8; 32]) {
        let mut event = Event {
            seq,
            at: draft.at,
            actor: draft.actor,
            action: draft.action.to_owned(),
            request: draft.request,
            resource: draft.resource,
            principal: draft.principal,
            details: draft.details,
            prev_hash: hex(prev),
            hash: String::new(),
        };
        let canonical = event.canonical();
        let hash = link_hash(prev, &content_digest_of(&canonical));
        event.hash = hex(&hash);
        (event, canonical, hash)
    }

    /// The digest of [`Event::content`], computed without copying the event.
    pub fn content_digest(&self) -> [u8; 32] {
        content_digest_of(&self.canonical())
    }

    /// The canonical bytes of [`Event::content`], computed without copying the event.
    pub fn canonical(&self) -> Vec<u8> {
        let request = self.request.map(|id| id.to_string());
        ContentView {
            seq: self.seq,
            at: self.at.unix_millis(),
            actor: match &self.actor {
                Actor::Principal(principal) => Some(principal.as_str()),
                Actor::System => None,
                Actor::Scim => Some("scim"),
            },
            action: &self.action,
            request: request.as_deref(),
            resource: self.resource.as_ref().map(ResourceName::as_str),
            principal: self.principal.as_ref().map(Principal::as_str),
            details: &self.details,
        }
        .bytes()
    }

    /// The fields that are hashed, in canonical form.
    pub fn content(&self) -> Content {
        Content {
            seq: self.seq,
            at: self.at.unix_millis(),
            actor: match &self.actor {
                Actor::Principal(principal) => Some(principal.to_string()),
                Actor::System => None,
                Actor::Scim => Some("scim".to_owned()),
            },
            action: self.action.clone(),
            request: self.request.map(|id| id.to_string()),
            resource: self.resource.as_ref().map(ToString::to_string),
            principal: self.principal.as_ref().map(ToString::to_string),
            details: self.details.clone(),
        }
    }

    /// The hash this event should have given its `prev_hash` and contents; `None` when
    /// `prev_hash` is not a hash at all.
    pub fn expected_hash(&self) -> Option<[u8; 32]> {
        let prev = unhex32(&self.prev_hash)?;
        Some(link_hash(&prev, &self.content_digest()))
    }
}

/// Parses 64 hex digits.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    crate::hash::unhex(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_links_each_event_to_the_previous() {
        let at = Timestamp::from_unix_millis(1);
        let (first, head) = Event::chain(Draft::new(at, Actor::System, "a"), 1, &GENESIS);
        let (second, _) = Event::chain(Draft::new(at, Actor::System, "b").detail("k", 1), 2, &head);
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(
            second.expected_hash().map(|h| hex(&h)),
            Some(second.hash.clone())
        );
        let mut tampered = second.clone();
        tampered.details.insert("k".into(), "2".into());
        assert_ne!(tampered.expected_hash().map(|h| hex(&h)), Some(second.hash));
    }

    #[test]
    fn the_borrowed_digest_is_the_canonical_contents_digest() {
        let at = Timestamp::from_unix_millis(1_800_000_000_123);
        let mut draft = Draft::new(
            at,
            Actor::Principal("alice".parse().unwrap()),
            "lease.expired",
        )
        .detail("lag_ms", 3)
        .detail("reason", "quote \" and ünïcode");
        draft.request = Some(RequestId::from_raw(42));
        draft.resource = Some("prod-db".parse().unwrap());
        draft.principal = Some("bob".parse().unwrap());
        let bare = Draft::new(at, Actor::System, "daemon.started");
        for draft in [draft, bare] {
            let (event, _) = Event::chain(draft, 7, &GENESIS);
            assert_eq!(event.content_digest(), event.content().digest());
        }
        // And it is the digest of the content's canonical JSON, as exports state it.
        let (event, _) = Event::chain(Draft::new(at, Actor::System, "x"), 1, &GENESIS);
        let json = serde_json::to_vec(&event.content()).unwrap();
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"elevate.audit.content.v1\0");
        context.update(&json);
        assert_eq!(event.content_digest().as_slice(), context.finish().as_ref());
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0xab; 32];
        assert_eq!(unhex32(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex32("zz"), None);
        assert_eq!(unhex32(&"g".repeat(64)), None);
    }
}
