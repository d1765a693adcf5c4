//! How both backends encode what they store, in one place.
//!
//! - Requests are protobuf (`proto/elevate/store/v1/records.proto`, through prost): compact,
//!   about three times faster to read and write than the JSON of earlier releases, and forward
//!   compatible as JSON was (a field added later reads as its default from an older record).
//! - Audit entries are an [`pb::AuditEntry`]: the exact canonical bytes the entry's content
//!   digest covers, and its two chain hashes as raw bytes. Verifying an entry is hashing bytes;
//!   reading one for a query parses its canonical JSON.
//! - The small, rarely written values (outbox entries, offboardings, idempotency claims,
//!   checkpoints) stay JSON.
//!
//! Records written by releases before the binary encoding (JSON, always starting with `{`,
//! which no protobuf record here starts with) are still read, so that an old store can be
//! verified offline and read while it is upgraded; `elevated store upgrade` (or the first start
//! of this release) rewrites them ([`upgrade_request`], [`upgrade_entry`]).

use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use crate::audit::{Actor, Content, Event, unhex32};
use crate::hash::hex;
use crate::model::{
    AccessRequest, Attempts, BreakGlass, Decision, Ending, Extension, ExtensionState,
    LeaseDuration, Notices, Review, ReviewState, ReviewVerdict, Route, RouteStage, State,
    Timestamp, Verdict,
};

/// The generated messages.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/elevate.store.v1.rs"));
}

/// A value the store keeps, in its stored encoding.
pub(crate) trait Stored: Sized {
    /// The stored bytes.
    fn encode(&self) -> Vec<u8>;
    /// The value from stored bytes; `table` names where they came from in errors.
    fn decode(table: &'static str, bytes: &[u8]) -> Result<Self, StoreError>;
}

/// Encodes a value for storage.
pub(crate) fn encode<T: Stored>(value: &T) -> Vec<u8> {
    value.encode()
}

/// Decodes a stored value.
pub(crate) fn decode<T: Stored>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    T::decode(table, bytes)
}

fn corrupt(table: &'static str, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table,
        message: message.to_string(),
    }
}

/// Whether `bytes` are a record in the JSON of earlier releases.
pub(crate) fn is_json(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'{')
}

fn json_encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs, enums, strings, integers and maps with string keys: cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn json_decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| corrupt(table, error))
}

macro_rules! json_stored {
    ($($ty:ty),*) => {$(
        impl Stored for $ty {
            fn encode(&self) -> Vec<u8> {
                json_encode(self)
            }
            fn decode(table: &'static str, bytes: &[u8]) -> Result<Self, StoreError> {
                json_decode(table, bytes)
            }
        }
    )*};
}

json_stored!(
    super::Outgoing,
    crate::model::Offboarding,
    super::idempotency::Claim,
    crate::audit::key::Checkpoint
);

impl Stored for AccessRequest {
    fn encode(&self) -> Vec<u8> {
        request_to_pb(self).encode_to_vec()
    }

    fn decode(table: &'static str, bytes: &[u8]) -> Result<Self, StoreError> {
        if is_json(bytes) {
            return json_decode(table, bytes);
        }
        let message = pb::Request::decode(bytes).map_err(|error| corrupt(table, error))?;
        request_from_pb(message).map_err(|error| corrupt(table, error))
    }
}

impl Stored for Event {
    fn encode(&self) -> Vec<u8> {
        let content = self.canonical();
        let hash = |text: &str| unhex32(text).map(Vec::from).unwrap_or_default();
        entry_bytes(
            content,
            hash(&self.prev_hash),
            hash(&self.hash),
            self.actor == Actor::Scim,
        )
    }

    fn decode(table: &'static str, bytes: &[u8]) -> Result<Self, StoreError> {
        if is_json(bytes) {
            return json_decode(table, bytes);
        }
        let entry = pb::AuditEntry::decode(bytes).map_err(|error| corrupt(table, error))?;
        let content: Content =
            serde_json::from_slice(&entry.content).map_err(|error| corrupt(table, error))?;
        event_from(content, &entry).map_err(|error| corrupt(table, error))
    }
}

/// A stored audit entry from its parts.
pub(crate) fn entry_bytes(content: Vec<u8>, prev: Vec<u8>, hash: Vec<u8>, scim: bool) -> Vec<u8> {
    pb::AuditEntry {
        content: content.into(),
        prev_hash: prev.into(),
        hash: hash.into(),
        scim,
    }
    .encode_to_vec()
}

/// What verifying a stored entry needs: the sequence number its content states, its previous
/// and own hashes as stored, its content digest and its action. Hashing only, for entries in
/// the binary encoding; an entry of an earlier release is decoded and its canonical form
/// computed, as that release did.
pub struct Link {
    /// The sequence number the content states.
    pub seq: u64,
    /// The previous entry's hash, as stored.
    pub prev: [u8; 32],
    /// This entry's hash, as stored.
    pub hash: [u8; 32],
    /// Whether `hash` is the link hash of `prev` and the content digest (SHA-256 over the
    /// content tag and the canonical bytes), found here so that pages of entries are hashed in
    /// parallel and the walk along the chain only compares.
    pub intact: bool,
    /// Whether the entry records a clean stop (whose checkpoint must exist).
    pub stopped: bool,
}

/// The [`Link`] of the entry stored under `key`. An entry that cannot be read (not a record
/// of either encoding, a hash that is not 32 bytes, content that does not state its sequence
/// number as the canonical form does) was not written by elevate: it is reported altered, under
/// its key, as an edit the hashes would not cover.
pub(crate) fn link_of(key: u64, bytes: bytes::Bytes) -> Link {
    let damaged = Link {
        seq: key,
        prev: [0; 32],
        hash: [0; 32],
        intact: false,
        stopped: false,
    };
    if is_json(&bytes) {
        let Ok(event) = json_decode::<Event>("audit", &bytes) else {
            return damaged;
        };
        let (Some(prev), Some(hash)) = (unhex32(&event.prev_hash), unhex32(&event.hash)) else {
            return Link {
                seq: event.seq,
                ..damaged
            };
        };
        let digest = event.content_digest();
        return Link {
            seq: event.seq,
            prev,
            hash,
            intact: crate::audit::link_hash(&prev, &digest) == hash,
            stopped: event.action == crate::audit::actions::STOPPED,
        };
    }
    let Ok(entry) = pb::AuditEntry::decode(bytes) else {
        return damaged;
    };
    let (Ok(prev), Ok(hash), Some((seq, action))) = (
        <[u8; 32]>::try_from(entry.prev_hash.as_ref()),
        <[u8; 32]>::try_from(entry.hash.as_ref()),
        stated(&entry.content),
    ) else {
        return damaged;
    };
    let digest = crate::audit::content_digest_of(&entry.content);
    Link {
        seq,
        prev,
        hash,
        intact: crate::audit::link_hash(&prev, &digest) == hash,
        stopped: action == crate::audit::actions::STOPPED.as_bytes(),
    }
}

/// The links of a page of stored entries (read already), each one's canonical bytes hashed,
/// spread over the machine's cores: the part of verification that does not depend on the
/// entry before. The chain itself is then walked in order.
pub(crate) fn links_of_page(mut page: Vec<(u64, Vec<u8>)>) -> Result<Vec<(u64, Link)>, StoreError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let chunk = page.len().div_ceil(workers).max(1);
    let total = page.len();
    // Owned parts, so that each entry's bytes move into the decoder rather than being copied.
    let mut parts = Vec::with_capacity(workers);
    while page.len() > chunk {
        let rest = page.split_off(chunk);
        parts.push(std::mem::replace(&mut page, rest));
    }
    parts.push(page);
    std::thread::scope(|scope| {
        let hashing: Vec<_> = parts
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    part.into_iter()
                        .map(|(key, bytes)| Ok((key, link_of(key, bytes.into()))))
                        .collect::<Result<Vec<_>, StoreError>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(total);
        for part in hashing {
            out.extend(part.join().map_err(|_| StoreError::ReadPanicked)??);
        }
        Ok(out)
    })
}

/// The sequence number and action canonical content bytes state, read from their start:
/// `{"seq":N,"at":M,"actor":null,"action":"…"` (or a string for the actor); `None` for bytes
/// not in that form.
fn stated(content: &[u8]) -> Option<(u64, &[u8])> {
    fn number<'a>(bytes: &'a [u8], field: &[u8]) -> Option<(u64, &'a [u8])> {
        let rest = bytes.strip_prefix(field)?;
        let end = rest.iter().position(|b| !b.is_ascii_digit())?;
        if end == 0 || end > 20 {
            return None;
        }
        let value = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        Some((value, &rest[end..]))
    }
    /// A JSON string's body and what follows its closing quote.
    fn string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let body = bytes.strip_prefix(b"\"")?;
        let mut escaped = false;
        for (at, byte) in body.iter().enumerate() {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => return Some((&body[..at], &body[at + 1..])),
                _ => {}
            }
        }
        None
    }
    let (seq, rest) = number(content, b"{\"seq\":")?;
    let (_, rest) = number(rest, b",\"at\":")?;
    let rest = rest.strip_prefix(b",\"actor\":")?;
    let rest = match rest.strip_prefix(b"null") {
        Some(rest) => rest,
        None => string(rest)?.1,
    };
    let (action, _) = string(rest.strip_prefix(b",\"action\":")?)?;
    Some((seq, action))
}

fn event_from(content: Content, entry: &pb::AuditEntry) -> Result<Event, String> {
    let actor = match content.actor {
        None => Actor::System,
        Some(name) if entry.scim && name == "scim" => Actor::Scim,
        Some(name) => Actor::Principal(parse(name)?),
    };
    let hash = |bytes: &[u8]| {
        <[u8; 32]>::try_from(bytes)
            .map(|hash| hex(&hash))
            .map_err(|_| "a chain hash is not 32 bytes".to_owned())
    };
    Ok(Event {
        seq: content.seq,
        at: Timestamp::from_unix_millis(content.at),
        actor,
        action: content.action,
        request: content
            .request
            .map(|id| id.parse())
            .transpose()
            .map_err(err)?,
        resource: content.resource.map(parse).transpose()?,
        principal: content.principal.map(parse).transpose()?,
        details: content.details,
        prev_hash: hash(&entry.prev_hash)?,
        hash: hash(&entry.hash)?,
    })
}

fn err(error: impl ToString) -> String {
    error.to_string()
}

fn parse<T: TryFrom<String>>(value: String) -> Result<T, String>
where
    T::Error: ToString,
{
    T::try_from(value).map_err(err)
}

fn parse_opt<T: TryFrom<String>>(value: Option<String>) -> Result<Option<T>, String>
where
    T::Error: ToString,
{
    value.map(parse).transpose()
}

fn at(millis: u64) -> Timestamp {
    Timestamp::from_unix_millis(millis)
}

fn millis(at: Timestamp) -> u64 {
    at.unix_millis()
}

fn duration(millis: u64) -> Result<LeaseDuration, String> {
    LeaseDuration::try_from(millis).map_err(err)
}

fn stage_to_pb(stage: &RouteStage) -> pb::Stage {
    pb::Stage {
        name: stage.name.clone(),
        quorum: stage.quorum,
        approvers: stage.approvers.iter().map(ToString::to_string).collect(),
    }
}

fn stage_from_pb(stage: pb::Stage) -> Result<RouteStage, String> {
    Ok(RouteStage {
        name: stage.name,
        quorum: stage.quorum,
        approvers: stage
            .approvers
            .into_iter()
            .map(parse)
            .collect::<Result<_, _>>()?,
    })
}

fn ending_to_pb(ending: Ending) -> i32 {
    (match ending {
        Ending::Expired => pb::Ending::Expired,
        Ending::Released => pb::Ending::Released,
        Ending::Revoked => pb::Ending::Revoked,
        Ending::Failed => pb::Ending::Failed,
    }) as i32
}

fn ending_from_pb(code: i32) -> Result<Ending, String> {
    match pb::Ending::try_from(code) {
        Ok(pb::Ending::Expired) => Ok(Ending::Expired),
        Ok(pb::Ending::Released) => Ok(Ending::Released),
        Ok(pb::Ending::Revoked) => Ok(Ending::Revoked),
        Ok(pb::Ending::Failed) => Ok(Ending::Failed),
        _ => Err(format!("unknown ending {code}")),
    }
}

fn attempts_to_pb(attempts: &Attempts) -> pb::Attempts {
    pb::Attempts {
        count: attempts.count,
        last_error: attempts.last_error.clone(),
        retry_at: millis(attempts.retry_at),
    }
}

fn attempts_from_pb(attempts: Option<pb::Attempts>) -> Attempts {
    let attempts = attempts.unwrap_or_default();
    Attempts {
        count: attempts.count,
        last_error: attempts.last_error,
        retry_at: at(attempts.retry_at),
    }
}

fn state_to_pb(state: &State) -> pb::State {
    use pb::state::{Approved, Empty, Ended, Kind, Pending, RevokeFailing};
    let kind = match state {
        State::Pending { stage } => Kind::Pending(Pending { stage: *stage }),
        State::Approved { attempts } => Kind::Approved(Approved {
            attempts: Some(attempts_to_pb(attempts)),
        }),
        State::Active => Kind::Active(Empty {}),
        State::RevokeFailing { ending, attempts } => Kind::RevokeFailing(RevokeFailing {
            ending: ending_to_pb(*ending),
            attempts: Some(attempts_to_pb(attempts)),
        }),
        State::Denied => Kind::Denied(Empty {}),
        State::Cancelled => Kind::Cancelled(Empty {}),
        State::TimedOut => Kind::TimedOut(Empty {}),
        State::Ended { ending } => Kind::Ended(Ended {
            ending: ending_to_pb(*ending),
        }),
    };
    pb::State { kind: Some(kind) }
}

fn state_from_pb(state: Option<pb::State>) -> Result<State, String> {
    use pb::state::Kind;
    Ok(match state.and_then(|state| state.kind) {
        Some(Kind::Pending(pending)) => State::Pending {
            stage: pending.stage,
        },
        Some(Kind::Approved(approved)) => State::Approved {
            attempts: attempts_from_pb(approved.attempts),
        },
        Some(Kind::Active(_)) => State::Active,
        Some(Kind::RevokeFailing(failing)) => State::RevokeFailing {
            ending: ending_from_pb(failing.ending)?,
            attempts: attempts_from_pb(failing.attempts),
        },
        Some(Kind::Denied(_)) => State::Denied,
        Some(Kind::Cancelled(_)) => State::Cancelled,
        Some(Kind::TimedOut(_)) => State::TimedOut,
        Some(Kind::Ended(ended)) => State::Ended {
            ending: ending_from_pb(ended.ending)?,
        },
        None => return Err("the request has no state".to_owned()),
    })
}

fn decision_to_pb(decision: &Decision) -> pb::Decision {
    pb::Decision {
        approver: decision.approver.to_string(),
        verdict: (match decision.verdict {
            Verdict::Approve => pb::Verdict::Approve,
            Verdict::Deny => pb::Verdict::Deny,
        }) as i32,
        comment: decision.comment.clone(),
        at: millis(decision.at),
        stage: decision.stage,
        void: decision.void.clone(),
    }
}

fn decision_from_pb(decision: pb::Decision) -> Result<Decision, String> {
    Ok(Decision {
        approver: parse(decision.approver)?,
        verdict: match pb::Verdict::try_from(decision.verdict) {
            Ok(pb::Verdict::Approve) => Verdict::Approve,
            Ok(pb::Verdict::Deny) => Verdict::Deny,
            _ => return Err(format!("unknown verdict {}", decision.verdict)),
        },
        comment: decision.comment,
        at: at(decision.at),
        stage: decision.stage,
        void: decision.void,
    })
}

fn extension_to_pb(extension: &Extension) -> pb::Extension {
    use pb::extension::state::{At, Denied, Empty, Failed, Kind};
    let kind = match &extension.state {
        ExtensionState::Pending => Kind::Pending(Empty {}),
        ExtensionState::Approved => Kind::Approved(Empty {}),
        ExtensionState::Applied { at } => Kind::Applied(At { at: millis(*at) }),
        ExtensionState::Denied { by, reason, at } => Kind::Denied(Denied {
            by: by.to_string(),
            reason: reason.clone(),
            at: millis(*at),
        }),
        ExtensionState::Failed { error, at } => Kind::Failed(Failed {
            error: error.clone(),
            at: millis(*at),
        }),
        ExtensionState::Lapsed { at } => Kind::Lapsed(At { at: millis(*at) }),
    };
    pb::Extension {
        by_ms: extension.by.into(),
        reason: extension.reason.to_string(),
        asked_at: millis(extension.asked_at),
        from: millis(extension.from),
        stage: extension.stage.as_ref().map(stage_to_pb),
        approvals: extension
            .approvals
            .iter()
            .map(|(approver, when)| pb::extension::Approval {
                approver: approver.to_string(),
                at: millis(*when),
            })
            .collect(),
        state: Some(pb::extension::State { kind: Some(kind) }),
    }
}

fn extension_from_pb(extension: pb::Extension) -> Result<Extension, String> {
    use pb::extension::state::Kind;
    let state = match extension.state.and_then(|state| state.kind) {
        Some(Kind::Pending(_)) => ExtensionState::Pending,
        Some(Kind::Approved(_)) => ExtensionState::Approved,
        Some(Kind::Applied(applied)) => ExtensionState::Applied { at: at(applied.at) },
        Some(Kind::Denied(denied)) => ExtensionState::Denied {
            by: parse(denied.by)?,
            reason: denied.reason,
            at: at(denied.at),
        },
        Some(Kind::Failed(failed)) => ExtensionState::Failed {
            error: failed.error,
            at: at(failed.at),
        },
        Some(Kind::Lapsed(lapsed)) => ExtensionState::Lapsed { at: at(lapsed.at) },
        None => return Err("an extension has no state".to_owned()),
    };
    Ok(Extension {
        by: duration(extension.by_ms)?,
        reason: parse(extension.reason)?,
        asked_at: at(extension.asked_at),
        from: at(extension.from),
        stage: extension.stage.map(stage_from_pb).transpose()?,
        approvals: extension
            .approvals
            .into_iter()
            .map(|approval| Ok((parse(approval.approver)?, at(approval.at))))
            .collect::<Result<_, String>>()?,
        state,
    })
}

fn review_state_to_pb(state: ReviewState) -> i32 {
    (match state {
        ReviewState::Pending => pb::ReviewState::Pending,
        ReviewState::Overdue => pb::ReviewState::Overdue,
        ReviewState::Justified => pb::ReviewState::Justified,
        ReviewState::Unjustified => pb::ReviewState::Unjustified,
    }) as i32
}

fn review_state_from_pb(code: i32) -> Result<ReviewState, String> {
    match pb::ReviewState::try_from(code) {
        Ok(pb::ReviewState::Pending) => Ok(ReviewState::Pending),
        Ok(pb::ReviewState::Overdue) => Ok(ReviewState::Overdue),
        Ok(pb::ReviewState::Justified) => Ok(ReviewState::Justified),
        Ok(pb::ReviewState::Unjustified) => Ok(ReviewState::Unjustified),
        _ => Err(format!("unknown review state {code}")),
    }
}

fn break_glass_to_pb(break_glass: &BreakGlass) -> pb::BreakGlass {
    pb::BreakGlass {
        incident: break_glass.incident.to_string(),
        review_group: break_glass.review_group.to_string(),
        review_within_ms: break_glass.review_within.into(),
        remind_every_ms: break_glass.remind_every.into(),
        escalate_to: break_glass
            .escalate_to
            .iter()
            .map(ToString::to_string)
            .collect(),
        revoke_on_unjustified: break_glass.revoke_on_unjustified,
        needed_approval: break_glass.needed_approval,
        review: break_glass.review.as_ref().map(|review| pb::Review {
            opened_at: millis(review.opened_at),
            due_at: millis(review.due_at),
            state: review_state_to_pb(review.state),
            overdue_since: review.overdue_since.map(millis),
            next_reminder_at: review.next_reminder_at.map(millis),
            reminders: review.reminders,
            verdict: review.verdict.as_ref().map(|verdict| pb::ReviewVerdict {
                reviewer: verdict.reviewer.to_string(),
                justified: verdict.justified,
                notes: verdict.notes.clone(),
                at: millis(verdict.at),
            }),
        }),
    }
}

fn break_glass_from_pb(break_glass: pb::BreakGlass) -> Result<BreakGlass, String> {
    let review = match break_glass.review {
        Some(review) => Some(Review {
            opened_at: at(review.opened_at),
            due_at: at(review.due_at),
            state: review_state_from_pb(review.state)?,
            overdue_since: review.overdue_since.map(at),
            next_reminder_at: review.next_reminder_at.map(at),
            reminders: review.reminders,
            verdict: match review.verdict {
                Some(verdict) => Some(ReviewVerdict {
                    reviewer: parse(verdict.reviewer)?,
                    justified: verdict.justified,
                    notes: verdict.notes,
                    at: at(verdict.at),
                }),
                None => None,
            },
        }),
        None => None,
    };
    Ok(BreakGlass {
        incident: parse(break_glass.incident)?,
        review_group: parse(break_glass.review_group)?,
        review_within: duration(break_glass.review_within_ms)?,
        remind_every: duration(break_glass.remind_every_ms)?,
        escalate_to: break_glass
            .escalate_to
            .into_iter()
            .map(parse)
            .collect::<Result<_, _>>()?,
        revoke_on_unjustified: break_glass.revoke_on_unjustified,
        needed_approval: break_glass.needed_approval,
        review,
    })
}

fn request_to_pb(request: &AccessRequest) -> pb::Request {
    pb::Request {
        id: request.id.raw(),
        requester: request.requester.to_string(),
        resource: request.resource.to_string(),
        reason: request.reason.as_ref().map(ToString::to_string),
        ticket: request.ticket.as_ref().map(ToString::to_string),
        duration_ms: request.duration.into(),
        created_at: millis(request.created_at),
        decide_by: millis(request.decide_by),
        route: request.route.stages.iter().map(stage_to_pb).collect(),
        policy_version: request.policy_version.clone(),
        provisioner: request.provisioner.clone(),
        extensions: request.extensions.iter().map(extension_to_pb).collect(),
        account: request.account.clone(),
        decisions: request.decisions.iter().map(decision_to_pb).collect(),
        state: Some(state_to_pb(&request.state)),
        approved_at: request.approved_at.map(millis),
        granted_at: request.granted_at.map(millis),
        expires_at: request.expires_at.map(millis),
        ended_at: request.ended_at.map(millis),
        end_reason: request.end_reason.clone(),
        break_glass: request.break_glass.as_ref().map(break_glass_to_pb),
        notices: Some(pb::Notices {
            approval_reminder_at: request.notices.approval_reminder_at.map(millis),
            expiring_at: request.notices.expiring_at.map(millis),
            review_due_at: request.notices.review_due_at.map(millis),
        }),
        flagged: request.flagged.clone(),
        ssh_key: request.ssh_key.as_ref().map(|key| key.as_str().to_owned()),
    }
}

fn request_from_pb(request: pb::Request) -> Result<AccessRequest, String> {
    let notices = request.notices.unwrap_or_default();
    Ok(AccessRequest {
        id: match request.id {
            0 => return Err("the request has no id".to_owned()),
            id => crate::model::RequestId::from_raw(id),
        },
        requester: parse(request.requester)?,
        resource: parse(request.resource)?,
        reason: parse_opt(request.reason)?,
        ticket: parse_opt(request.ticket)?,
        duration: duration(request.duration_ms)?,
        created_at: at(request.created_at),
        decide_by: at(request.decide_by),
        route: Route {
            stages: request
                .route
                .into_iter()
                .map(stage_from_pb)
                .collect::<Result<_, _>>()?,
        },
        policy_version: request.policy_version,
        provisioner: request.provisioner,
        extensions: request
            .extensions
            .into_iter()
            .map(extension_from_pb)
            .collect::<Result<_, _>>()?,
        account: request.account,
        decisions: request
            .decisions
            .into_iter()
            .map(decision_from_pb)
            .collect::<Result<_, _>>()?,
        state: state_from_pb(request.state)?,
        approved_at: request.approved_at.map(at),
        granted_at: request.granted_at.map(at),
        expires_at: request.expires_at.map(at),
        ended_at: request.ended_at.map(at),
        end_reason: request.end_reason,
        break_glass: request.break_glass.map(break_glass_from_pb).transpose()?,
        notices: Notices {
            approval_reminder_at: notices.approval_reminder_at.map(at),
            expiring_at: notices.expiring_at.map(at),
            review_due_at: notices.review_due_at.map(at),
        },
        flagged: request.flagged,
        ssh_key: parse_opt(request.ssh_key)?,
    })
}

/// Rewrites the record stored under a key of a table in this release's encoding: `None` when
/// it is current already, or cannot be read (then it is left as it was, with a warning: a
/// damaged request still fails to read, a damaged audit entry still fails verification).
pub(crate) type Upgrade = fn(&'static str, u64, &[u8]) -> Option<Vec<u8>>;

fn unreadable(table: &'static str, key: u64, why: impl std::fmt::Display) -> Option<Vec<u8>> {
    tracing::warn!(table, key, %why, "a record of the previous layout cannot be read; it is left as it is");
    None
}

/// A request record of any release, in this release's encoding (see [`Upgrade`]).
pub(crate) fn upgrade_request(table: &'static str, key: u64, bytes: &[u8]) -> Option<Vec<u8>> {
    if !is_json(bytes) {
        return None;
    }
    match json_decode::<AccessRequest>(table, bytes) {
        Ok(request) => Some(request.encode()),
        Err(error) => unreadable(table, key, error),
    }
}

/// An audit entry of any release, in this release's encoding (see [`Upgrade`]). The chain
/// hashes are kept exactly as stored, never recomputed: an entry altered before the upgrade
/// still fails verification after it.
pub(crate) fn upgrade_entry(table: &'static str, key: u64, bytes: &[u8]) -> Option<Vec<u8>> {
    if !is_json(bytes) {
        return None;
    }
    let event = match json_decode::<Event>(table, bytes) {
        Ok(event) => event,
        Err(error) => return unreadable(table, key, error),
    };
    let (Some(prev), Some(hash)) = (unhex32(&event.prev_hash), unhex32(&event.hash)) else {
        return unreadable(table, key, "a chain hash is not a SHA-256");
    };
    Some(entry_bytes(
        event.canonical(),
        prev.to_vec(),
        hash.to_vec(),
        event.actor == Actor::Scim,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Draft, GENESIS};

    /// A request with every optional part filled in.
    fn sample() -> AccessRequest {
        use crate::model::fixtures::{granted_break_glass, hours, p, t};
        let mut request = granted_break_glass();
        request.reason = Some(crate::model::Reason::parse("incident INC-1").unwrap());
        request.account = Some("oncall_rw".to_owned());
        request.flagged = Some("left the team".to_owned());
        request.end_reason = Some("none yet".to_owned());
        request.notices.expiring_at = Some(t(50));
        request.decisions.push(Decision {
            approver: p("manager"),
            verdict: Verdict::Approve,
            comment: Some("ok".to_owned()),
            at: t(2),
            stage: 0,
            void: Some("left".to_owned()),
        });
        let stage = RouteStage {
            name: "manager".to_owned(),
            quorum: 1,
            approvers: [p("manager")].into(),
        };
        request.route.stages.push(stage.clone());
        request.extensions.push(Extension {
            by: hours(1),
            reason: crate::model::Reason::parse("still fixing").unwrap(),
            asked_at: t(3),
            from: t(3601),
            stage: Some(stage),
            approvals: vec![(p("manager"), t(4))],
            state: ExtensionState::Denied {
                by: p("security"),
                reason: "no".to_owned(),
                at: t(5),
            },
        });
        if let Some(review) = request
            .break_glass
            .as_mut()
            .and_then(|glass| glass.review.as_mut())
        {
            review.state = ReviewState::Unjustified;
            review.overdue_since = Some(t(9));
            review.verdict = Some(ReviewVerdict {
                reviewer: p("security"),
                justified: false,
                notes: Some("not an incident".to_owned()),
                at: t(10),
            });
        }
        request.state = State::RevokeFailing {
            ending: Ending::Revoked,
            attempts: Attempts {
                count: 2,
                last_error: Some("timeout".to_owned()),
                retry_at: t(11),
            },
        };
        request
    }

    #[test]
    fn a_request_round_trips_through_its_binary_record() {
        let request = sample();
        let bytes = encode(&request);
        assert!(!is_json(&bytes));
        let back: AccessRequest = decode("requests", &bytes).unwrap();
        assert_eq!(back, request);
        // The binary record is smaller than the JSON of earlier releases.
        assert!(bytes.len() < json_encode(&request).len());
    }

    #[test]
    fn a_json_record_of_an_earlier_release_still_reads_and_upgrades() {
        let request = sample();
        let json = json_encode(&request);
        let read: AccessRequest = decode("requests", &json).unwrap();
        assert_eq!(read, request);
        let upgraded = upgrade_request("requests", 7, &json).unwrap();
        assert_eq!(
            decode::<AccessRequest>("requests", &upgraded).unwrap(),
            request
        );
        assert_eq!(upgrade_request("requests", 7, &upgraded), None);
        // A damaged record is left as it is.
        assert_eq!(upgrade_request("requests", 7, b"{not json"), None);
    }

    #[test]
    fn fields_added_later_read_as_their_defaults() {
        // A record as a release that knew only the first fields wrote it.
        let old = pb::Request {
            id: 7,
            requester: "alice".into(),
            resource: "prod-db".into(),
            duration_ms: 60_000,
            state: Some(state_to_pb(&State::Active)),
            ..Default::default()
        }
        .encode_to_vec();
        let request: AccessRequest = decode("requests", &old).unwrap();
        assert_eq!(request.account, None);
        assert_eq!(request.ssh_key, None);
        assert!(request.extensions.is_empty());
        assert_eq!(request.notices, Notices::default());
    }

    #[test]
    fn damage_is_reported_not_guessed() {
        let mut bytes = encode(&sample());
        bytes.truncate(bytes.len() / 2);
        assert!(matches!(
            decode::<AccessRequest>("requests", &bytes),
            Err(StoreError::Corrupt { .. })
        ));
        let bad_name = pb::Request {
            id: 1,
            requester: "not a name!".into(),
            duration_ms: 60_000,
            state: Some(state_to_pb(&State::Active)),
            ..Default::default()
        }
        .encode_to_vec();
        assert!(decode::<AccessRequest>("requests", &bad_name).is_err());
    }

    #[test]
    fn an_audit_entry_keeps_its_canonical_bytes_and_links() {
        let at = Timestamp::from_unix_millis(1_800_000_000_123);
        let mut draft = Draft::new(at, Actor::Scim, "directory.user.deactivated").detail("id", "x");
        draft.principal = Some("bob".parse().unwrap());
        let (event, head) = Event::chain(draft, 9, &GENESIS);
        let bytes = encode(&event);
        let link = link_of(9, bytes.clone().into());
        assert_eq!(link.seq, 9);
        assert_eq!(link.prev, GENESIS);
        assert_eq!(link.hash, head);
        assert!(link.intact);
        assert!(!link.stopped);
        let back: Event = decode("audit", &bytes).unwrap();
        assert_eq!(back, event);
        // The same entry as an earlier release stored it gives the same link.
        let json = json_encode(&event);
        let old = link_of(9, json.clone().into());
        assert_eq!((old.seq, old.hash, old.intact), (9, head, true));
        let upgraded = upgrade_entry("audit", 9, &json).unwrap();
        assert_eq!(upgraded, bytes);
        // One byte of the canonical content changed: the link no longer holds.
        let mut entry = pb::AuditEntry::decode(bytes.as_slice()).unwrap();
        let mut content = entry.content.to_vec();
        let at = content.len() - 3;
        content[at] ^= 1;
        entry.content = content.into();
        let tampered = link_of(9, entry.encode_to_vec().into());
        assert!(!tampered.intact);
        // Content not in the canonical form is altered, reported under its key.
        entry.content = bytes::Bytes::from_static(b"{\"at\":1,\"seq\":9}");
        let rewritten = link_of(9, entry.encode_to_vec().into());
        assert_eq!((rewritten.seq, rewritten.intact), (9, false));
    }

    #[test]
    fn an_entry_that_cannot_be_read_is_altered_under_its_key() {
        let at = Timestamp::from_unix_millis(1);
        let (event, _) = Event::chain(Draft::new(at, Actor::System, "x"), 4, &GENESIS);
        let mut short = pb::AuditEntry::decode(encode(&event).as_slice()).unwrap();
        short.hash = short.hash.slice(..31);
        let mut not_hex = event.clone();
        not_hex.hash = "zz".repeat(32);
        for bytes in [
            b"\x0a\xff\xff".to_vec(),
            b"{not json".to_vec(),
            short.encode_to_vec(),
            json_encode(&not_hex),
        ] {
            let link = link_of(4, bytes.into());
            assert_eq!((link.seq, link.intact), (4, false));
        }
        assert_eq!(upgrade_entry("audit", 4, &json_encode(&not_hex)), None);
    }

    #[test]
    fn a_principal_named_scim_stays_a_principal() {
        let at = Timestamp::from_unix_millis(1);
        let draft = Draft::new(at, Actor::Principal("scim".parse().unwrap()), "x");
        let (event, _) = Event::chain(draft, 1, &GENESIS);
        let back: Event = decode("audit", &encode(&event)).unwrap();
        assert_eq!(back.actor, event.actor);
        let (stop, _) = Event::chain(Draft::new(at, Actor::System, "daemon.stopped"), 2, &GENESIS);
        assert!(link_of(9, encode(&stop).into()).stopped);
    }

    #[test]
    fn the_stated_sequence_number_and_action_are_read_strictly() {
        let system = br#"{"seq":42,"at":1,"actor":null,"action":"daemon.stopped","x":1}"#;
        assert_eq!(stated(system), Some((42, b"daemon.stopped".as_slice())));
        let quoted = br#"{"seq":7,"at":1,"actor":"a\"b","action":"x"}"#;
        assert_eq!(stated(quoted), Some((7, b"x".as_slice())));
        for bad in [
            br#"{"seq":,"at":1,"actor":null,"action":"x"}"#.as_slice(),
            br#"{"at":1,"seq":42,"actor":null,"action":"x"}"#,
            br#"{"seq":42,"at":1,"action":"x"}"#,
            br#"{"seq":42,"at":1,"actor":null,"action":"x"#,
            br#"{"seq":42"#,
        ] {
            assert_eq!(stated(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
