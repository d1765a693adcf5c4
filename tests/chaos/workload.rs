//! Client tasks: several principals at once submit (auto-approved, routed, short), approve as
//! the right approvers (and now and then as the wrong ones), deny, cancel and release, and
//! record every acknowledged answer in the ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elevate::cli::client::{self, ClientFiles, Clients};
use elevate::proto::v1 as pb;
use tonic::Code;

use super::fixture::{Fixture, PEOPLE, REQUESTERS, RESOURCES, Resource};
use super::ledger::{Ledger, describe, state_of};
use super::rng::Rng;

/// One connection per person.
pub type Cast = BTreeMap<&'static str, Clients>;

pub async fn connect(fixture: &Fixture, endpoint: &str) -> Result<Cast, String> {
    let mut cast = Cast::new();
    for person in PEOPLE {
        let files = ClientFiles {
            ca: fixture.certs.join("ca.crt"),
            cert: fixture.certs.join(format!("{}.crt", person.name)),
            key: fixture.certs.join(format!("{}.key", person.name)),
        };
        let clients = client::connect(endpoint, &files)
            .await
            .map_err(|e| format!("{} cannot connect to {endpoint}: {e}", person.name))?;
        cast.insert(person.name, clients);
    }
    Ok(cast)
}

/// What the workers share.
pub struct Shared {
    pub cast: Cast,
    pub ledger: Arc<Mutex<Ledger>>,
    /// Violations seen in answers (a self-approval that was accepted).
    pub violations: Arc<Mutex<Vec<String>>>,
    pub stop: AtomicBool,
    pub run: usize,
}

/// Does operations until told to stop (the daemon is killed under it first).
pub async fn work(shared: Arc<Shared>, mut rng: Rng) {
    while !shared.stop.load(Ordering::SeqCst) {
        operate(&shared, &mut rng).await;
        tokio::time::sleep(Duration::from_millis(rng.range(0, 15))).await;
    }
}

/// An answer longer than this means a hung daemon; the kill comes long before.
const RPC_LIMIT: Duration = Duration::from_secs(30);

async fn call<T>(
    shared: &Shared,
    future: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Option<T> {
    shared.ledger.lock().unwrap().stats.sent += 1;
    let outcome = tokio::time::timeout(RPC_LIMIT, future).await;
    let mut ledger = shared.ledger.lock().unwrap();
    match outcome {
        Ok(Ok(response)) => Some(response.into_inner()),
        Ok(Err(status)) => {
            match status.code() {
                Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal => {
                    ledger.stats.cut += 1;
                }
                code => {
                    ledger.stats.refused += 1;
                    *ledger
                        .stats
                        .refusals
                        .entry(format!("{code:?}"))
                        .or_default() += 1;
                }
            }
            None
        }
        Err(_) => {
            ledger.stats.cut += 1;
            None
        }
    }
}

async fn operate(shared: &Shared, rng: &mut Rng) {
    let roll = rng.range(0, 100);
    let pending = shared
        .ledger
        .lock()
        .unwrap()
        .in_state(pb::RequestState::Pending);
    if pending.is_empty() || !(35..78).contains(&roll) {
        return if roll < 78 {
            submit(shared, rng).await
        } else {
            release(shared, rng).await
        };
    }
    let request = rng.pick(&pending).clone();
    match roll {
        35..60 => approve(shared, rng, request).await,
        60..65 => wrong_approval(shared, rng, request).await,
        65..71 => deny(shared, rng, request).await,
        _ => cancel_one(shared, &request).await,
    }
}

async fn submit(shared: &Shared, rng: &mut Rng) {
    let chosen = {
        let ledger = shared.ledger.lock().unwrap();
        let free: Vec<(&str, &Resource)> = REQUESTERS
            .iter()
            .flat_map(|requester| {
                let open = ledger.open_resources(requester);
                RESOURCES
                    .iter()
                    .filter(move |r| !open.contains(r.name))
                    .map(move |r| (*requester, r))
            })
            .collect();
        if free.is_empty() && !rng.chance(10) {
            None
        } else if free.is_empty() || rng.chance(5) {
            // A resource the requester may have open: refused, and nothing may change.
            Some((*rng.pick(&REQUESTERS), rng.pick(RESOURCES)))
        } else {
            Some(*rng.pick(&free))
        }
    };
    let Some((requester, resource)) = chosen else {
        return make_room(shared, rng).await;
    };
    let pair = (requester.to_owned(), resource.name.to_owned());
    shared.ledger.lock().unwrap().busy.insert(pair.clone());
    let mut access = shared.cast[requester].access.clone();
    let answer = call(
        shared,
        access.submit_request(pb::SubmitRequestRequest {
            ssh_key: String::new(),
            resource: resource.name.to_owned(),
            duration: (*rng.pick(resource.durations)).to_owned(),
            reason: "chaos".to_owned(),
            ticket: String::new(),
        }),
    )
    .await;
    let mut ledger = shared.ledger.lock().unwrap();
    ledger.busy.remove(&pair);
    if let Some(request) = answer.and_then(|a| a.request) {
        ledger.acknowledged(shared.run, "submit", &request);
    }
}

/// Every requester has every resource open: release a lease or withdraw a request.
async fn make_room(shared: &Shared, rng: &mut Rng) {
    let (active, pending) = {
        let ledger = shared.ledger.lock().unwrap();
        (
            ledger.in_state(pb::RequestState::Active),
            ledger.in_state(pb::RequestState::Pending),
        )
    };
    if !active.is_empty() && (pending.is_empty() || rng.chance(50)) {
        release_one(shared, rng.pick(&active)).await;
    } else if !pending.is_empty() {
        cancel_one(shared, rng.pick(&pending)).await;
    }
}

/// Approvers of `request`'s current stage whose approval would count.
fn open_approvers(request: &pb::AccessRequest) -> Vec<String> {
    let counted: BTreeSet<&str> = request
        .decisions
        .iter()
        .filter(|d| d.void.is_empty())
        .map(|d| d.approver.as_str())
        .collect();
    request
        .route
        .get(request.current_stage as usize)
        .map(|stage| {
            stage
                .approvers
                .iter()
                .filter(|a| !counted.contains(a.as_str()) && **a != request.requester)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

async fn approve(shared: &Shared, rng: &mut Rng, request: pb::AccessRequest) {
    let approvers = open_approvers(&request);
    if approvers.is_empty() {
        return;
    }
    let approver = rng.pick(&approvers).clone();
    send_approval(shared, &request, &approver).await;
}

/// Approvals the daemon must refuse or not count: the requester's own, someone outside the
/// current stage, someone who approved an earlier stage already.
async fn wrong_approval(shared: &Shared, rng: &mut Rng, request: pb::AccessRequest) {
    let stage: BTreeSet<&str> = request
        .route
        .get(request.current_stage as usize)
        .map(|s| s.approvers.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let earlier: Vec<String> = request
        .decisions
        .iter()
        .filter(|d| d.void.is_empty() && d.stage < request.current_stage)
        .map(|d| d.approver.clone())
        .collect();
    let outsiders: Vec<&str> = PEOPLE
        .iter()
        .map(|p| p.name)
        .filter(|name| !stage.contains(name) && *name != request.requester)
        .collect();
    let approver = match rng.range(0, 3) {
        0 => request.requester.clone(),
        1 if !earlier.is_empty() => rng.pick(&earlier).clone(),
        _ => (*rng.pick(&outsiders)).to_owned(),
    };
    let answer = send_approval(shared, &request, &approver).await;
    if approver == request.requester && answer.is_some() {
        shared.violations.lock().unwrap().push(format!(
            "{} approved their own request {} and the daemon acknowledged it",
            approver, request.id
        ));
    }
}

async fn send_approval(
    shared: &Shared,
    request: &pb::AccessRequest,
    approver: &str,
) -> Option<pb::AccessRequest> {
    shared
        .ledger
        .lock()
        .unwrap()
        .sent_approvals
        .insert((request.id.clone(), approver.to_owned()));
    let mut approval = shared.cast.get(approver)?.approval.clone();
    let answer = call(
        shared,
        approval.approve(pb::ApproveRequest {
            id: request.id.clone(),
            comment: "chaos".to_owned(),
        }),
    )
    .await?
    .request?;
    let mut ledger = shared.ledger.lock().unwrap();
    ledger.acknowledged(shared.run, "approve", &answer);
    let decision = answer
        .decisions
        .iter()
        .find(|d| d.approver == approver && d.decision == "approve" && d.void.is_empty());
    match decision {
        Some(decision) => ledger.acks.push(super::ledger::Ack::Approval {
            run: shared.run,
            id: answer.id.clone(),
            approver: approver.to_owned(),
            stage: decision.stage,
        }),
        None => shared.violations.lock().unwrap().push(format!(
            "the approval of {} by {approver} was acknowledged, but the answer ({}) does not count it",
            answer.id,
            describe(&answer)
        )),
    }
    Some(answer)
}

async fn deny(shared: &Shared, rng: &mut Rng, request: pb::AccessRequest) {
    let approvers = open_approvers(&request);
    if approvers.is_empty() {
        return;
    }
    let approver = rng.pick(&approvers).clone();
    shared
        .ledger
        .lock()
        .unwrap()
        .sent_denials
        .insert((request.id.clone(), approver.clone()));
    let mut approval = shared.cast[approver.as_str()].approval.clone();
    let answer = call(
        shared,
        approval.deny(pb::DenyRequest {
            id: request.id.clone(),
            reason: "chaos says no".to_owned(),
        }),
    )
    .await;
    if let Some(answer) = answer.and_then(|a| a.request) {
        let mut ledger = shared.ledger.lock().unwrap();
        ledger.acknowledged(shared.run, "deny", &answer);
        if state_of(&answer) == pb::RequestState::Denied {
            ledger.acks.push(super::ledger::Ack::Denial {
                run: shared.run,
                id: answer.id.clone(),
                approver,
            });
        }
    }
}

async fn release(shared: &Shared, rng: &mut Rng) {
    let active = shared
        .ledger
        .lock()
        .unwrap()
        .in_state(pb::RequestState::Active);
    if active.is_empty() {
        return submit(shared, rng).await;
    }
    let request = rng.pick(&active).clone();
    // Short leases are mostly left to expire: expiry, above all across a restart, is what
    // they are for.
    let short = request
        .expires_at_ms
        .is_some_and(|expires| expires < super::daemon::now_ms() + 60_000);
    if short && !rng.chance(20) {
        return submit(shared, rng).await;
    }
    release_one(shared, &request).await;
}

/// The holder releases `request`; also used to end everything at the end of the run.
pub async fn release_one(shared: &Shared, request: &pb::AccessRequest) {
    by_requester(shared, request, "release").await;
}

/// The requester withdraws `request`; also used to end everything at the end of the run.
pub async fn cancel_one(shared: &Shared, request: &pb::AccessRequest) {
    by_requester(shared, request, "cancel").await;
}

/// `request`'s requester releases it (`what` = "release") or withdraws it ("cancel"), and the
/// answer, when acknowledged, goes into the ledger.
async fn by_requester(shared: &Shared, request: &pb::AccessRequest, what: &'static str) {
    let Some(clients) = shared.cast.get(request.requester.as_str()) else {
        return;
    };
    let mut access = clients.access.clone();
    let id = request.id.clone();
    let answer = if what == "release" {
        call(shared, access.release_lease(pb::ReleaseLeaseRequest { id }))
            .await
            .and_then(|a| a.request)
    } else {
        call(
            shared,
            access.cancel_request(pb::CancelRequestRequest { id }),
        )
        .await
        .and_then(|a| a.request)
    };
    if let Some(answer) = answer {
        shared
            .ledger
            .lock()
            .unwrap()
            .acknowledged(shared.run, what, &answer);
    }
}
