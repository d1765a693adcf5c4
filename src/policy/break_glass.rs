//! Evaluating a break-glass request: may this principal break glass on this resource, for how
//! long, and what review (and, when the holder has unreviewed break-glass, what approval) comes
//! with it.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Snapshot;
use super::route::{Refusal, resolve};
use super::rules::ApproverRef;
use crate::model::{
    GroupName, LeaseDuration, Principal, Reason, ResourceName, Route, RouteStage, Ticket,
};

/// A break-glass request, already parsed. Reason and incident are always required.
#[derive(Clone, Debug)]
pub struct BreakGlassAsk {
    /// The resource.
    pub resource: ResourceName,
    /// The lease length; `None` means the shorter of the resource's default and the break-glass
    /// maximum.
    pub duration: Option<LeaseDuration>,
    /// Why.
    pub reason: Reason,
    /// The incident reference.
    pub incident: Ticket,
    /// The requester's SSH public key, for resources granted by SSH certificates.
    pub ssh_key: Option<crate::model::SshPublicKey>,
}

/// What the policy decided for an acceptable break-glass request.
#[derive(Clone, Debug)]
pub struct BreakGlassPlan {
    /// The lease length.
    pub duration: LeaseDuration,
    /// How long a break-glass that needs an approval may wait for it.
    pub request_ttl: Duration,
    /// Content hash of the policy that decided.
    pub policy_version: String,
    /// The provisioner of the resource.
    pub provisioner: String,
    /// The requester's account on that provisioner's target.
    pub account: String,
    /// Whether the break-glass may overlap an active lease of the same resource.
    pub allow_overlap: bool,
    /// Who reviews.
    pub review_group: GroupName,
    /// When the review is due after the grant.
    pub review_within: LeaseDuration,
    /// How often an overdue review is reminded about.
    pub remind_every: LeaseDuration,
    /// Who is told when the review is overdue.
    pub escalate_to: BTreeSet<Principal>,
    /// Whether an unjustified verdict revokes the lease at once.
    pub revoke_on_unjustified: bool,
    /// Most break-glass requests per principal per `rate_window`.
    pub rate_limit: u32,
    /// The rate-limit window.
    pub rate_window: LeaseDuration,
    /// Whether unreviewed break-glass makes the next one wait for an approval.
    pub approval_when_unreviewed: bool,
    /// How long an unjustified verdict counts.
    pub unjustified_window: LeaseDuration,
    /// The one-stage route (any one reviewer) used when an approval is needed, or why there
    /// is none.
    pub approval_route: Result<Route, Refusal>,
}

impl Snapshot {
    /// Decides whether `requester` may break glass as `ask` says.
    pub fn evaluate_break_glass(
        &self,
        requester: &Principal,
        ask: &BreakGlassAsk,
    ) -> Result<BreakGlassPlan, Refusal> {
        let resource = self
            .policy
            .resource(&ask.resource)
            .ok_or_else(|| Refusal::UnknownResource(ask.resource.clone()))?;
        let rule = resource
            .break_glass
            .as_ref()
            .ok_or_else(|| Refusal::NoBreakGlass(resource.name.clone()))?;
        let person = self.directory.person(requester);
        if !person.is_some_and(|p| p.in_any(&rule.groups)) {
            return Err(Refusal::MayNotBreakGlass {
                principal: requester.clone(),
                resource: resource.name.clone(),
                groups: rule
                    .groups
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let duration = ask
            .duration
            .unwrap_or_else(|| resource.default_duration.min(rule.max_duration));
        if duration > rule.max_duration {
            return Err(Refusal::Invalid(format!(
                "duration {duration} exceeds the break-glass maximum of {} for {}",
                rule.max_duration, resource.name
            )));
        }
        if duration < resource.min_duration {
            return Err(Refusal::Invalid(format!(
                "duration {duration} is shorter than the minimum of {} for {}",
                resource.min_duration, resource.name
            )));
        }
        if let Some(pattern) = &resource.ticket_pattern {
            if !pattern.is_match(ask.incident.as_str()) {
                return Err(Refusal::Invalid(format!(
                    "incident '{}' does not match {} required by {}",
                    ask.incident,
                    pattern.as_str(),
                    resource.name
                )));
            }
        }
        let reviewers = resolve(
            &self.directory,
            resource,
            requester,
            &[ApproverRef::Group(rule.review_group.clone())],
        );
        let approval_route = if reviewers.is_empty() {
            Err(Refusal::Unroutable(format!(
                "{} cannot approve this break-glass: no active member of {} other than {requester}",
                resource.name, rule.review_group
            )))
        } else {
            Ok(Route {
                stages: vec![RouteStage {
                    name: "break-glass approval".to_owned(),
                    quorum: 1,
                    approvers: reviewers,
                }],
            })
        };
        Ok(BreakGlassPlan {
            duration,
            request_ttl: resource.request_ttl.get(),
            policy_version: self.policy.version().to_owned(),
            provisioner: resource.provisioner.clone(),
            account: self.directory.account(requester, &resource.provisioner),
            allow_overlap: resource.allow_overlap,
            review_group: rule.review_group.clone(),
            review_within: rule.review_within,
            remind_every: rule.remind_every,
            escalate_to: resolve(&self.directory, resource, requester, &rule.escalate_to),
            revoke_on_unjustified: rule.revoke_on_unjustified,
            rate_limit: rule.rate_limit,
            rate_window: rule.rate_window,
            approval_when_unreviewed: rule.approval_when_unreviewed,
            unjustified_window: rule.unjustified_window,
            approval_route,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        super::super::demo::snapshot().unwrap()
    }

    fn ask(resource: &str, duration: Option<&str>, incident: &str) -> BreakGlassAsk {
        BreakGlassAsk {
            ssh_key: None,
            resource: ResourceName::parse(resource).unwrap(),
            duration: duration.map(|d| LeaseDuration::parse(d).unwrap()),
            reason: Reason::parse("database down").unwrap(),
            incident: Ticket::parse(incident).unwrap(),
        }
    }

    fn p(name: &str) -> Principal {
        Principal::parse(name).unwrap()
    }

    #[test]
    fn sre_may_break_glass_on_prod_db_admin() {
        let plan = snapshot()
            .evaluate_break_glass(&p("oncall"), &ask("prod-db-admin", Some("45m"), "INC-7"))
            .unwrap();
        assert_eq!(plan.duration.to_string(), "45m");
        assert_eq!(plan.review_group.as_str(), "security");
        let escalate: Vec<&str> = plan.escalate_to.iter().map(Principal::as_str).collect();
        assert_eq!(escalate, ["admin", "manager"]);
        let route = plan.approval_route.unwrap();
        assert_eq!(route.stages[0].approvers, BTreeSet::from([p("security")]));
    }

    #[test]
    fn refusals_say_why() {
        let s = snapshot();
        let cases = [
            (
                "engineer",
                "prod-db-admin",
                Some("30m"),
                "INC-7",
                "only members of sre may",
            ),
            (
                "oncall",
                "staging-db",
                Some("30m"),
                "INC-7",
                "break-glass is not allowed on staging-db",
            ),
            (
                "oncall",
                "prod-db-admin",
                Some("2h"),
                "INC-7",
                "exceeds the break-glass maximum of 1h",
            ),
            (
                "oncall",
                "prod-db-admin",
                Some("30m"),
                "inc7",
                "incident 'inc7' does not match",
            ),
        ];
        for (who, resource, duration, incident, expected) in cases {
            let error = s
                .evaluate_break_glass(&p(who), &ask(resource, duration, incident))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
