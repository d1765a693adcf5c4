//! Reads: one request, lists, what waits for a caller, resources, and watching a request
//! change. Reads never wait for the writer.

use tokio::sync::{broadcast, mpsc};

use super::{Broker, BrokerError, Caller};
use crate::model::{AccessRequest, Page, RequestId, StateKind};
use crate::policy::Resource;

/// Updates of one request: the current record first, then every change until it is active or
/// has ended. The stream ends there (or when the broker shuts down).
pub type Watch = mpsc::Receiver<Result<AccessRequest, BrokerError>>;

/// Whether a watcher has seen the end of the wait.
fn settled(request: &AccessRequest) -> bool {
    request.kind() == StateKind::Active || !request.kind().is_open()
}

impl Broker {
    /// The time by the broker's clock.
    pub fn now(&self) -> crate::model::Timestamp {
        self.inner.clock.now()
    }

    /// The idempotency key `key` as claimed, if it was.
    pub async fn claimed(
        &self,
        key: &str,
    ) -> Result<Option<crate::store::idempotency::Claim>, BrokerError> {
        Ok(self.inner.store.claimed(key).await?)
    }

    /// Request `id`, if `caller` may see it ([`Caller::may_see`]).
    pub async fn request(
        &self,
        caller: &Caller,
        id: RequestId,
    ) -> Result<AccessRequest, BrokerError> {
        let request = self.read_visible(caller, id).await?;
        Ok(request)
    }

    /// Takes the credentials waiting for the holder of `request`, when `caller` is the holder.
    /// They are given out once: the next call finds none.
    pub fn collect_credentials(
        &self,
        caller: &Caller,
        request: &AccessRequest,
    ) -> Option<crate::provision::Credentials> {
        if request.requester != caller.principal {
            return None;
        }
        let taken = self.inner.effects.credentials.take(request.id);
        if taken.is_some() {
            tracing::info!(id = %request.id, holder = %caller.principal, "credentials delivered");
        }
        taken
    }

    /// Whether credentials of `request` wait for `caller`: only its holder is told.
    pub fn credentials_waiting(&self, caller: &Caller, request: &AccessRequest) -> bool {
        request.requester == caller.principal && self.inner.effects.credentials.waiting(request.id)
    }

    /// The credentials of lease `id`, for its holder, once.
    pub async fn credentials(
        &self,
        caller: &Caller,
        id: RequestId,
    ) -> Result<crate::provision::Credentials, BrokerError> {
        let request = self.read_visible(caller, id).await?;
        if request.requester != caller.principal {
            return Err(BrokerError::Forbidden(format!(
                "only the holder of {id} can collect its credentials"
            )));
        }
        if let Some(credentials) = self.collect_credentials(caller, &request) {
            return Ok(credentials);
        }
        let why = match request.kind() {
            StateKind::Active => format!(
                "no credentials wait for {id}: they are given out once and were collected already (or lost when elevated restarted, or {} issues none); release the lease and request again for new ones",
                request.provisioner
            ),
            StateKind::Pending | StateKind::Approved => {
                format!(
                    "{id} is {}: credentials come with the grant",
                    request.kind()
                )
            }
            kind => format!("{id} is {kind}: its credentials are gone with the lease"),
        };
        Err(BrokerError::NoCredentials(why))
    }

    /// Request `id` as `caller` may know it: a request they may not see
    /// ([`Caller::may_see`]) is answered exactly like one that does not exist, so that nobody
    /// learns its state, route or nature by acting on its id. Every call about one request
    /// starts here, before any check that depends on the request.
    pub(super) async fn read_visible(
        &self,
        caller: &Caller,
        id: RequestId,
    ) -> Result<AccessRequest, BrokerError> {
        self.read_request(id)
            .await?
            .filter(|request| caller.may_see(request))
            .ok_or(BrokerError::NotFound(id))
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
                pending.extend(reader.extensions_pending()?);
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
