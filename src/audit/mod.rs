//! Audit events and their hash chain. Every state change is recorded by an event written in
//! the same store transaction as the change; each event commits to the previous event's hash,
//! so any edit, removal or reordering of history is detectable.

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
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Principal(principal) => write!(f, "{principal}"),
            Actor::System => f.write_str("elevated"),
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
    /// Hex SHA-256 over `prev_hash` and this event's other fields.
    pub hash: String,
}

impl Event {
    /// Places `draft` after the event whose hash is `prev`, as number `seq`.
    pub fn chain(draft: Draft, seq: u64, prev: &[u8; 32]) -> (Self, [u8; 32]) {
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
        let digest = event.digest();
        event.hash = hex(&digest);
        (event, digest)
    }

    /// SHA-256 over the previous hash and the event's fields (its `hash` left empty).
    pub fn digest(&self) -> [u8; 32] {
        let mut body = self.clone();
        body.hash = String::new();
        // Serializing a struct of strings, integers and a BTreeMap cannot fail; its field
        // order is fixed, so the bytes are canonical.
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(self.prev_hash.as_bytes());
        context.update(&bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    }
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
        assert_eq!(hex(&second.digest()), second.hash);
        let mut tampered = second.clone();
        tampered.details.insert("k".into(), "2".into());
        assert_ne!(hex(&tampered.digest()), second.hash);
    }
}
