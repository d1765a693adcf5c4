//! Which audit events a query or an export asks for.

use serde::{Deserialize, Serialize};

use super::Event;
use crate::audit::Actor;
use crate::model::{Principal, ResourceName, Timestamp};

/// An action filter: one action (`lease.expired`) or a family (`lease.*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ActionFilter {
    /// Exactly this action.
    Exact(String),
    /// Every action starting with this prefix (which ends in a dot).
    Family(String),
}

impl ActionFilter {
    /// Parses `text` against the known action names, so that a typo is an error rather than an
    /// empty answer.
    pub fn parse(text: &str, known: &[&str]) -> Result<Self, String> {
        let text = text.trim();
        if let Some(family) = text.strip_suffix('*') {
            if family.ends_with('.') && known.iter().any(|a| a.starts_with(family)) {
                return Ok(Self::Family(family.to_owned()));
            }
        } else if known.contains(&text) {
            return Ok(Self::Exact(text.to_owned()));
        }
        let families: std::collections::BTreeSet<&str> = known
            .iter()
            .filter_map(|a| a.split_once('.').map(|(family, _)| family))
            .collect();
        Err(format!(
            "unknown action '{}': use one of {} or a family such as {}",
            crate::model::one_line(&text.chars().take(64).collect::<String>()),
            known.join(", "),
            families
                .iter()
                .map(|f| format!("{f}.*"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Whether `action` passes.
    pub fn matches(&self, action: &str) -> bool {
        match self {
            Self::Exact(exact) => action == exact,
            Self::Family(prefix) => action.starts_with(prefix.as_str()),
        }
    }
}

impl From<ActionFilter> for String {
    fn from(filter: ActionFilter) -> Self {
        match filter {
            ActionFilter::Exact(exact) => exact,
            ActionFilter::Family(prefix) => format!("{prefix}*"),
        }
    }
}

impl TryFrom<String> for ActionFilter {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.strip_suffix('*') {
            Some(prefix) => Ok(Self::Family(prefix.to_owned())),
            None => Ok(Self::Exact(text)),
        }
    }
}

/// The events wanted: every given condition must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Events about this principal (the requester or holder) or caused by them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// Events about this resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceName>,
    /// Events of this action or family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionFilter>,
    /// At or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

impl Filter {
    /// Whether no condition is set: every event passes.
    pub fn is_everything(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        if let Some(principal) = &self.principal {
            let about = event.principal.as_ref() == Some(principal);
            let by = matches!(&event.actor, Actor::Principal(actor) if actor == principal);
            if !about && !by {
                return false;
            }
        }
        if let Some(resource) = &self.resource {
            if event.resource.as_ref() != Some(resource) {
                return false;
            }
        }
        if let Some(action) = &self.action {
            if !action.matches(&event.action) {
                return false;
            }
        }
        if self.since.is_some_and(|since| event.at < since) {
            return false;
        }
        if self.until.is_some_and(|until| event.at >= until) {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Draft, GENESIS};
    use crate::model::fixtures::{p, t};

    const KNOWN: &[&str] = &["lease.expired", "lease.granted", "request.denied"];

    #[test]
    fn actions_must_be_known() {
        assert_eq!(
            ActionFilter::parse("lease.expired", KNOWN).unwrap(),
            ActionFilter::Exact("lease.expired".into())
        );
        let family = ActionFilter::parse("lease.*", KNOWN).unwrap();
        assert!(family.matches("lease.granted") && !family.matches("request.denied"));
        let error = ActionFilter::parse("lease.expird", KNOWN).unwrap_err();
        assert!(error.contains("unknown action 'lease.expird'"), "{error}");
        assert!(error.contains("lease.*, request.*"), "{error}");
        assert!(ActionFilter::parse("nothing.*", KNOWN).is_err());
    }

    #[test]
    fn principal_matches_the_subject_or_the_actor() {
        let mut draft = Draft::new(t(10), Actor::Principal(p("bob")), "request.denied");
        draft.principal = Some(p("alice"));
        let (event, _) = Event::chain(draft, 1, &GENESIS);
        let only = |name: &str| Filter {
            principal: Some(p(name)),
            ..Filter::default()
        };
        assert!(only("alice").matches(&event));
        assert!(only("bob").matches(&event));
        assert!(!only("carol").matches(&event));
        let window = Filter {
            since: Some(t(10)),
            until: Some(t(11)),
            ..Filter::default()
        };
        assert!(window.matches(&event));
        let after = Filter {
            since: Some(t(11)),
            ..Filter::default()
        };
        assert!(!after.matches(&event));
        let before = Filter {
            until: Some(t(10)),
            ..Filter::default()
        };
        assert!(!before.matches(&event));
    }
}
