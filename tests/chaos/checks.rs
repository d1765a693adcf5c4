//! The invariants, checked against the daemon's own answers (every request, listed by an
//! auditor) and against the targets themselves, after every restart and at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use elevate::proto::v1 as pb;

use super::daemon::now_ms;
use super::fixture::{Fixture, Grant, Target, resource};
use super::ledger::{Ack, Ledger, describe, is_live, number, reachable, state_of, word};
use super::workload::Cast;

/// How long a grant with no live lease may stay on a target before it is a violation. Nothing
/// in the daemon may leave one at all (a lease is ended only once the target confirmed the
/// revoke), so this only covers the listing and the target being read at different moments:
/// one revoke attempt (at most the hook's 1.5 s timeout, after the calls queued before it on
/// the same resource) plus a retry (`retry_max` is 1 s).
pub const RETRY_WINDOW: Duration = Duration::from_secs(5);

/// How long after its expiry a lease may still show `active` while the daemon serves: the
/// timer fires at the expiry, but the revoke queues behind the other calls on the same
/// resource (hook calls are serialized per resource, each up to the 1.5 s timeout), and a
/// failed attempt shows `revoke_failing` (still holding access, as designed) only once it
/// returned. With at most eight live leases per fault resource that is bounded by about 12 s.
/// After a restart there is no slack: recovery revokes overdue leases before it serves.
pub const EXPIRY_SLACK_MS: i64 = 15_000;

/// Every request the daemon knows, as one auditor listing.
pub struct Snapshot {
    /// When the listing began: the daemon read its state after this.
    pub at_ms: i64,
    pub requests: BTreeMap<u64, pb::AccessRequest>,
}

pub async fn snapshot(cast: &Cast) -> Result<Snapshot, String> {
    let mut access = cast[super::fixture::AUDITOR].access.clone();
    let at_ms = now_ms();
    let mut requests = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = tokio::time::timeout(
            Duration::from_secs(30),
            access.list_requests(pb::ListRequestsRequest {
                state: 0,
                all: true,
                limit: 1000,
                page_token: page_token.clone(),
            }),
        )
        .await
        .map_err(|_| "listing the requests took over 30 s".to_owned())?
        .map_err(|status| format!("listing the requests failed: {status}"))?
        .into_inner();
        for request in page.requests {
            requests.insert(number(&request.id), request);
        }
        if page.next_page_token.is_empty() {
            return Ok(Snapshot { at_ms, requests });
        }
        page_token = page.next_page_token;
    }
}

/// Violations, each reported once when first seen, and how many checks were made.
#[derive(Default)]
pub struct Findings {
    keys: BTreeSet<String>,
    pub violations: Vec<String>,
    /// Checks of one transition or lease against the daemon or a target.
    pub checked: u64,
}

fn stray_key(grant: &Grant) -> String {
    format!("stray {grant}")
}

impl Findings {
    /// Whether a violation with `key` was reported already.
    pub fn known(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    pub fn violation(&mut self, run: usize, key: String, message: String) {
        if self.keys.insert(key) {
            let message = format!("run {run}: {message}");
            println!("chaos: VIOLATION {message}");
            self.violations.push(message);
        }
    }
}

/// The grant `request` holds (or held) on its target.
pub fn grant_of(request: &pb::AccessRequest) -> Option<Grant> {
    let resource = resource(&request.resource)?;
    let account = if request.account.is_empty() {
        request.requester.clone()
    } else {
        request.account.clone()
    };
    Some(Grant {
        resource: resource.name.to_owned(),
        account,
        lease: (resource.target == Target::Fault).then(|| request.id.clone()),
    })
}

/// Every acknowledged answer still holds: the request exists, is in the acknowledged state or
/// one reachable from it, keeps its expiry, and acknowledged approvals and denials are recorded.
pub fn acknowledgements(ledger: &Ledger, snapshot: &Snapshot, run: usize, found: &mut Findings) {
    for (index, ack) in ledger.acks.iter().enumerate() {
        found.checked += 1;
        let key = format!("ack {index}");
        match ack {
            Ack::State {
                run: acked_in,
                rpc,
                id,
                requester,
                resource,
                state,
                stage,
                expires_at,
            } => {
                let what = format!("{rpc} of {id} answered {} in run {acked_in}", word(*state));
                let Some(now) = snapshot.requests.get(&number(id)) else {
                    found.violation(run, key, format!("{what}, but the daemon lost {id}"));
                    continue;
                };
                if now.requester != *requester || now.resource != *resource {
                    found.violation(
                        run,
                        key,
                        format!(
                            "{what} for {requester} on {resource}, but the daemon has {}",
                            describe(now)
                        ),
                    );
                } else if !reachable(*state, *stage, state_of(now), now.current_stage) {
                    found.violation(
                        run,
                        key,
                        format!(
                            "{what} (stage {stage}), but the daemon went back to {}",
                            describe(now)
                        ),
                    );
                } else if expires_at.is_some() && now.expires_at_ms != *expires_at {
                    found.violation(
                        run,
                        key,
                        format!(
                            "{what} with expires_at {:?}, but the daemon now has {}",
                            expires_at,
                            describe(now)
                        ),
                    );
                }
            }
            Ack::Approval {
                run: acked_in,
                id,
                approver,
                stage,
            } => {
                let recorded = snapshot.requests.get(&number(id)).is_some_and(|now| {
                    now.decisions.iter().any(|d| {
                        d.approver == *approver
                            && d.decision == "approve"
                            && d.stage == *stage
                            && d.void.is_empty()
                    })
                });
                if !recorded {
                    let now = snapshot
                        .requests
                        .get(&number(id))
                        .map_or_else(|| "nothing".to_owned(), describe);
                    found.violation(
                        run,
                        key,
                        format!(
                            "{approver}'s approval of {id} at stage {stage} was acknowledged in run {acked_in}, but the daemon has {now}"
                        ),
                    );
                }
            }
            Ack::Denial {
                run: acked_in,
                id,
                approver,
            } => {
                let recorded = snapshot.requests.get(&number(id)).is_some_and(|now| {
                    state_of(now) == pb::RequestState::Denied
                        && now
                            .decisions
                            .iter()
                            .any(|d| d.approver == *approver && d.decision == "deny")
                });
                if !recorded {
                    let now = snapshot
                        .requests
                        .get(&number(id))
                        .map_or_else(|| "nothing".to_owned(), describe);
                    found.violation(
                        run,
                        key,
                        format!(
                            "{approver}'s denial of {id} was acknowledged in run {acked_in}, but the daemon has {now}"
                        ),
                    );
                }
            }
        }
    }
}

/// Whether the request got past its approvals (and may have been granted).
fn approved(request: &pb::AccessRequest) -> bool {
    use pb::RequestState as S;
    request.approved_at_ms.is_some()
        || request.granted_at_ms.is_some()
        || matches!(
            state_of(request),
            S::Approved | S::Active | S::Expired | S::Released | S::Revoked | S::RevokeFailing
        )
}

/// Each request on its own: the route the policy demands was stored; every counted approval
/// was sent by the harness, comes from an approver of its stage, not the requester, one person
/// once; anything approved has every stage's quorum; states that nothing in this run can cause
/// do not occur; leases end on time, and none outlived a restart's recovery.
pub fn requests(
    ledger: &Ledger,
    snapshot: &Snapshot,
    recovered_before: Option<i64>,
    run: usize,
    found: &mut Findings,
) {
    use pb::RequestState as S;
    for request in snapshot.requests.values() {
        found.checked += 1;
        let id = &request.id;
        let state = state_of(request);
        let Some(resource) = resource(&request.resource) else {
            found.violation(
                run,
                format!("resource {id}"),
                format!(
                    "{} is on a resource the policy does not have",
                    describe(request)
                ),
            );
            continue;
        };
        let expected = resource.route_for(&request.requester);
        let stored: Vec<(u32, BTreeSet<String>)> = request
            .route
            .iter()
            .map(|s| (s.quorum, s.approvers.iter().cloned().collect()))
            .collect();
        if stored != expected {
            found.violation(
                run,
                format!("route {id}"),
                format!(
                    "{} was stored with the route {stored:?}; the policy demands {expected:?}",
                    describe(request)
                ),
            );
        }
        let mut counted: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for decision in &request.decisions {
            let who = decision.approver.as_str();
            let key = format!("decision {id} {who} {}", decision.decision);
            if who == request.requester {
                found.violation(
                    run,
                    key.clone(),
                    format!("{} records a decision by its requester", describe(request)),
                );
            }
            let sent = match decision.decision.as_str() {
                "approve" => &ledger.sent_approvals,
                _ => &ledger.sent_denials,
            };
            if !sent.contains(&(id.clone(), who.to_owned())) {
                found.violation(
                    run,
                    key.clone(),
                    format!(
                        "{} records a {} by {who} that the harness never sent",
                        describe(request),
                        decision.decision
                    ),
                );
            }
            if decision.decision == "approve" && decision.void.is_empty() {
                counted.entry(who).or_default().push(decision.stage);
                let eligible = expected
                    .get(decision.stage as usize)
                    .is_some_and(|(_, approvers)| approvers.contains(who));
                if !eligible {
                    found.violation(
                        run,
                        key,
                        format!(
                            "{} counts {who}'s approval at stage {}, where {who} is no approver",
                            describe(request),
                            decision.stage
                        ),
                    );
                }
            }
        }
        for (who, stages) in &counted {
            if stages.len() > 1 {
                found.violation(
                    run,
                    format!("twice {id} {who}"),
                    format!(
                        "{} counts {who} {} times (stages {stages:?})",
                        describe(request),
                        stages.len()
                    ),
                );
            }
        }
        // Stages that must have their quorum: all of them once approved, the ones before the
        // current stage while pending.
        let passed = if approved(request) {
            expected.len()
        } else if state == S::Pending {
            request.current_stage as usize
        } else {
            0
        };
        for (index, (quorum, _)) in expected.iter().enumerate().take(passed) {
            let have = counted
                .values()
                .filter(|stages| stages.contains(&(index as u32)))
                .count();
            if have < *quorum as usize {
                found.violation(
                    run,
                    format!("quorum {id} {index}"),
                    format!(
                        "{} passed stage {index} with {have} of the {quorum} approvals it needs",
                        describe(request)
                    ),
                );
            }
        }
        if expected.is_empty() && matches!(state, S::Pending | S::Denied | S::TimedOut) {
            found.violation(
                run,
                format!("auto {id}"),
                format!("{} on an auto-approved resource", describe(request)),
            );
        }
        if state == S::Denied
            && !request
                .decisions
                .iter()
                .any(|d| d.decision == "deny" && d.approver != request.requester)
        {
            found.violation(
                run,
                format!("denied {id}"),
                format!("{} is denied without a denial", describe(request)),
            );
        }
        // Revocation is for administrators, offboardings and policy changes: none in this run.
        if state == S::Revoked {
            found.violation(
                run,
                format!("revoked {id}"),
                format!(
                    "{} ended revoked, though nobody revoked anything in this run",
                    describe(request)
                ),
            );
        }
        // The file target never fails a grant; only the hook does.
        if resource.target == Target::File && state == S::Failed {
            found.violation(
                run,
                format!("failed {id}"),
                format!(
                    "{} failed on the file target, which never fails",
                    describe(request)
                ),
            );
        }
        lease_times(request, snapshot, recovered_before, run, found);
    }
}

fn lease_times(
    request: &pb::AccessRequest,
    snapshot: &Snapshot,
    recovered_before: Option<i64>,
    run: usize,
    found: &mut Findings,
) {
    use pb::RequestState as S;
    let id = &request.id;
    let state = state_of(request);
    if let (Some(granted), Some(expires)) = (request.granted_at_ms, request.expires_at_ms) {
        let duration = humantime::parse_duration(&request.duration)
            .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(-1));
        if expires - granted != duration {
            found.violation(
                run,
                format!("length {id}"),
                format!(
                    "{} was granted at {granted} for {} but expires at {expires}",
                    describe(request),
                    request.duration
                ),
            );
        }
        if state == S::Expired && request.ended_at_ms.is_some_and(|ended| ended < expires) {
            found.violation(
                run,
                format!("early {id}"),
                format!("{} expired before its time", describe(request)),
            );
        }
    }
    if state != S::Active {
        return;
    }
    let Some(expires) = request.expires_at_ms else {
        found.violation(
            run,
            format!("no expiry {id}"),
            format!("{} is active without an expiry", describe(request)),
        );
        return;
    };
    if let Some(restart) = recovered_before.filter(|restart| expires <= *restart) {
        found.violation(
            run,
            format!("overdue {id}"),
            format!(
                "{} expired before the daemon was restarted (at {restart}) but is still active after recovery",
                describe(request)
            ),
        );
    } else if expires + EXPIRY_SLACK_MS < snapshot.at_ms {
        found.violation(
            run,
            format!("outlived {id}"),
            format!(
                "{} is still active {} ms after its expiry",
                describe(request),
                snapshot.at_ms - expires
            ),
        );
    }
}

/// No target grants anything without a live lease (active, approved with its grant in
/// progress, or `revoke_failing`): every lease the daemon reports ended, expired and revoked
/// included, is gone from its target. Polls for [`RETRY_WINDOW`] before calling a grant a
/// stray. Returns the last listing.
pub async fn targets(
    fixture: &Fixture,
    cast: &Cast,
    first: Snapshot,
    run: usize,
    found: &mut Findings,
) -> Result<Snapshot, String> {
    let started = Instant::now();
    let mut snapshot = first;
    loop {
        // Read after the listing: a grant made since belongs to a lease that was live in it.
        let grants = fixture.grants();
        let live: BTreeSet<Grant> = snapshot
            .requests
            .values()
            .filter(|r| is_live(state_of(r)))
            .filter_map(grant_of)
            .collect();
        let strays: Vec<&Grant> = grants.iter().filter(|g| !live.contains(g)).collect();
        // A stray reported before stays one (nothing removes it): waiting for it again would
        // only slow every later check down.
        let new = strays.iter().any(|g| !found.known(&stray_key(g)));
        if !new || started.elapsed() >= RETRY_WINDOW {
            found.checked += grants.len() as u64
                + snapshot
                    .requests
                    .values()
                    .filter(|r| r.granted_at_ms.is_some() && !is_live(state_of(r)))
                    .count() as u64;
            for stray in strays {
                let leases: Vec<String> = snapshot
                    .requests
                    .values()
                    .filter(|r| {
                        grant_of(r).is_some_and(|g| {
                            g.resource == stray.resource && g.account == stray.account
                        })
                    })
                    .filter(|r| stray.lease.as_ref().is_none_or(|lease| *lease == r.id))
                    .map(describe)
                    .collect();
                let calls = stray
                    .lease
                    .as_ref()
                    .map(|lease| fixture.hook_calls(lease))
                    .unwrap_or_default();
                let mut hook = String::new();
                if !calls.is_empty() {
                    hook = format!("; hook calls, as they finished: {calls:?}");
                }
                if calls.iter().any(|c| {
                    c.contains(" grant ") && c.contains(": applied") && c.ends_with(" orphaned")
                }) {
                    hook.push_str(
                        "; a grant call of a killed daemon outlived it (hooks run in process groups of their own) and applied after the restart",
                    );
                }
                found.violation(
                    run,
                    stray_key(stray),
                    format!(
                        "the target grants {stray} for {:?} with no live lease; the daemon has [{}]{hook}",
                        started.elapsed(),
                        leases.join("; ")
                    ),
                );
            }
            return Ok(snapshot);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        snapshot = super::checks::snapshot(cast).await?;
    }
}

/// Everything after a restart or at the end; returns the listing for the workers' view.
pub async fn all(
    fixture: &Fixture,
    cast: &Cast,
    ledger: &Ledger,
    recovered_before: Option<i64>,
    run: usize,
    found: &mut Findings,
) -> Result<Snapshot, String> {
    let first = snapshot(cast).await?;
    acknowledgements(ledger, &first, run, found);
    requests(ledger, &first, recovered_before, run, found);
    targets(fixture, cast, first, run, found).await
}
