//! Administrative actions: ending a lease at once, and drift reconciliation.
//!
//! Reconciliation compares what each target grants (for provisioners that can list their
//! holders) with the live leases:
//! - a grant no live lease holds is removed (`drift.revoked`): someone added it by hand, or a
//!   revoke was lost;
//! - an active lease whose grant is missing gets it back (`drift.restored`): someone removed it
//!   by hand, or the target lost it.
//!
//! Leases whose grant or revoke is in progress (approved, revoke-failing) are left to their own
//! retries. Each correction is decided under the grant's lock after reading the store and the
//! target again, so a lease granted or revoked meanwhile is never fought. Failures are audited
//! (`drift.failed`) and tried again on the next run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use super::{Broker, BrokerError, Caller};
use crate::audit::{Actor, actions, entry};
use crate::model::{
    AccessRequest, Drift, DriftCorrection, Ending, Happened, Reason, RequestId, ResourceName,
    State, StateKind,
};
use crate::provision::{Holding, Provisioner};

/// One difference reconciliation found, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Correction {
    /// `drift.revoked` or `drift.restored`.
    pub action: &'static str,
    /// The provisioner.
    pub provisioner: String,
    /// The account on the target.
    pub account: String,
    /// The grant's key.
    pub key: String,
    /// The lease whose grant was restored.
    pub lease: Option<RequestId>,
    /// Why the correction failed, when it did.
    pub error: Option<String>,
}

impl fmt::Display for Correction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, what) = match (self.action, self.lease) {
            (actions::DRIFT_RESTORED, Some(lease)) => {
                ("restore", format!("{} for {lease}", self.key))
            }
            (actions::DRIFT_FAILED, _) => ("list", "the target".to_owned()),
            _ => ("revoke", format!("{} (no live lease holds it)", self.key)),
        };
        match &self.error {
            None => write!(f, "{}: {verb}d {what}", self.provisioner),
            Some(error) => write!(f, "{}: FAILED to {verb} {what}: {error}", self.provisioner),
        }
    }
}

/// What a reconciliation run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Corrections made or attempted.
    pub corrections: Vec<Correction>,
    /// Provisioners whose targets were compared.
    pub checked: Vec<String>,
    /// Provisioners that could not be compared, with why.
    pub skipped: Vec<String>,
}

/// Live leases of one provisioner by grant key.
type Held = BTreeMap<String, Vec<AccessRequest>>;

impl Broker {
    /// An administrator ends active lease `id` at once, for `reason`. Answers once the target
    /// confirmed (`ended`, as revoked) or the revoke is being retried (`revoke_failing`).
    /// Revoking a lease already revoked (or being revoked) returns it as it is: a repeated
    /// call gets the first result, as DESIGN.md's idempotency invariant asks.
    pub async fn admin_revoke(
        &self,
        caller: &Caller,
        id: RequestId,
        reason: Reason,
    ) -> Result<AccessRequest, BrokerError> {
        caller.require_admin("revoking a lease")?;
        let why = format!("revoked by {}: {reason}", caller.principal);
        self.end_lease(
            id,
            Ending::Revoked,
            Actor::Principal(caller.principal.clone()),
            Some(why),
            move |request| match &request.state {
                State::Active => Ok(true),
                State::RevokeFailing {
                    ending: Ending::Revoked,
                    ..
                }
                | State::Ended {
                    ending: Ending::Revoked,
                } => Ok(false),
                _ => Err(crate::model::TransitionError::Illegal {
                    id: request.id,
                    action: "revoke",
                    state: request.kind(),
                    hint: " (only an active lease can be revoked)",
                }),
            },
        )
        .await
    }

    /// Reconciles every target (or only the one `resource` is granted on) as `caller`, an
    /// administrator.
    pub async fn admin_reconcile(
        &self,
        caller: &Caller,
        resource: Option<ResourceName>,
    ) -> Result<Reconciliation, BrokerError> {
        caller.require_admin("reconciling targets")?;
        self.reconcile(resource, Actor::Principal(caller.principal.clone()))
            .await
    }

    /// Compares targets with live leases and corrects the differences; see the module notes.
    /// With `resource`, only its holdings and its leases are looked at.
    pub async fn reconcile(
        &self,
        resource: Option<ResourceName>,
        actor: Actor,
    ) -> Result<Reconciliation, BrokerError> {
        let snapshot = self.inner.rules.current();
        let mut scope: BTreeMap<String, BTreeSet<ResourceName>> = BTreeMap::new();
        match &resource {
            Some(name) => {
                let found = snapshot
                    .policy
                    .resource(name)
                    .ok_or_else(|| crate::policy::Refusal::UnknownResource(name.clone()))?;
                scope
                    .entry(found.provisioner.clone())
                    .or_default()
                    .insert(name.clone());
            }
            None => {
                for found in snapshot.policy.resources() {
                    scope
                        .entry(found.provisioner.clone())
                        .or_default()
                        .insert(found.name.clone());
                }
                for lease in self.live_leases().await? {
                    scope
                        .entry(lease.provisioner.clone())
                        .or_default()
                        .insert(lease.resource.clone());
                }
            }
        }
        let mut run = Reconciliation::default();
        let corrections = &mut run.corrections;
        for (name, resources) in scope {
            let Ok(provisioner) = self.inner.effects.provisioners.get(&name) else {
                run.skipped
                    .push(format!("{name}: not configured in this daemon"));
                continue;
            };
            let provisioner = provisioner.clone();
            let resources: Vec<ResourceName> = resources.into_iter().collect();
            match self
                .reconcile_one(&name, &provisioner, &resources, &actor)
                .await
            {
                Ok(None) if resource.is_some() => {
                    return Err(BrokerError::Target(format!(
                        "provisioner {name} cannot list what its target grants, so there is nothing to compare"
                    )));
                }
                Ok(None) => run
                    .skipped
                    .push(format!("{name}: cannot list what its target grants")),
                Ok(Some(found)) => {
                    run.checked.push(name.clone());
                    corrections.extend(found);
                }
                Err(BrokerError::Target(error)) => {
                    tracing::warn!(provisioner = %name, %error, "reconciliation could not list the target");
                    self.record(entry::of(
                        self.inner.clock.now(),
                        actor.clone(),
                        Happened::DriftFailed {
                            provisioner: name.clone(),
                            correction: None,
                            error: error.clone(),
                        },
                    ))
                    .await?;
                    corrections.push(Correction {
                        action: actions::DRIFT_FAILED,
                        provisioner: name.clone(),
                        account: String::new(),
                        key: "(listing)".to_owned(),
                        lease: None,
                        error: Some(error),
                    });
                }
                Err(error) => return Err(error),
            }
        }
        Ok(run)
    }

    async fn live_leases(&self) -> Result<Vec<AccessRequest>, BrokerError> {
        Ok(self
            .inner
            .store
            .read(|reader| {
                let mut live = reader.requests_in_state(StateKind::Active)?;
                live.extend(reader.requests_in_state(StateKind::Approved)?);
                live.extend(reader.requests_in_state(StateKind::RevokeFailing)?);
                Ok(live)
            })
            .await?)
    }

    /// Live leases of `provisioner`, by grant key.
    async fn held(
        &self,
        name: &str,
        provisioner: &Arc<dyn Provisioner>,
    ) -> Result<Held, BrokerError> {
        let mut held = Held::new();
        for lease in self.live_leases().await? {
            if lease.provisioner == name {
                let target = Self::target(&lease, lease.expires_at.unwrap_or(lease.created_at));
                held.entry(provisioner.grant_key(&target))
                    .or_default()
                    .push(lease);
            }
        }
        Ok(held)
    }

    async fn listed(
        provisioner: &Arc<dyn Provisioner>,
        resources: &[ResourceName],
    ) -> Result<Option<BTreeMap<String, Holding>>, BrokerError> {
        let listed = provisioner
            .list(resources)
            .await
            .map_err(|error| BrokerError::Target(error.0))?;
        Ok(listed.map(|holdings| {
            holdings
                .into_iter()
                .map(|holding| (holding.key.clone(), holding))
                .collect()
        }))
    }

    async fn reconcile_one(
        &self,
        name: &str,
        provisioner: &Arc<dyn Provisioner>,
        resources: &[ResourceName],
        actor: &Actor,
    ) -> Result<Option<Vec<Correction>>, BrokerError> {
        let Some(holdings) = Self::listed(provisioner, resources).await? else {
            return Ok(None);
        };
        let held = self.held(name, provisioner).await?;
        let extra: Vec<&Holding> = holdings
            .values()
            .filter(|holding| !held.contains_key(&holding.key))
            .collect();
        let missing: Vec<RequestId> = held
            .iter()
            .filter(|(key, _)| !holdings.contains_key(*key))
            .flat_map(|(_, leases)| leases)
            .filter(|lease| lease.state == State::Active && resources.contains(&lease.resource))
            .map(|lease| lease.id)
            .collect();
        let mut corrections = Vec::new();
        // A target failing half-way fails the items it touches, not the ones done before.
        let failed = |key: &str, lease: Option<RequestId>, error: String| Correction {
            action: if lease.is_some() {
                actions::DRIFT_RESTORED
            } else {
                actions::DRIFT_REVOKED
            },
            provisioner: name.to_owned(),
            account: String::new(),
            key: key.to_owned(),
            lease,
            error: Some(error),
        };
        for holding in extra {
            match self
                .remove_drift(name, provisioner, resources, holding, actor)
                .await
            {
                Ok(found) => corrections.extend(found),
                Err(BrokerError::Target(error)) => {
                    corrections.push(failed(&holding.key, None, error));
                }
                Err(error) => return Err(error),
            }
        }
        for id in missing {
            match self
                .restore_drift(name, provisioner, resources, id, actor)
                .await
            {
                Ok(found) => corrections.extend(found),
                Err(BrokerError::Target(error)) => {
                    corrections.push(failed(&id.to_string(), Some(id), error));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(Some(corrections))
    }

    /// Removes `holding` if, under its lock, no live lease holds it and the target still has it.
    async fn remove_drift(
        &self,
        name: &str,
        provisioner: &Arc<dyn Provisioner>,
        resources: &[ResourceName],
        holding: &Holding,
        actor: &Actor,
    ) -> Result<Option<Correction>, BrokerError> {
        let _grant = self.lock_grant(name, holding.key.clone()).await;
        if self
            .held(name, provisioner)
            .await?
            .contains_key(&holding.key)
        {
            return Ok(None);
        }
        let still = Self::listed(provisioner, resources)
            .await?
            .is_some_and(|now| now.contains_key(&holding.key));
        if !still {
            return Ok(None);
        }
        let result = provisioner.remove(holding).await;
        let now = self.inner.clock.now();
        let drift = Drift {
            provisioner: name.to_owned(),
            account: holding.account.clone(),
            key: holding.key.clone(),
            resource: holding.resource.clone(),
        };
        let error = result.err().map(|error| error.0);
        let happened = match &error {
            Some(error) => {
                tracing::warn!(provisioner = %name, key = %holding.key, %error, "could not remove a grant no lease holds");
                Happened::DriftFailed {
                    provisioner: name.to_owned(),
                    correction: Some((DriftCorrection::Revoke, drift)),
                    error: error.clone(),
                }
            }
            None => {
                tracing::warn!(provisioner = %name, key = %holding.key, "removed a grant no lease holds");
                Happened::DriftRevoked { drift }
            }
        };
        self.record(entry::of(now, actor.clone(), happened)).await?;
        Ok(Some(Correction {
            action: actions::DRIFT_REVOKED,
            provisioner: name.to_owned(),
            account: holding.account.clone(),
            key: holding.key.clone(),
            lease: None,
            error,
        }))
    }

    /// Puts back the grant of active lease `id` if, under the request's and the grant's
    /// locks, it is still active and the target still lacks it.
    async fn restore_drift(
        &self,
        name: &str,
        provisioner: &Arc<dyn Provisioner>,
        resources: &[ResourceName],
        id: RequestId,
        actor: &Actor,
    ) -> Result<Option<Correction>, BrokerError> {
        let _held = self.inner.effects.requests.lock(id).await;
        let Some(lease) = self.read_request(id).await? else {
            return Ok(None);
        };
        let (State::Active, Some(expires_at)) = (&lease.state, lease.expires_at) else {
            return Ok(None);
        };
        let target = Self::target(&lease, expires_at);
        let key = provisioner.grant_key(&target);
        let _grant = self.lock_grant(name, key.clone()).await;
        let present = Self::listed(provisioner, resources)
            .await?
            .is_none_or(|now| now.contains_key(&key));
        if present {
            return Ok(None);
        }
        let result = provisioner.restore(&target).await;
        let now = self.inner.clock.now();
        let drift = Drift {
            provisioner: name.to_owned(),
            account: target.account.clone(),
            key: key.clone(),
            resource: Some(lease.resource.clone()),
        };
        let (action, error) = match result {
            Ok(granted) => {
                let reissued = granted.credentials.is_some();
                if let Some(credentials) = granted.credentials {
                    self.inner.effects.credentials.put(id, credentials);
                }
                tracing::warn!(%id, key = %key, "restored a grant that had disappeared from the target");
                self.record(entry::about(
                    &lease,
                    now,
                    actor.clone(),
                    Happened::DriftRestored {
                        drift,
                        credentials_reissued: reissued,
                    },
                ))
                .await?;
                (actions::DRIFT_RESTORED, None)
            }
            Err(error) => {
                tracing::warn!(%id, key = %key, error = %error.0, "could not restore a grant that disappeared");
                self.record(entry::about(
                    &lease,
                    now,
                    actor.clone(),
                    Happened::DriftFailed {
                        provisioner: name.to_owned(),
                        correction: Some((DriftCorrection::Restore, drift)),
                        error: error.0.clone(),
                    },
                ))
                .await?;
                (actions::DRIFT_RESTORED, Some(error.0))
            }
        };
        Ok(Some(Correction {
            action,
            provisioner: name.to_owned(),
            account: target.account,
            key,
            lease: Some(id),
            error,
        }))
    }

    /// Runs reconciliation every `every` until `shutdown`, as the daemon.
    pub fn spawn_reconciliation(
        &self,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let broker = self.clone();
        // Tracked, so shutdown waits for a run in progress to record what it changed.
        self.inner.effects.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                match broker.reconcile(None, Actor::System).await {
                    Ok(run) if !run.corrections.is_empty() => {
                        tracing::warn!(
                            count = run.corrections.len(),
                            "reconciliation corrected drift"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "reconciliation failed; retried next run"),
                }
            }
        });
    }
}
