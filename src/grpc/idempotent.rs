//! Idempotency keys at the edge: a call that changes something may carry an `idempotency-key`
//! header (the CLI sends one with every such call). The call runs with the key in force (see
//! [`crate::store::idempotency`]); when the key was claimed already by the same caller, method
//! and arguments, the call changes nothing and answers with what the first call changed (the
//! request, as it stands now). The same key with another caller, method or arguments is
//! refused: a key names one call.

use std::future::Future;

use tonic::{Request, Status};

use super::status::from_broker;
use crate::broker::{Broker, BrokerError, Caller};
use crate::model::{AccessRequest, RequestId};
use crate::store::StoreError;
use crate::store::idempotency::{self, Claim};

/// The header carrying the key.
pub const HEADER: &str = "idempotency-key";

/// Longest key accepted.
const MAX_KEY: usize = 128;

/// What a keyed call came to.
pub(super) enum Once<T> {
    /// It ran: its own answer.
    First(T),
    /// Its key was claimed by the same call before: nothing was done again; the request the
    /// first call changed, if it was about one.
    Again(Option<RequestId>),
}

/// The claim `request` makes for `method` by `caller`, when it carries a key.
pub(super) fn claim<T: prost::Message>(
    broker: &Broker,
    caller: &Caller,
    method: &str,
    request: &Request<T>,
) -> Result<Option<Claim>, Status> {
    let Some(value) = request.metadata().get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| {
            (1..=MAX_KEY).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "{HEADER}: expected 1 to {MAX_KEY} characters of letters, digits, '-', '_', \
                 '.' or ':'"
            ))
        })?;
    let mut arguments = method.as_bytes().to_vec();
    arguments.push(b'\n');
    request.get_ref().encode(&mut arguments).map_err(|error| {
        Status::invalid_argument(format!(
            "the call's arguments could not be encoded: {error}"
        ))
    })?;
    Ok(Some(Claim {
        key: key.to_owned(),
        principal: caller.principal.clone(),
        method: method.to_owned(),
        digest: crate::hash::content_version(&arguments),
        request: None,
        at: broker.now(),
    }))
}

/// Runs `call` with `claim` (if any) in force.
pub(super) async fn once<T>(
    broker: &Broker,
    claim: Option<Claim>,
    call: impl Future<Output = Result<T, BrokerError>>,
) -> Result<Once<T>, Status> {
    let Some(claim) = claim else {
        return call.await.map(Once::First).map_err(from_broker);
    };
    // Looked up first, so that a repeat (or a misused key) reaches no target: a revoke, say,
    // calls the target before its first write.
    if let Some(first) = broker.claimed(&claim.key).await.map_err(from_broker)? {
        return again(&claim, &first);
    }
    // Claimed inside the call's first write, which also refuses a key claimed meanwhile.
    match idempotency::keyed(claim.clone(), call).await {
        Ok(answer) => Ok(Once::First(answer)),
        Err(BrokerError::Store(StoreError::Replayed(first))) => again(&claim, &first),
        // Refused before it came to write (the state moved on since the first call, say):
        // still the first call's outcome if the key was claimed.
        Err(error) => match broker.claimed(&claim.key).await.map_err(from_broker)? {
            Some(first) => again(&claim, &first),
            None => Err(from_broker(error)),
        },
    }
}

/// The answer to a call whose key `first` claimed.
fn again<T>(claim: &Claim, first: &Claim) -> Result<Once<T>, Status> {
    if claim.same_call(first) {
        tracing::info!(key = %claim.key, principal = %claim.principal, method = %claim.method, "call repeated with its idempotency key: answered with its first outcome");
        return Ok(Once::Again(first.request));
    }
    Err(Status::invalid_argument(format!(
        "{HEADER} '{}' was used for another call (another caller, method or arguments); \
         use a new key for a new call",
        claim.key
    )))
}

impl Once<AccessRequest> {
    /// The request the call changed: its own answer, or the request the first call changed,
    /// as it stands now.
    pub(super) async fn request(
        self,
        broker: &Broker,
        caller: &Caller,
    ) -> Result<AccessRequest, Status> {
        match self {
            Once::First(request) => Ok(request),
            Once::Again(Some(id)) => broker.request(caller, id).await.map_err(from_broker),
            Once::Again(None) => Err(Status::internal(
                "the first call with this idempotency key changed no request",
            )),
        }
    }
}
