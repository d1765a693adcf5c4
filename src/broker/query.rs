//! Reads: one request, lists, what waits for a caller, resources, and watching a request
//! change. Reads never wait for the writer.

use tokio::sync::{broadcast, mpsc};

use super::{Broker, BrokerError, Caller};
use crate::model::{AccessRequest, RequestId, StateKind};
use crate::policy::Resource;
use crate::store::Page;

/// Updates of one request: the current record first, then every change until it is active or
/// has ended. The stream ends there (or when the broker shuts down).
pub type Watch = mpsc::Receiver<Result<AccessRequest, BrokerError>>;

/// Whether a watcher has seen the end of the wait.
fn settled(request: &AccessRequest) -> bool {
    request.kind() == StateKind::Active || !request.kind().is_open()
}

impl Broker {
    /// Request `id`, if `caller` may see it: its requester, its approvers, auditors, admins.
    pub async fn request(
        &self,
        caller: &Caller,
        id: RequestId,
    ) -> Result<AccessRequest, BrokerError> {
        let request = self.read_visible(caller, id).await?;
        Ok(request)
    }

    async fn read_visible(
        &self,
        caller: &Caller,
        id: RequestId,
    ) -> Result<AccessRequest, BrokerError> {
        let request = self
            .inner
            .store
            .read(move |r| r.request(id))
            .await?
            .ok_or(BrokerError::NotFound(id))?;
        if request.requester == caller.principal
            || request.is_approver(&caller.principal)
            || caller.sees_all()
        {
            Ok(request)
        } else {
            Err(BrokerError::NotVisible(id))
        }
    }

    /// The caller's requests (or everybody's with `all`, for auditors and admins), newest
    /// first.
    pub async fn list(
        &self,
        caller: &Caller,
        state: Option<StateKind>,
        all: bool,
        page: Page,
    ) -> Result<Vec<AccessRequest>, BrokerError> {
        if all && !caller.sees_all() {
            return Err(BrokerError::Forbidden(
                "listing every principal's requests needs the auditor or admin group".to_owned(),
            ));
        }
        let principal = caller.principal.clone();
        Ok(self
            .inner
            .store
            .read(move |reader| {
                if all {
                    reader.requests(state, page)
                } else {
                    reader.requests_of(&principal, state, page)
                }
            })
            .await?)
    }

    /// Pending requests whose current stage waits for the caller's decision, oldest first.
    pub async fn pending(&self, caller: &Caller) -> Result<Vec<AccessRequest>, BrokerError> {
        let principal = caller.principal.clone();
        Ok(self
            .inner
            .store
            .read(move |reader| {
                let mut pending = reader.requests_in_state(StateKind::Pending)?;
                pending.retain(|request| request.awaits_decision_from(&principal));
                Ok(pending)
            })
            .await?)
    }

    /// Resources the caller may request or break glass on, in name order.
    pub fn resources(&self, caller: &Caller) -> Vec<Resource> {
        let snapshot = self.inner.rules.current();
        let Some(person) = snapshot.directory.person(&caller.principal) else {
            return Vec::new();
        };
        snapshot
            .policy
            .resources()
            .filter(|resource| {
                person.in_any(&resource.eligible_groups)
                    || resource
                        .break_glass
                        .as_ref()
                        .is_some_and(|b| person.in_any(&b.groups))
            })
            .cloned()
            .collect()
    }

    /// Watches request `id`: first its current state, then every change, until it is active
    /// or has ended.
    pub async fn watch(&self, caller: &Caller, id: RequestId) -> Result<Watch, BrokerError> {
        // Subscribe before reading, so no change between the read and the subscription is lost.
        let mut changes = self.inner.changes.subscribe();
        let first = self.read_visible(caller, id).await?;
        let (updates, watch) = mpsc::channel(16);
        let broker = self.clone();
        let closing = self.inner.closing.clone();
        tokio::spawn(async move {
            let mut last = first;
            if updates.send(Ok(last.clone())).await.is_err() || settled(&last) {
                return;
            }
            loop {
                let changed = tokio::select! {
                    () = updates.closed() => return,
                    () = closing.cancelled() => {
                        let _ = updates.send(Err(BrokerError::ShuttingDown)).await;
                        return;
                    }
                    changed = changes.recv() => changed,
                };
                match changed {
                    Ok(changed) if changed != id => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                let current = match broker.inner.store.read(move |r| r.request(id)).await {
                    Ok(Some(current)) => current,
                    Ok(None) => return,
                    Err(error) => {
                        let _ = updates.send(Err(error.into())).await;
                        return;
                    }
                };
                if current != last {
                    last = current;
                    if updates.send(Ok(last.clone())).await.is_err() {
                        return;
                    }
                }
                if settled(&last) {
                    return;
                }
            }
        });
        Ok(watch)
    }
}
