//! `AdminService` (admin group only): ending leases at once, reconciling targets, reloading the
//! policy and directory, offboarding and reinstating principals.

use tonic::{Request, Response, Status};

use super::status::{from_broker, invalid};
use super::{caller, convert, idempotent};
use crate::broker::{Broker, Enforcement, Gate};
use crate::cluster::Leadership;
use crate::model::{Principal, Reason};
use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_server::AdminService;

/// Serves [`AdminService`] over a [`Broker`].
#[derive(Clone, Debug)]
pub struct Admin {
    broker: Broker,
    gate: Gate,
    /// This node's leadership, when it is one of several.
    cluster: Option<Leadership>,
}

impl Admin {
    /// The service over `broker`, on a node of `cluster` when it is one.
    pub fn new(broker: Broker, gate: Gate, cluster: Option<Leadership>) -> Self {
        Self {
            broker,
            gate,
            cluster,
        }
    }
}

/// The principal and reason fields of an offboarding or reinstatement; both required.
fn principal_and_reason(
    principal: &str,
    reason: &str,
    verb: &str,
) -> Result<(Principal, Reason), Status> {
    if principal.trim().is_empty() {
        return Err(invalid("principal", "a principal is required"));
    }
    let principal = Principal::parse(principal.trim()).map_err(|e| invalid("principal", e))?;
    let reason = convert::reason("reason", reason)?
        .ok_or_else(|| invalid("reason", format!("a reason is required to {verb} someone")))?;
    Ok((principal, reason))
}

fn ids(ids: &[crate::model::RequestId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

fn enforcement(enforced: &Enforcement) -> pb::Enforcement {
    pb::Enforcement {
        revoked: ids(&enforced.revoked),
        cancelled: ids(&enforced.cancelled),
        flagged: ids(&enforced.flagged),
        voided: ids(&enforced.voided),
        failed: enforced.failed.clone(),
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn revoke_lease(
        &self,
        request: Request<pb::RevokeLeaseRequest>,
    ) -> Result<Response<pb::RevokeLeaseResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.AdminService/RevokeLease",
            &request,
        )?;
        let body = request.into_inner();
        let id = convert::request_id("id", &body.id)?;
        let reason = convert::reason("reason", &body.reason)?
            .ok_or_else(|| invalid("reason", "a reason is required to revoke a lease"))?;
        let revoked = idempotent::once(
            &self.broker,
            claim,
            self.broker.admin_revoke(&caller, id, reason),
        )
        .await?
        .request(&self.broker, &caller)
        .await?;
        Ok(Response::new(pb::RevokeLeaseResponse {
            request: Some(convert::request_to_proto(&revoked)),
        }))
    }

    async fn reload(
        &self,
        request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let reloaded = self
            .broker
            .admin_reload(&caller)
            .await
            .map_err(from_broker)?;
        Ok(Response::new(pb::ReloadResponse {
            policy_version: reloaded.policy_version,
            directory_version: reloaded.directory_version,
            changed: reloaded.changed,
            enforced: Some(enforcement(&reloaded.enforced)),
        }))
    }

    async fn offboard(
        &self,
        request: Request<pb::OffboardRequest>,
    ) -> Result<Response<pb::OffboardResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let body = request.into_inner();
        let (principal, reason) = principal_and_reason(&body.principal, &body.reason, "offboard")?;
        let enforced = self
            .broker
            .offboard(&caller, principal, reason)
            .await
            .map_err(from_broker)?;
        Ok(Response::new(pb::OffboardResponse {
            revoked: ids(&enforced.revoked),
            cancelled: ids(&enforced.cancelled),
            voided: ids(&enforced.voided),
            failed: enforced.failed,
        }))
    }

    async fn reinstate(
        &self,
        request: Request<pb::ReinstateRequest>,
    ) -> Result<Response<pb::ReinstateResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let claim = idempotent::claim(
            &self.broker,
            &caller,
            "elevate.v1.AdminService/Reinstate",
            &request,
        )?;
        let body = request.into_inner();
        let (principal, reason) = principal_and_reason(&body.principal, &body.reason, "reinstate")?;
        // A repeat after the first call reinstated them answers as the first call did.
        idempotent::once(
            &self.broker,
            claim,
            self.broker.reinstate(&caller, principal, reason),
        )
        .await?;
        Ok(Response::new(pb::ReinstateResponse {}))
    }

    async fn list_offboarded(
        &self,
        request: Request<pb::ListOffboardedRequest>,
    ) -> Result<Response<pb::ListOffboardedResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        Ok(Response::new(pb::ListOffboardedResponse {
            offboarded: self
                .broker
                .offboarded(&caller)
                .map_err(from_broker)?
                .into_iter()
                .map(|o| pb::Offboarded {
                    principal: o.principal.to_string(),
                    at_ms: i64::try_from(o.at.unix_millis()).unwrap_or(i64::MAX),
                    by: o.by.to_string(),
                    reason: o.reason,
                })
                .collect(),
        }))
    }

    async fn list_directory(
        &self,
        request: Request<pb::ListDirectoryRequest>,
    ) -> Result<Response<pb::ListDirectoryResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let wanted = request.into_inner().principal;
        let (snapshot, source) = self
            .broker
            .directory_in_force(&caller)
            .map_err(from_broker)?;
        let directory = &snapshot.directory;
        let people: Vec<pb::DirectoryPerson> = directory
            .principals()
            .filter(|(principal, _)| wanted.is_empty() || principal.as_str() == wanted)
            .map(|(principal, person)| pb::DirectoryPerson {
                principal: principal.to_string(),
                status: if person.is_active() {
                    "active"
                } else {
                    "suspended"
                }
                .to_owned(),
                groups: person.groups.iter().map(ToString::to_string).collect(),
                manager: person
                    .manager
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                accounts: person.accounts.clone().into_iter().collect(),
            })
            .collect();
        if !wanted.is_empty() && people.is_empty() {
            return Err(Status::not_found(format!(
                "{wanted} is not in the directory ({source})"
            )));
        }
        Ok(Response::new(pb::ListDirectoryResponse {
            people,
            version: directory.version().to_owned(),
            source,
        }))
    }

    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        caller
            .require_admin("showing the cluster")
            .map_err(from_broker)?;
        let Some(cluster) = &self.cluster else {
            return Err(Status::failed_precondition(
                "this elevated runs alone: its configuration has no [cluster] section",
            ));
        };
        cluster.status().await.map(Response::new).map_err(|error| {
            tracing::error!(%error, "cannot read the cluster's nodes");
            Status::unavailable("elevated cannot reach its store; retry shortly")
        })
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        let caller = caller(&self.gate, &request)?;
        let body = request.into_inner();
        let resource = if body.resource.is_empty() {
            None
        } else {
            Some(convert::resource(&body.resource)?)
        };
        let run = self
            .broker
            .admin_reconcile(&caller, resource)
            .await
            .map_err(from_broker)?;
        Ok(Response::new(pb::ReconcileResponse {
            corrections: run.corrections.iter().map(ToString::to_string).collect(),
            checked: run.checked,
            skipped: run.skipped,
        }))
    }
}
