//! What storing a changed request writes besides the record: its notice times refreshed, and
//! the notifications the change causes, routed to notifiers and queued in the outbox in the same
//! transaction. Every commit of a request goes through [`Record::changes`].

use std::sync::Arc;

use crate::audit::Draft;
use crate::model::{AccessRequest, Timestamp};
use crate::notify::{Routing, derive};
use crate::policy::Live;
use crate::store::Changes;

/// Cheap to clone into write jobs.
#[derive(Clone)]
pub(super) struct Record {
    pub(super) routing: Arc<Routing>,
    pub(super) rules: Live,
}

impl Record {
    /// The changes that store `new`, changed from `old` (`None` for a new request), with its
    /// audit `drafts` and the notifications it causes. Returns the record as stored.
    pub(super) fn changes(
        &self,
        old: Option<&AccessRequest>,
        mut new: AccessRequest,
        drafts: Vec<Draft>,
        now: Timestamp,
    ) -> (Changes, AccessRequest) {
        // An extension still undecided when the lease ends lapses with it.
        new.lapse_extension(now);
        derive::refresh_notices(old, &mut new, &self.routing.notices, now);
        // Without routes no event can go anywhere: skip deriving them.
        let outgoing = if self.routing.routes.is_empty() {
            Vec::new()
        } else {
            let snapshot = self.rules.current();
            let happened: Vec<_> = drafts.iter().filter_map(|d| d.happened.as_ref()).collect();
            let events = derive::events(old, &new, &happened, &snapshot, now);
            self.routing.route(events, now)
        };
        let changes = Changes {
            requests: vec![new.clone()],
            events: drafts,
            outgoing,
            ..Changes::default()
        };
        (changes, new)
    }
}
