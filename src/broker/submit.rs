//! Submitting a request: policy evaluation, then one transaction that checks for open
//! requests of the same principal and resource, allocates the id and stores the request with
//! its audit events. Auto-approved requests are granted before the call returns.

use super::{Broker, BrokerError, Caller, Limited};
use crate::audit::{Actor, entry};
use crate::model::{AccessRequest, Approval, Attempts, Happened, RequestId, State, StateKind};
use crate::policy::Ask;

impl Broker {
    /// Fails unless a request for `resource` names an SSH public key exactly when
    /// `provisioner` signs SSH certificates.
    pub(super) fn check_ssh_key(
        &self,
        provisioner: &str,
        resource: &crate::model::ResourceName,
        key: Option<&crate::model::SshPublicKey>,
    ) -> Result<(), BrokerError> {
        let needs = self
            .inner
            .effects
            .provisioners
            .get(provisioner)
            .is_ok_and(|provisioner| provisioner.needs_ssh_key());
        match (needs, key) {
            (true, None) => Err(BrokerError::Invalid(format!(
                "{} is granted by an SSH certificate: give your public key (--ssh-key ~/.ssh/id_ed25519.pub)",
                resource
            ))),
            (false, Some(_)) => Err(BrokerError::Invalid(format!(
                "{resource} is not granted by an SSH certificate: it takes no SSH key"
            ))),
            _ => Ok(()),
        }
    }

    /// Submits `ask` for `caller`. Evaluated again when the policy or directory was reloaded
    /// before the request could be stored.
    pub async fn submit(&self, caller: &Caller, ask: Ask) -> Result<AccessRequest, BrokerError> {
        for _ in 0..2 {
            match self.submit_once(caller, ask.clone()).await {
                Err(BrokerError::Reloaded) => continue,
                other => return other,
            }
        }
        self.submit_once(caller, ask).await
    }

    async fn submit_once(&self, caller: &Caller, ask: Ask) -> Result<AccessRequest, BrokerError> {
        let snapshot = self.inner.rules.current();
        let evaluation = snapshot.evaluate(&caller.principal, &ask)?;
        self.check_ssh_key(&evaluation.provisioner, &ask.resource, ask.ssh_key.as_ref())?;
        // Only asks the policy accepts take a token: a mistyped one still gets its own error.
        self.check_rate(&caller.principal, Limited::Submit, &ask.resource)?;
        let now = self.inner.clock.now();
        let auto = evaluation.route.stages.is_empty();
        let allow_overlap = evaluation.allow_overlap;
        let draft = AccessRequest {
            id: RequestId::FIRST,
            requester: caller.principal.clone(),
            resource: ask.resource,
            reason: ask.reason,
            ticket: ask.ticket,
            ssh_key: ask.ssh_key,
            duration: evaluation.duration,
            created_at: now,
            decide_by: now.saturating_add(evaluation.request_ttl),
            route: evaluation.route,
            policy_version: evaluation.policy_version,
            provisioner: evaluation.provisioner,
            account: Some(evaluation.account),
            extensions: Vec::new(),
            decisions: Vec::new(),
            state: if auto {
                State::Approved {
                    attempts: Attempts::due(now),
                }
            } else {
                State::Pending { stage: 0 }
            },
            approved_at: auto.then_some(now),
            granted_at: None,
            expires_at: None,
            ended_at: None,
            end_reason: None,
            break_glass: None,
            notices: Default::default(),
            flagged: None,
        };
        let record = self.inner.record.clone();
        let standing = self.inner.standing.clone();
        let rules = self.inner.rules.clone();
        let request = self
            .inner
            .store
            .write(move |view| {
                // Ordered against offboardings and reloads (see `standing`): a request
                // evaluated against files no longer in force is evaluated again.
                if !std::sync::Arc::ptr_eq(&rules.current(), &snapshot) {
                    return Err(BrokerError::Reloaded);
                }
                standing.check(&draft.requester)?;
                // One undecided request per principal and resource; a second lease beside an
                // active one only where the policy allows overlapping leases.
                for open in view.open_requests(&draft.requester, &draft.resource)? {
                    let held = matches!(open.kind(), StateKind::Active | StateKind::RevokeFailing);
                    if !(held && allow_overlap) {
                        return Err(BrokerError::AlreadyOpen {
                            id: open.id,
                            state: open.kind(),
                        });
                    }
                }
                let mut request = draft;
                request.id = view.next_request_id()?;
                let mut drafts = vec![entry::about(
                    &request,
                    request.created_at,
                    Actor::Principal(request.requester.clone()),
                    Happened::Submitted {
                        needs_approval_because: None,
                    },
                )];
                if auto {
                    drafts.push(entry::about(
                        &request,
                        now,
                        Actor::System,
                        Happened::Approved {
                            how: Approval::Auto,
                        },
                    ));
                }
                Ok(record.changes(None, request, drafts, now))
            })
            .await?;
        tracing::info!(id = %request.id, requester = %request.requester, resource = %request.resource, state = %request.kind(), "request submitted");
        if auto {
            return self.drive_now(request.id).await;
        }
        Ok(request)
    }
}
