//! Evaluating a request against the policy: eligibility, bounds, required fields, and the
//! approval route resolved to concrete approvers from the directory.

use std::collections::BTreeSet;
use std::time::Duration;

use super::rules::{Approval, ApproverRef, ExtensionApproval, Resource};
use super::{Directory, Snapshot};
use crate::model::{
    ExtensionLimits, LeaseDuration, Principal, Reason, ResourceName, Route, RouteStage, Ticket,
};

/// What a requester asks for, already parsed.
#[derive(Clone, Debug)]
pub struct Ask {
    /// The resource.
    pub resource: ResourceName,
    /// The lease length; `None` means the resource's default.
    pub duration: Option<LeaseDuration>,
    /// Why.
    pub reason: Option<Reason>,
    /// Ticket reference.
    pub ticket: Option<Ticket>,
    /// The requester's SSH public key, for resources granted by SSH certificates.
    pub ssh_key: Option<crate::model::SshPublicKey>,
}

/// What the policy decided for an acceptable request.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The lease length.
    pub duration: LeaseDuration,
    /// How long the request may wait for decisions.
    pub request_ttl: Duration,
    /// The resolved route; empty for auto-approval.
    pub route: Route,
    /// Content hash of the policy that decided.
    pub policy_version: String,
    /// Name of the provisioner that grants the resource.
    pub provisioner: String,
    /// The requester's account on that provisioner's target.
    pub account: String,
    /// Whether the request may overlap an active lease of the same resource.
    pub allow_overlap: bool,
}

/// Why the policy refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such resource.
    #[error("unknown resource '{0}'")]
    UnknownResource(ResourceName),
    /// The requester is not in an eligible group.
    #[error("{principal} is not eligible for {resource}: it is requested by members of {groups}")]
    NotEligible {
        /// Who asked.
        principal: Principal,
        /// For what.
        resource: ResourceName,
        /// The eligible groups.
        groups: String,
    },
    /// The resource allows no break-glass.
    #[error("break-glass is not allowed on {0}")]
    NoBreakGlass(ResourceName),
    /// The requester may not break glass on the resource.
    #[error("{principal} may not break glass on {resource}: only members of {groups} may")]
    MayNotBreakGlass {
        /// Who asked.
        principal: Principal,
        /// For what.
        resource: ResourceName,
        /// The groups that may.
        groups: String,
    },
    /// Too many break-glass requests in the window.
    #[error("{0}")]
    RateLimited(String),
    /// A field is missing, malformed or out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The route cannot be satisfied with the people in the directory.
    #[error("{0}")]
    Unroutable(String),
}

impl Snapshot {
    /// Decides whether `requester` may ask for `ask`, and with which route.
    pub fn evaluate(&self, requester: &Principal, ask: &Ask) -> Result<Evaluation, Refusal> {
        let resource = self
            .policy
            .resource(&ask.resource)
            .ok_or_else(|| Refusal::UnknownResource(ask.resource.clone()))?;
        let person = self.directory.person(requester);
        if !person.is_some_and(|p| p.in_any(&resource.eligible_groups)) {
            return Err(Refusal::NotEligible {
                principal: requester.clone(),
                resource: resource.name.clone(),
                groups: join(resource.eligible_groups.iter().map(|g| g.as_str())),
            });
        }
        let duration = check_fields(resource, ask)?;
        let auto = person.is_some_and(|p| p.in_any(&resource.auto_approve_groups));
        let route = match &resource.approval {
            _ if auto => Route::default(),
            Approval::Auto => Route::default(),
            Approval::Stages(stages) => {
                let mut resolved = Vec::new();
                for stage in stages {
                    let approvers = resolve(&self.directory, resource, requester, &stage.approvers);
                    if approvers.len() < stage.quorum as usize {
                        return Err(Refusal::Unroutable(format!(
                            "{} cannot be approved: stage '{}' needs {} approval(s) but has {} eligible approver(s) other than {requester}{}",
                            resource.name,
                            stage.name,
                            stage.quorum,
                            approvers.len(),
                            if stage.approvers.contains(&ApproverRef::Manager)
                                && self
                                    .directory
                                    .person(requester)
                                    .and_then(|p| p.manager.as_ref())
                                    .is_none()
                            {
                                " (the directory names no manager for them)"
                            } else {
                                ""
                            }
                        )));
                    }
                    resolved.push(RouteStage {
                        name: stage.name.clone(),
                        quorum: stage.quorum,
                        approvers,
                    });
                }
                check_distinct_approvers(&resource.name, &resolved)?;
                Route { stages: resolved }
            }
        };
        Ok(Evaluation {
            duration,
            request_ttl: resource.request_ttl.get(),
            route,
            policy_version: self.policy.version().to_owned(),
            provisioner: resource.provisioner.clone(),
            account: self.directory.account(requester, &resource.provisioner),
            allow_overlap: resource.allow_overlap,
        })
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// Checks the duration bounds and the reason and ticket rules; returns the lease length.
fn check_fields(resource: &Resource, ask: &Ask) -> Result<LeaseDuration, Refusal> {
    let duration = ask.duration.unwrap_or(resource.default_duration);
    if duration > resource.max_duration {
        return Err(Refusal::Invalid(format!(
            "duration {duration} exceeds the maximum of {} for {}",
            resource.max_duration, resource.name
        )));
    }
    if duration < resource.min_duration {
        return Err(Refusal::Invalid(format!(
            "duration {duration} is shorter than the minimum of {} for {}",
            resource.min_duration, resource.name
        )));
    }
    if resource.require_reason && ask.reason.is_none() {
        return Err(Refusal::Invalid(format!(
            "{} requires a reason",
            resource.name
        )));
    }
    match (&ask.ticket, &resource.ticket_pattern) {
        (None, _) if resource.require_ticket => {
            return Err(Refusal::Invalid(format!(
                "{} requires a ticket reference",
                resource.name
            )));
        }
        (Some(ticket), Some(pattern)) if !pattern.is_match(ticket.as_str()) => {
            return Err(Refusal::Invalid(format!(
                "ticket '{ticket}' does not match {} required by {}",
                pattern.as_str(),
                resource.name
            )));
        }
        _ => {}
    }
    Ok(duration)
}

/// How an extension of a lease on a resource is decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionPlan {
    /// The limits.
    pub limits: ExtensionLimits,
    /// The stage whose quorum must approve; `None` for auto-approval.
    pub stage: Option<RouteStage>,
}

impl Snapshot {
    /// Whether and how `holder` may extend a lease on `resource`, by the policy in force now.
    pub fn plan_extension(
        &self,
        holder: &Principal,
        resource: &ResourceName,
    ) -> Result<ExtensionPlan, Refusal> {
        let found = self
            .policy
            .resource(resource)
            .ok_or_else(|| Refusal::UnknownResource(resource.clone()))?;
        let rule = found
            .extensions
            .ok_or_else(|| Refusal::Invalid(format!("{resource} does not allow extensions")))?;
        let limits = ExtensionLimits {
            max_count: rule.max_count,
            max_total: rule.max_total,
        };
        let stage = match (rule.approval, &found.approval) {
            (ExtensionApproval::FirstStage, Approval::Stages(stages)) => {
                let first = &stages[0];
                let approvers = resolve(&self.directory, found, holder, &first.approvers);
                if approvers.len() < first.quorum as usize {
                    return Err(Refusal::Unroutable(format!(
                        "an extension on {resource} needs {} approval(s) at stage '{}' but it has {} eligible approver(s) other than {holder}",
                        first.quorum,
                        first.name,
                        approvers.len()
                    )));
                }
                Some(RouteStage {
                    name: first.name.clone(),
                    quorum: first.quorum,
                    approvers,
                })
            }
            _ => None,
        };
        Ok(ExtensionPlan { limits, stage })
    }
}

/// Active principals named by `refs`, never the requester.
pub(super) fn resolve(
    directory: &Directory,
    resource: &Resource,
    requester: &Principal,
    refs: &[ApproverRef],
) -> BTreeSet<Principal> {
    let mut out = BTreeSet::new();
    for approver in refs {
        match approver {
            ApproverRef::Manager => {
                if let Some(manager) = directory.person(requester).and_then(|p| p.manager.clone()) {
                    out.insert(manager);
                }
            }
            ApproverRef::Owners => {
                out.extend(resolve(directory, resource, requester, &resource.owners))
            }
            ApproverRef::Group(group) => out.extend(directory.members(group).cloned()),
            ApproverRef::Principal(principal) => {
                out.insert(principal.clone());
            }
        }
    }
    out.retain(|principal| {
        principal != requester && directory.person(principal).is_some_and(|p| p.is_active())
    });
    out
}

/// One person counts once across all stages, so the route needs as many distinct people as
/// the quorums add up to, each eligible where they count.
fn check_distinct_approvers(resource: &ResourceName, stages: &[RouteStage]) -> Result<(), Refusal> {
    let route = Route {
        stages: stages.to_vec(),
    };
    match route.shortfall(0, 0, &BTreeSet::new()) {
        None => Ok(()),
        Some((needed, found)) => Err(Refusal::Unroutable(format!(
            "{resource} cannot be approved: its stages need {needed} distinct approvers but only {found} can be found"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::{Directory, Policy};

    fn snapshot(policy: &str, directory: &str) -> Snapshot {
        Snapshot {
            policy: Policy::parse(policy, Path::new("policy.toml")).unwrap(),
            directory: Directory::parse(directory, Path::new("directory.toml")).unwrap(),
        }
    }

    const DIRECTORY: &str = r#"
        [principals.engineer]
        groups = ["engineering"]
        manager = "manager"
        [principals.manager]
        groups = ["engineering-managers"]
        [principals.security]
        groups = ["security"]
        [principals.both]
        groups = ["security"]
        status = "suspended"
        [principals.loner]
        groups = ["engineering"]
    "#;

    const POLICY: &str = r#"
        [resources.prod]
        provisioner = "files"
        eligible_groups = ["engineering"]
        default_duration = "30m"
        max_duration = "1h"
        require_reason = true
        require_ticket = true
        ticket_pattern = "^[A-Z]+-[0-9]+$"
        [[resources.prod.stages]]
        name = "manager"
        approvers = ["manager"]
        [[resources.prod.stages]]
        name = "security"
        approvers = ["group:security"]
    "#;

    fn ask(duration: Option<&str>, reason: Option<&str>, ticket: Option<&str>) -> Ask {
        Ask {
            ssh_key: None,
            resource: ResourceName::parse("prod").unwrap(),
            duration: duration.map(|d| LeaseDuration::parse(d).unwrap()),
            reason: reason.map(|r| Reason::parse(r).unwrap()),
            ticket: ticket.map(|t| Ticket::parse(t).unwrap()),
        }
    }

    fn engineer() -> Principal {
        Principal::parse("engineer").unwrap()
    }

    #[test]
    fn auto_approve_groups_skip_the_stages_for_their_members_only() {
        let policy = POLICY.replace(
            "ticket_pattern = \"^[A-Z]+-[0-9]+$\"",
            "ticket_pattern = \"^[A-Z]+-[0-9]+$\"\n        auto_approve_groups = [\"sre\"]",
        );
        let directory =
            format!("{DIRECTORY}\n[principals.oncall]\ngroups = [\"engineering\", \"sre\"]\n");
        let s = snapshot(&policy, &directory);
        let ask = ask(None, Some("r"), Some("INC-1"));
        let oncall = Principal::parse("oncall").unwrap();
        assert!(s.evaluate(&oncall, &ask).unwrap().route.stages.is_empty());
        assert_eq!(s.evaluate(&engineer(), &ask).unwrap().route.stages.len(), 2);
        let auto = policy.replace("[[resources.prod.stages]]\n        name = \"manager\"\n        approvers = [\"manager\"]\n        [[resources.prod.stages]]\n        name = \"security\"\n        approvers = [\"group:security\"]", "auto_approve = true");
        let error = Policy::parse(&auto, Path::new("policy.toml")).unwrap_err();
        assert!(error.to_string().contains("auto_approve_groups"), "{error}");
    }

    #[test]
    fn resolves_the_route_with_active_people_only() {
        let s = snapshot(POLICY, DIRECTORY);
        let evaluation = s
            .evaluate(&engineer(), &ask(None, Some("r"), Some("INC-1")))
            .unwrap();
        assert_eq!(evaluation.duration.to_string(), "30m");
        let names: Vec<Vec<&str>> = evaluation
            .route
            .stages
            .iter()
            .map(|s| s.approvers.iter().map(Principal::as_str).collect())
            .collect();
        assert_eq!(names, vec![vec!["manager"], vec!["security"]]);
    }

    #[test]
    fn refusals_say_why() {
        let s = snapshot(POLICY, DIRECTORY);
        let over = s
            .evaluate(&engineer(), &ask(Some("2h"), Some("r"), Some("INC-1")))
            .unwrap_err();
        assert_eq!(
            over.to_string(),
            "duration 2h exceeds the maximum of 1h for prod"
        );
        let no_reason = s
            .evaluate(&engineer(), &ask(None, None, Some("INC-1")))
            .unwrap_err();
        assert_eq!(no_reason.to_string(), "prod requires a reason");
        let no_ticket = s
            .evaluate(&engineer(), &ask(None, Some("r"), None))
            .unwrap_err();
        assert_eq!(no_ticket.to_string(), "prod requires a ticket reference");
        let bad_ticket = s
            .evaluate(&engineer(), &ask(None, Some("r"), Some("inc1")))
            .unwrap_err();
        assert!(
            bad_ticket
                .to_string()
                .contains("does not match ^[A-Z]+-[0-9]+$")
        );
        let stranger = s
            .evaluate(
                &Principal::parse("security").unwrap(),
                &ask(None, Some("r"), Some("A-1")),
            )
            .unwrap_err();
        assert!(matches!(stranger, Refusal::NotEligible { .. }));
        let unknown = Ask {
            ssh_key: None,
            resource: ResourceName::parse("nope").unwrap(),
            ..ask(None, None, None)
        };
        assert!(matches!(
            s.evaluate(&engineer(), &unknown),
            Err(Refusal::UnknownResource(_))
        ));
    }

    #[test]
    fn a_route_nobody_can_satisfy_is_refused_up_front() {
        let s = snapshot(POLICY, DIRECTORY);
        let error = s
            .evaluate(
                &Principal::parse("loner").unwrap(),
                &ask(None, Some("r"), Some("A-1")),
            )
            .unwrap_err();
        assert!(error.to_string().contains("names no manager"), "{error}");
    }

    #[test]
    fn distinct_people_are_needed_across_stages() {
        let policy = POLICY.replace(
            "approvers = [\"group:security\"]",
            "approvers = [\"manager\"]",
        );
        let s = snapshot(&policy, DIRECTORY);
        let error = s
            .evaluate(&engineer(), &ask(None, Some("r"), Some("A-1")))
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("2 distinct approvers but only 1"),
            "{error}"
        );
    }
}
