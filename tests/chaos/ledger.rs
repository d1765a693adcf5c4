//! What the harness sent and what the daemon acknowledged. An answer that reached the harness
//! is an acknowledgement: the daemon must never forget or undo it, whatever is killed after.

use std::collections::{BTreeMap, BTreeSet};

use elevate::proto::v1 as pb;

/// The number of `req-N`.
pub fn number(id: &str) -> u64 {
    id.strip_prefix("req-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

pub fn state_of(request: &pb::AccessRequest) -> pb::RequestState {
    pb::RequestState::try_from(request.state).unwrap_or(pb::RequestState::Unspecified)
}

pub fn word(state: pb::RequestState) -> &'static str {
    elevate::cli::output::state_word(state as i32)
}

/// One acknowledged answer.
#[derive(Clone, Debug)]
pub enum Ack {
    /// An RPC answered with the request in `state` (at `stage` when pending).
    State {
        run: usize,
        rpc: &'static str,
        id: String,
        requester: String,
        resource: String,
        state: pb::RequestState,
        stage: u32,
        expires_at: Option<i64>,
    },
    /// `approver`'s approval at `stage` was acknowledged.
    Approval {
        run: usize,
        id: String,
        approver: String,
        stage: u32,
    },
    /// `approver`'s denial was acknowledged.
    Denial {
        run: usize,
        id: String,
        approver: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub sent: u64,
    pub acknowledged: u64,
    pub refused: u64,
    /// Refusals by gRPC code.
    pub refusals: BTreeMap<String, u64>,
    /// Calls cut off by a kill (transport errors).
    pub cut: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub acks: Vec<Ack>,
    /// (request id, approver) of every approval sent, acknowledged or not: a kill may cut the
    /// answer to an approval the daemon committed.
    pub sent_approvals: BTreeSet<(String, String)>,
    /// (request id, approver) of every denial sent.
    pub sent_denials: BTreeSet<(String, String)>,
    /// The latest state the harness knows of each request (from answers and the checks'
    /// listings), to choose what to do next. Not evidence of anything.
    pub view: BTreeMap<u64, pb::AccessRequest>,
    /// (requester, resource) of submissions waiting for their answer.
    pub busy: BTreeSet<(String, String)>,
    pub stats: Stats,
}

impl Ledger {
    pub fn saw(&mut self, request: &pb::AccessRequest) {
        self.view.insert(number(&request.id), request.clone());
    }

    /// Records an answer carrying `request`.
    pub fn acknowledged(&mut self, run: usize, rpc: &'static str, request: &pb::AccessRequest) {
        self.stats.acknowledged += 1;
        self.acks.push(Ack::State {
            run,
            rpc,
            id: request.id.clone(),
            requester: request.requester.clone(),
            resource: request.resource.clone(),
            state: state_of(request),
            stage: request.current_stage,
            expires_at: request.expires_at_ms,
        });
        self.saw(request);
    }

    /// Requests the harness last saw in `state`.
    pub fn in_state(&self, state: pb::RequestState) -> Vec<pb::AccessRequest> {
        self.view
            .values()
            .filter(|r| state_of(r) == state)
            .cloned()
            .collect()
    }

    /// Resources `requester` may hold an open request for, as far as the harness knows.
    pub fn open_resources(&self, requester: &str) -> BTreeSet<String> {
        self.view
            .values()
            .filter(|r| r.requester == requester && is_open(state_of(r)))
            .map(|r| r.resource.clone())
            .chain(
                self.busy
                    .iter()
                    .filter(|(who, _)| who == requester)
                    .map(|(_, resource)| resource.clone()),
            )
            .collect()
    }

    /// Replaces the view with a complete listing (no call is in flight then).
    pub fn refresh(&mut self, requests: BTreeMap<u64, pb::AccessRequest>) {
        self.view = requests;
        self.busy.clear();
    }
}

/// Pending, or holding (or about to hold, or still holding) access.
pub fn is_open(state: pb::RequestState) -> bool {
    use pb::RequestState as S;
    matches!(
        state,
        S::Pending | S::Approved | S::Active | S::RevokeFailing
    )
}

/// Holding access on the target, or about to, or still: a grant of such a lease is no stray.
pub fn is_live(state: pb::RequestState) -> bool {
    use pb::RequestState as S;
    matches!(state, S::Approved | S::Active | S::RevokeFailing)
}

/// Whether a request now in `now` (at `now_stage`) can have been in `acked` (at `acked_stage`)
/// earlier: the same state or one the state machine reaches from it.
pub fn reachable(
    acked: pb::RequestState,
    acked_stage: u32,
    now: pb::RequestState,
    now_stage: u32,
) -> bool {
    use pb::RequestState as S;
    match acked {
        S::Pending => now != S::Pending || now_stage >= acked_stage,
        S::Approved => matches!(
            now,
            S::Approved
                | S::Active
                | S::Expired
                | S::Released
                | S::Revoked
                | S::RevokeFailing
                | S::Failed
        ),
        S::Active => matches!(
            now,
            S::Active | S::Expired | S::Released | S::Revoked | S::RevokeFailing
        ),
        S::RevokeFailing => matches!(
            now,
            S::RevokeFailing | S::Expired | S::Released | S::Revoked | S::Failed
        ),
        S::Denied
        | S::Cancelled
        | S::TimedOut
        | S::Expired
        | S::Released
        | S::Revoked
        | S::Failed => now == acked,
        S::Unspecified => false,
    }
}

/// A request in one line, for reports.
pub fn describe(request: &pb::AccessRequest) -> String {
    let state = word(state_of(request));
    let mut text = format!(
        "{} {} of {} on {}",
        request.id, state, request.requester, request.resource
    );
    if state_of(request) == pb::RequestState::Pending {
        text.push_str(&format!(" at stage {}", request.current_stage));
    }
    if let Some(expires) = request.expires_at_ms {
        text.push_str(&format!(", expires_at {expires}"));
    }
    if let Some(ended) = request.ended_at_ms {
        text.push_str(&format!(", ended_at {ended}"));
    }
    if !request.decisions.is_empty() {
        let decisions: Vec<String> = request
            .decisions
            .iter()
            .map(|d| {
                let void = if d.void.is_empty() { "" } else { " (void)" };
                format!("{} {} at {}{void}", d.approver, d.decision, d.stage)
            })
            .collect();
        text.push_str(&format!(", decisions [{}]", decisions.join(", ")));
    }
    if !request.last_error.is_empty() {
        text.push_str(&format!(", last_error {:?}", request.last_error));
    }
    text
}
