//! The policy file: resources, their limits and their approval routes.
//!
//! Longer than most files: each field of the policy file is parsed and validated here with an
//! error naming the file, the entry and the field; the rules of one file stay together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::error::{At, Invalid, LoadError, parse_toml, read};
use crate::hash::content_version;
use crate::model::{GroupName, LeaseDuration, Principal, Rate, ResourceName};

/// Who may approve at a stage, as written in the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApproverRef {
    /// The requester's manager (`manager`).
    Manager,
    /// The resource's owners (`owners`).
    Owners,
    /// Every member of a group (`group:NAME`).
    Group(GroupName),
    /// One principal (`user:NAME`).
    Principal(Principal),
}

impl ApproverRef {
    fn parse(text: &str) -> Result<Self, String> {
        let expected = "expected manager, owners, group:NAME or user:NAME";
        match text.split_once(':') {
            None if text == "manager" => Ok(Self::Manager),
            None if text == "owners" => Ok(Self::Owners),
            Some(("group", name)) => GroupName::parse(name)
                .map(Self::Group)
                .map_err(|e| e.to_string()),
            Some(("user", name)) => Principal::parse(name)
                .map(Self::Principal)
                .map_err(|e| e.to_string()),
            _ => Err(format!("unknown approver '{text}': {expected}")),
        }
    }
}

/// One stage of a route as written in the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageRule {
    /// Name shown to people.
    pub name: String,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// Who may approve.
    pub approvers: Vec<ApproverRef>,
}

/// How requests for a resource get approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    /// No human approval.
    Auto,
    /// Ordered stages.
    Stages(Vec<StageRule>),
}

/// Break-glass settings of a resource: who may break glass, for how long, and the review that
/// every break-glass grant opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakGlassRule {
    /// Groups whose members may break glass.
    pub groups: BTreeSet<GroupName>,
    /// Longest break-glass lease (at most the resource's maximum).
    pub max_duration: LeaseDuration,
    /// The group whose members review break-glass grants (never the holder).
    pub review_group: GroupName,
    /// How long after the grant the review is due.
    pub review_within: LeaseDuration,
    /// Who is told when a review is overdue (besides the reviewers).
    pub escalate_to: Vec<ApproverRef>,
    /// How often an overdue review is reminded about until closed.
    pub remind_every: LeaseDuration,
    /// Most break-glass requests per principal within `rate_window`.
    pub rate_limit: u32,
    /// The window of the rate limit.
    pub rate_window: LeaseDuration,
    /// While the principal has an overdue or (recently) unjustified review, their next
    /// break-glass needs one approval from the review group instead of being immediate.
    pub approval_when_unreviewed: bool,
    /// How long an unjustified verdict keeps requiring that approval.
    pub unjustified_window: LeaseDuration,
    /// Whether an unjustified verdict revokes the lease at once if it is still active.
    pub revoke_on_unjustified: bool,
}

/// What happens to an active lease whose holder is no longer eligible for its resource after
/// a policy or directory reload (a mover; leavers always lose their leases).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnIneligible {
    /// The lease is revoked at once (the default).
    #[default]
    Revoke,
    /// The lease runs to its end (it cannot be extended) but is flagged and audited
    /// (`lease.flagged`) for review.
    Flag,
}

impl OnIneligible {
    /// The policy's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoke => "revoke",
            Self::Flag => "flag",
        }
    }
}

/// Who approves an extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtensionApproval {
    /// Within the limits, extensions apply at once.
    Auto,
    /// An extension waits for the quorum of the resource's first approval stage.
    FirstStage,
}

impl ExtensionApproval {
    /// The policy's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::FirstStage => "first_stage",
        }
    }
}

/// Whether and how far active leases of a resource may be extended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtensionRule {
    /// Most extensions per lease.
    pub max_count: u32,
    /// Longest lifetime of a lease, from its grant to its end after every extension.
    pub max_total: LeaseDuration,
    /// Who approves.
    pub approval: ExtensionApproval,
}

/// One resource of the policy.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Its name.
    pub name: ResourceName,
    /// What it is.
    pub description: String,
    /// Name of the provisioner (from the daemon configuration) that grants it.
    pub provisioner: String,
    /// Groups whose members may request it.
    pub eligible_groups: BTreeSet<GroupName>,
    /// Owners, for stages that name `owners`.
    pub owners: Vec<ApproverRef>,
    /// Lease length when the request names none.
    pub default_duration: LeaseDuration,
    /// Shortest lease.
    pub min_duration: LeaseDuration,
    /// Longest lease.
    pub max_duration: LeaseDuration,
    /// How long a request may wait for decisions.
    pub request_ttl: LeaseDuration,
    /// Whether a reason is required.
    pub require_reason: bool,
    /// Whether a ticket reference is required.
    pub require_ticket: bool,
    /// Pattern a ticket must match, when set.
    pub ticket_pattern: Option<regex_lite::Regex>,
    /// The approval route.
    pub approval: Approval,
    /// Break-glass settings, when break-glass is allowed.
    pub break_glass: Option<BreakGlassRule>,
    /// Extension limits, when extensions are allowed.
    pub extensions: Option<ExtensionRule>,
    /// Whether a principal holding an active lease may get another one on the resource (to
    /// run longer when extensions are off, or to break glass while holding a normal lease).
    pub allow_overlap: bool,
    /// What becomes of an active lease whose holder stops being eligible.
    pub on_ineligible: OnIneligible,
    /// Requesters in these groups are approved without the stages (those of the others go
    /// through them).
    pub auto_approve_groups: BTreeSet<GroupName>,
    /// Rates of this resource's own, in place of the daemon's global ones.
    pub rate_limits: ResourceRates,
}

/// A resource's own rate limits; `None` leaves the daemon's global rate in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceRates {
    /// Submissions per principal for this resource.
    pub submit: Option<Rate>,
    /// Extension requests per principal for this resource.
    pub extend: Option<Rate>,
}

/// The loaded policy.
#[derive(Clone, Debug)]
pub struct Policy {
    version: String,
    resources: BTreeMap<ResourceName, Resource>,
    /// Groups whose members may see every request and query the audit trail.
    pub auditor_groups: BTreeSet<GroupName>,
    /// Groups whose members may make administrative calls.
    pub admin_groups: BTreeSet<GroupName>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "default_auditor_groups")]
    auditor_groups: Vec<String>,
    #[serde(default = "default_admin_groups")]
    admin_groups: Vec<String>,
    #[serde(default)]
    resources: BTreeMap<String, RawResource>,
}

fn default_auditor_groups() -> Vec<String> {
    vec!["auditors".to_owned()]
}

fn default_admin_groups() -> Vec<String> {
    vec!["admins".to_owned()]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    #[serde(default)]
    description: String,
    provisioner: String,
    eligible_groups: Vec<String>,
    #[serde(default)]
    owners: Vec<String>,
    default_duration: String,
    max_duration: String,
    min_duration: Option<String>,
    request_ttl: Option<String>,
    #[serde(default)]
    require_reason: bool,
    #[serde(default)]
    require_ticket: bool,
    ticket_pattern: Option<String>,
    #[serde(default)]
    auto_approve: bool,
    #[serde(default)]
    auto_approve_groups: Vec<String>,
    #[serde(default)]
    stages: Vec<RawStage>,
    break_glass: Option<RawBreakGlass>,
    extensions: Option<RawExtensions>,
    #[serde(default)]
    allow_overlap: bool,
    on_ineligible: Option<String>,
    #[serde(default)]
    rate_limits: RawRates,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRates {
    submit: Option<String>,
    extend: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtensions {
    max_count: u32,
    max_total: String,
    approval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    approvers: Vec<String>,
    #[serde(default = "one")]
    quorum: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakGlass {
    groups: Vec<String>,
    max_duration: Option<String>,
    review_group: String,
    review_within: Option<String>,
    #[serde(default)]
    escalate_to: Vec<String>,
    remind_every: Option<String>,
    rate_limit: Option<u32>,
    rate_window: Option<String>,
    approval_when_unreviewed: Option<bool>,
    unjustified_window: Option<String>,
    #[serde(default)]
    revoke_on_unjustified: bool,
}

/// Reviews are due this long after a break-glass grant unless the resource says otherwise.
const DEFAULT_REVIEW_WITHIN: Duration = Duration::from_secs(24 * 3600);
/// Overdue reviews are reminded about this often unless the resource says otherwise.
const DEFAULT_REMIND_EVERY: Duration = Duration::from_secs(4 * 3600);
/// Break-glass requests per principal per window unless the resource says otherwise.
const DEFAULT_RATE_LIMIT: u32 = 3;
/// The rate-limit window unless the resource says otherwise.
const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How long an unjustified verdict counts unless the resource says otherwise.
const DEFAULT_UNJUSTIFIED_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// Requests wait this long for decisions unless the resource says otherwise.
const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(3600);
/// The shortest lease unless the resource says otherwise.
const DEFAULT_MIN_DURATION: Duration = Duration::from_secs(60);
/// Most approvals one stage may ask for.
const MAX_QUORUM: u32 = 32;

fn groups(at: &At<'_>, field: &str, raw: &[String]) -> Result<BTreeSet<GroupName>, Invalid> {
    raw.iter()
        .enumerate()
        .map(|(index, group)| {
            GroupName::parse(group)
                .map_err(|e| at.invalid(format!("{field}[{index}]"), e.to_string()))
        })
        .collect()
}

fn duration(at: &At<'_>, field: &str, raw: &str) -> Result<LeaseDuration, Invalid> {
    LeaseDuration::parse(raw).map_err(|e| at.invalid(field, e.to_string()))
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        Self::parse(&read(path)?, path)
    }

    /// Parses and validates policy text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, LoadError> {
        let raw: RawPolicy = parse_toml(text, file)?;
        let top = At {
            file,
            entry: "policy".to_owned(),
        };
        let auditor_groups = groups(&top, "auditor_groups", &raw.auditor_groups)?;
        let admin_groups = groups(&top, "admin_groups", &raw.admin_groups)?;
        let mut resources = BTreeMap::new();
        for (name, raw_resource) in &raw.resources {
            let at = At {
                file,
                entry: format!("resources.{name}"),
            };
            let resource = Self::parse_resource(&at, name, raw_resource)?;
            resources.insert(resource.name.clone(), resource);
        }
        Ok(Self {
            version: content_version(text.as_bytes()),
            resources,
            auditor_groups,
            admin_groups,
        })
    }

    fn parse_resource(at: &At<'_>, name: &str, raw: &RawResource) -> Result<Resource, Invalid> {
        let name = ResourceName::parse(name).map_err(|e| at.invalid("", e.to_string()))?;
        if raw.provisioner.trim().is_empty() {
            return Err(at.invalid(
                "provisioner",
                "must name a provisioner of the daemon configuration",
            ));
        }
        let eligible_groups = groups(at, "eligible_groups", &raw.eligible_groups)?;
        if eligible_groups.is_empty() {
            return Err(at.invalid("eligible_groups", "must name at least one group"));
        }
        let mut owners = Vec::new();
        for (index, owner) in raw.owners.iter().enumerate() {
            let field = format!("owners[{index}]");
            match ApproverRef::parse(owner).map_err(|e| at.invalid(&field, e))? {
                owner @ (ApproverRef::Group(_) | ApproverRef::Principal(_)) => owners.push(owner),
                _ => return Err(at.invalid(field, "owners are group:NAME or user:NAME")),
            }
        }
        let default_duration = duration(at, "default_duration", &raw.default_duration)?;
        let max_duration = duration(at, "max_duration", &raw.max_duration)?;
        let min_duration = match &raw.min_duration {
            Some(text) => duration(at, "min_duration", text)?,
            None => LeaseDuration::new(DEFAULT_MIN_DURATION.min(max_duration.get()))
                .map_err(|e| at.invalid("min_duration", e.to_string()))?,
        };
        if min_duration > max_duration {
            return Err(at.invalid(
                "min_duration",
                format!("{min_duration} is longer than max_duration {max_duration}"),
            ));
        }
        if default_duration > max_duration || default_duration < min_duration {
            return Err(at.invalid(
                "default_duration",
                format!("{default_duration} is outside min_duration {min_duration} .. max_duration {max_duration}"),
            ));
        }
        let request_ttl = match &raw.request_ttl {
            Some(text) => duration(at, "request_ttl", text)?,
            None => LeaseDuration::new(DEFAULT_REQUEST_TTL)
                .map_err(|e| at.invalid("request_ttl", e.to_string()))?,
        };
        let ticket_pattern = match &raw.ticket_pattern {
            None => None,
            Some(pattern) => Some(
                regex_lite::Regex::new(pattern)
                    .map_err(|e| at.invalid("ticket_pattern", format!("invalid pattern: {e}")))?,
            ),
        };
        let approval = match (raw.auto_approve, raw.stages.is_empty()) {
            (true, true) => Approval::Auto,
            (true, false) => {
                return Err(at.invalid(
                    "auto_approve",
                    "auto_approve = true and stages exclude each other",
                ));
            }
            (false, true) => {
                return Err(at.invalid(
                    "stages",
                    "declare at least one stage, or set auto_approve = true",
                ));
            }
            (false, false) => Approval::Stages(Self::stages(at, &raw.stages, !owners.is_empty())?),
        };
        let mut auto_approve_groups = BTreeSet::new();
        for (index, group) in raw.auto_approve_groups.iter().enumerate() {
            auto_approve_groups.insert(GroupName::parse(group).map_err(|error| {
                at.invalid(format!("auto_approve_groups[{index}]"), error.to_string())
            })?);
        }
        if !auto_approve_groups.is_empty() && approval == Approval::Auto {
            return Err(at.invalid(
                "auto_approve_groups",
                "the resource is auto-approved for everyone; auto_approve_groups goes with stages",
            ));
        }
        let break_glass = match &raw.break_glass {
            None => None,
            Some(raw_break_glass) => Some(Self::break_glass(
                at,
                raw_break_glass,
                max_duration,
                !owners.is_empty(),
            )?),
        };
        let extensions = match &raw.extensions {
            None => None,
            Some(raw_extensions) => Some(Self::extensions(
                at,
                raw_extensions,
                min_duration,
                &approval,
            )?),
        };
        let on_ineligible = match raw.on_ineligible.as_deref() {
            None | Some("revoke") => OnIneligible::Revoke,
            Some("flag") => OnIneligible::Flag,
            Some(other) => {
                return Err(at.invalid(
                    "on_ineligible",
                    format!("unknown action '{other}': expected revoke or flag"),
                ));
            }
        };
        let rate = |field: &str, raw: &Option<String>| {
            raw.as_deref()
                .map(|raw| raw.parse::<Rate>())
                .transpose()
                .map_err(|e| at.invalid(format!("rate_limits.{field}"), e.to_string()))
        };
        let rate_limits = ResourceRates {
            submit: rate("submit", &raw.rate_limits.submit)?,
            extend: rate("extend", &raw.rate_limits.extend)?,
        };
        Ok(Resource {
            rate_limits,
            name,
            description: raw.description.trim().to_owned(),
            provisioner: raw.provisioner.trim().to_owned(),
            eligible_groups,
            owners,
            default_duration,
            min_duration,
            max_duration,
            request_ttl,
            require_reason: raw.require_reason,
            require_ticket: raw.require_ticket,
            ticket_pattern,
            approval,
            break_glass,
            extensions,
            allow_overlap: raw.allow_overlap,
            on_ineligible,
            auto_approve_groups,
        })
    }

    fn extensions(
        at: &At<'_>,
        raw: &RawExtensions,
        min_duration: LeaseDuration,
        approval: &Approval,
    ) -> Result<ExtensionRule, Invalid> {
        if raw.max_count == 0 {
            return Err(at.invalid(
                "extensions.max_count",
                "must be at least 1 (leave [extensions] out to forbid extensions)",
            ));
        }
        let max_total = duration(at, "extensions.max_total", &raw.max_total)?;
        if max_total <= min_duration {
            return Err(at.invalid(
                "extensions.max_total",
                format!("{max_total} leaves no room beyond min_duration {min_duration}"),
            ));
        }
        let has_stages = matches!(approval, Approval::Stages(_));
        let approval = match raw.approval.as_deref() {
            None if has_stages => ExtensionApproval::FirstStage,
            None | Some("auto") => ExtensionApproval::Auto,
            Some("first_stage") if has_stages => ExtensionApproval::FirstStage,
            Some("first_stage") => {
                return Err(at.invalid(
                    "extensions.approval",
                    "first_stage needs approval stages, and the resource is auto-approved",
                ));
            }
            Some(other) => {
                return Err(at.invalid(
                    "extensions.approval",
                    format!("unknown approval '{other}': expected auto or first_stage"),
                ));
            }
        };
        Ok(ExtensionRule {
            max_count: raw.max_count,
            max_total,
            approval,
        })
    }

    fn break_glass(
        at: &At<'_>,
        raw: &RawBreakGlass,
        resource_max: LeaseDuration,
        has_owners: bool,
    ) -> Result<BreakGlassRule, Invalid> {
        let or_default = |field: &str, text: &Option<String>, default: Duration| match text {
            Some(text) => duration(at, &format!("break_glass.{field}"), text),
            None => LeaseDuration::new(default)
                .map_err(|e| at.invalid(format!("break_glass.{field}"), e.to_string())),
        };
        let groups = groups(at, "break_glass.groups", &raw.groups)?;
        if groups.is_empty() {
            return Err(at.invalid("break_glass.groups", "must name at least one group"));
        }
        let max_duration = match &raw.max_duration {
            Some(text) => duration(at, "break_glass.max_duration", text)?,
            None => resource_max,
        };
        if max_duration > resource_max {
            return Err(at.invalid(
                "break_glass.max_duration",
                format!("{max_duration} is longer than max_duration {resource_max}"),
            ));
        }
        let review_group = GroupName::parse(&raw.review_group)
            .map_err(|e| at.invalid("break_glass.review_group", e.to_string()))?;
        let mut escalate_to = Vec::new();
        for (index, target) in raw.escalate_to.iter().enumerate() {
            let field = format!("break_glass.escalate_to[{index}]");
            let target = ApproverRef::parse(target).map_err(|e| at.invalid(&field, e))?;
            if target == ApproverRef::Owners && !has_owners {
                return Err(at.invalid(field, "names owners, but the resource has no owners"));
            }
            escalate_to.push(target);
        }
        if escalate_to.is_empty() {
            return Err(at.invalid(
                "break_glass.escalate_to",
                "name who is told when a review is overdue (manager, owners, group:NAME or user:NAME)",
            ));
        }
        let remind_every = or_default("remind_every", &raw.remind_every, DEFAULT_REMIND_EVERY)?;
        if remind_every.get() < Duration::from_secs(60) {
            return Err(at.invalid("break_glass.remind_every", "at least 1 minute"));
        }
        let rate_limit = raw.rate_limit.unwrap_or(DEFAULT_RATE_LIMIT);
        if rate_limit == 0 {
            return Err(at.invalid("break_glass.rate_limit", "must be at least 1"));
        }
        Ok(BreakGlassRule {
            groups,
            max_duration,
            review_group,
            review_within: or_default("review_within", &raw.review_within, DEFAULT_REVIEW_WITHIN)?,
            escalate_to,
            remind_every,
            rate_limit,
            rate_window: or_default("rate_window", &raw.rate_window, DEFAULT_RATE_WINDOW)?,
            approval_when_unreviewed: raw.approval_when_unreviewed.unwrap_or(true),
            unjustified_window: or_default(
                "unjustified_window",
                &raw.unjustified_window,
                DEFAULT_UNJUSTIFIED_WINDOW,
            )?,
            revoke_on_unjustified: raw.revoke_on_unjustified,
        })
    }

    fn stages(at: &At<'_>, raw: &[RawStage], has_owners: bool) -> Result<Vec<StageRule>, Invalid> {
        let mut names = BTreeSet::new();
        let mut stages = Vec::new();
        for (index, stage) in raw.iter().enumerate() {
            let field = |name: &str| format!("stages[{index}].{name}");
            let name = stage.name.trim();
            if name.is_empty() || name.len() > 64 {
                return Err(at.invalid(field("name"), "must be 1 to 64 characters"));
            }
            if !names.insert(name.to_owned()) {
                return Err(at.invalid(field("name"), format!("stage name '{name}' is used twice")));
            }
            if stage.quorum == 0 || stage.quorum > MAX_QUORUM {
                return Err(at.invalid(
                    field("quorum"),
                    format!("must be between 1 and {MAX_QUORUM}"),
                ));
            }
            if stage.approvers.is_empty() {
                return Err(at.invalid(field("approvers"), "must name at least one approver"));
            }
            let mut approvers = Vec::new();
            for (position, approver) in stage.approvers.iter().enumerate() {
                let approver_field = field(&format!("approvers[{position}]"));
                let approver =
                    ApproverRef::parse(approver).map_err(|e| at.invalid(&approver_field, e))?;
                if approver == ApproverRef::Owners && !has_owners {
                    return Err(at.invalid(
                        approver_field,
                        "names owners, but the resource has no owners",
                    ));
                }
                approvers.push(approver);
            }
            stages.push(StageRule {
                name: name.to_owned(),
                quorum: stage.quorum,
                approvers,
            });
        }
        Ok(stages)
    }

    /// Content hash of the file this policy came from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The resource called `name`.
    pub fn resource(&self, name: &ResourceName) -> Option<&Resource> {
        self.resources.get(name)
    }

    /// Every resource, in name order.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, LoadError> {
        Policy::parse(text, Path::new("policy.toml"))
    }

    const BASE: &str = r#"
        [resources.db]
        provisioner = "files"
        eligible_groups = ["engineering"]
        default_duration = "1h"
        max_duration = "4h"
    "#;

    #[test]
    fn auto_and_staged_routes() {
        let policy = parse(&format!("{BASE}auto_approve = true\n")).unwrap();
        let db = policy
            .resource(&ResourceName::parse("db").unwrap())
            .unwrap();
        assert_eq!(db.approval, Approval::Auto);
        assert_eq!(db.request_ttl.get(), DEFAULT_REQUEST_TTL);
        let policy = parse(&format!(
            "{BASE}[[resources.db.stages]]\nname = \"m\"\napprovers = [\"manager\", \"group:sec\", \"user:bob\"]\n"
        ))
        .unwrap();
        let db = policy
            .resource(&ResourceName::parse("db").unwrap())
            .unwrap();
        let Approval::Stages(stages) = &db.approval else {
            panic!()
        };
        assert_eq!(stages[0].approvers.len(), 3);
        assert_eq!(stages[0].quorum, 1);
        assert!(policy.version().starts_with("sha256:"));
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let cases = [
            (
                BASE.to_owned(),
                "resources.db.stages: declare at least one stage",
            ),
            (
                BASE.replace("\"4h\"", "\"forever\""),
                "resources.db.max_duration: invalid duration 'forever'",
            ),
            (
                BASE.replace("\"1h\"", "\"5h\""),
                "resources.db.default_duration: 5h is outside",
            ),
            (
                format!("{BASE}[[resources.db.stages]]\nname = \"m\"\napprovers = [\"grp:x\"]\n"),
                "resources.db.stages[0].approvers[0]: unknown approver 'grp:x'",
            ),
            (
                format!("{BASE}[[resources.db.stages]]\nname = \"m\"\napprovers = [\"owners\"]\n"),
                "resources.db.stages[0].approvers[0]: names owners, but the resource has no owners",
            ),
            (
                format!("{BASE}auto_approve = true\nticket_pattern = \"([\"\n"),
                "resources.db.ticket_pattern: invalid pattern",
            ),
            (
                format!(
                    "{BASE}auto_approve = true\n[resources.db.break_glass]\ngroups = [\"sre\"]\nreview_group = \"security\"\nescalate_to = [\"manager\"]\nmax_duration = \"5h\"\n"
                ),
                "resources.db.break_glass.max_duration: 5h is longer than max_duration 4h",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.starts_with("policy.toml: "), "{error}");
            assert!(
                error.contains(expected),
                "{error} does not contain {expected}"
            );
        }
    }

    #[test]
    fn break_glass_review_rules_default_and_validate() {
        let text = format!(
            "{BASE}auto_approve = true\n[resources.db.break_glass]\ngroups = [\"sre\"]\nreview_group = \"security\"\nescalate_to = [\"manager\", \"group:admins\"]\n"
        );
        let policy = parse(&text).unwrap();
        let rule = policy
            .resource(&ResourceName::parse("db").unwrap())
            .unwrap()
            .break_glass
            .clone()
            .unwrap();
        assert_eq!(rule.max_duration.to_string(), "4h");
        assert_eq!(rule.review_within.get(), DEFAULT_REVIEW_WITHIN);
        assert_eq!(rule.rate_limit, 3);
        assert!(rule.approval_when_unreviewed);
        assert!(!rule.revoke_on_unjustified);
        assert_eq!(rule.escalate_to.len(), 2);
        for (bad, field) in [
            (
                "review_group = \"security\"",
                "missing field `review_group`",
            ),
            (
                "escalate_to = [\"manager\", \"group:admins\"]",
                "break_glass.escalate_to: name who is told",
            ),
        ] {
            let broken = text.replace(bad, "");
            let error = parse(&broken).unwrap_err().to_string();
            assert!(error.contains(field), "{error}");
        }
        let zero = text.replace("groups = [\"sre\"]", "groups = [\"sre\"]\nrate_limit = 0");
        assert!(
            parse(&zero)
                .unwrap_err()
                .to_string()
                .contains("resources.db.break_glass.rate_limit: must be at least 1")
        );
    }

    #[test]
    fn on_ineligible_defaults_to_revoke_and_rejects_unknown_actions() {
        let db = |text: &str| {
            parse(text).map(|policy| {
                policy
                    .resource(&ResourceName::parse("db").unwrap())
                    .unwrap()
                    .on_ineligible
            })
        };
        assert_eq!(
            db(&format!("{BASE}auto_approve = true\n")).unwrap(),
            OnIneligible::Revoke
        );
        assert_eq!(
            db(&format!(
                "{BASE}auto_approve = true\non_ineligible = \"flag\"\n"
            ))
            .unwrap(),
            OnIneligible::Flag
        );
        let error = db(&format!(
            "{BASE}auto_approve = true\non_ineligible = \"warn\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("resources.db.on_ineligible: unknown action 'warn'"),
            "{error}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_a_location() {
        let error = parse(&format!(
            "{BASE}auto_approve = true\nmax_durration = \"1h\"\n"
        ))
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("unknown field `max_durration`"), "{text}");
        assert!(text.contains("line"), "{text}");
    }
}
