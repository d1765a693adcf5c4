//! The commit primitive every change of a request goes through: re-read the record inside the
//! write transaction, apply the transition, and store the result with its audit entries and
//! notifications ([`record`](super::record)), or nothing when the transition changed nothing.

use super::{Broker, BrokerError};
use crate::audit::{Actor, Draft, entry};
use crate::model::{AccessRequest, RequestId, Timestamp, Transition};
use crate::store::Changes;

/// What a commit closure returns: the transition and, if it changed the record, the audit
/// entries of what happened.
pub(super) type Outcome = (Transition, Vec<Draft>);

/// Pairs a transition with the audit entries of what it says happened (about its new record,
/// at `at`, caused by `actor`), when it changed the record.
pub(super) fn recorded(transition: Transition, at: Timestamp, actor: Actor) -> Outcome {
    recorded_after(Vec::new(), transition, at, actor)
}

/// Like [`recorded`], after `before`: entries the same change records first (approvals that
/// stopped counting before a decision), kept only when the record changed.
pub(super) fn recorded_after(
    mut before: Vec<Draft>,
    transition: Transition,
    at: Timestamp,
    actor: Actor,
) -> Outcome {
    match transition {
        Transition::Changed(request, happened) => {
            before.extend(
                happened
                    .into_iter()
                    .map(|happened| entry::about(&request, at, actor.clone(), happened)),
            );
            (Transition::Changed(request, Vec::new()), before)
        }
        unchanged @ Transition::Unchanged(_) => (unchanged, Vec::new()),
    }
}

impl Broker {
    /// Re-reads `id` inside a write transaction, applies `change`, and stores the result with
    /// its events if it changed.
    pub(super) async fn commit<F>(
        &self,
        id: RequestId,
        change: F,
    ) -> Result<AccessRequest, BrokerError>
    where
        F: FnOnce(AccessRequest, Timestamp) -> Result<Outcome, BrokerError> + Send + 'static,
    {
        Ok(self.commit_changed(id, change).await?.0)
    }

    /// Like [`Broker::commit`], also saying whether the record changed. `change` gets the time
    /// read inside the transaction, so a queued change is judged by when it commits.
    pub(super) async fn commit_changed<F>(
        &self,
        id: RequestId,
        change: F,
    ) -> Result<(AccessRequest, bool), BrokerError>
    where
        F: FnOnce(AccessRequest, Timestamp) -> Result<Outcome, BrokerError> + Send + 'static,
    {
        let record = self.inner.record.clone();
        let clock = self.inner.clock.clone();
        self.inner
            .store
            .write(move |view| {
                let now = clock.now();
                let request = view.request(id)?.ok_or(BrokerError::NotFound(id))?;
                let old = request.clone();
                Ok(match change(request, now)? {
                    (Transition::Changed(new, _), drafts) => {
                        let (changes, new) = record.changes(Some(&old), new, drafts, now);
                        (changes, (new, true))
                    }
                    (Transition::Unchanged(request), _) => (Changes::default(), (request, false)),
                })
            })
            .await
    }

    pub(super) async fn read_request(
        &self,
        id: RequestId,
    ) -> Result<Option<AccessRequest>, BrokerError> {
        Ok(self.inner.store.read(move |r| r.request(id)).await?)
    }
}
