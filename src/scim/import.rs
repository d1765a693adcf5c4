//! Seeding the directory of record from a directory file (`elevated directory import`): every
//! principal becomes a user (userName, active, the enterprise manager, elevate's accounts),
//! every group a group with its members, as the SCIM endpoint would have stored them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::registry::{Registry, compose};
use super::schema;
use super::service::new_id;
use crate::model::{DirectoryChange, GroupName, Happened, Principal};
use crate::policy::Directory;
use crate::store::{DirectoryKind, DirectoryRecord, DirectoryWrite};

/// What an import stores and records.
#[derive(Debug)]
pub struct Seed {
    /// The registry it makes.
    pub registry: Registry,
    /// What to store.
    pub writes: Vec<DirectoryWrite>,
    /// What to audit.
    pub events: Vec<Happened>,
}

/// The users and groups of `directory`, made at `now` (RFC 3339).
pub fn seed(directory: &Directory, now: &str) -> Seed {
    let ids: BTreeMap<&Principal, String> = directory
        .principals()
        .map(|(principal, _)| (principal, new_id()))
        .collect();
    let mut registry = Registry::default();
    let mut writes = Vec::new();
    let mut events = Vec::new();
    let mut groups: BTreeMap<&GroupName, Vec<&Principal>> = BTreeMap::new();
    for (principal, person) in directory.principals() {
        let id = &ids[principal];
        let mut attributes = Map::new();
        attributes.insert("userName".into(), json!(principal.as_str()));
        attributes.insert("active".into(), json!(person.is_active()));
        if let Some(manager) = person.manager.as_ref().and_then(|m| ids.get(m)) {
            attributes.insert(
                schema::ENTERPRISE.into(),
                json!({"manager": {"value": manager}}),
            );
        }
        if !person.accounts.is_empty() {
            let accounts: Vec<Value> = person
                .accounts
                .iter()
                .map(|(provisioner, account)| json!({"type": provisioner, "value": account}))
                .collect();
            attributes.insert(schema::ELEVATE.into(), json!({ "accounts": accounts }));
        }
        let stored = compose(DirectoryKind::User, id, attributes, now, now);
        writes.push(record(DirectoryKind::User, id, &stored));
        registry.put(DirectoryKind::User, id.clone(), stored);
        events.push(Happened::DirectoryUser {
            change: DirectoryChange::Created,
            id: id.clone(),
            principal: principal.clone(),
            attributes: vec!["imported".to_owned()],
        });
        for group in &person.groups {
            groups.entry(group).or_default().push(principal);
        }
    }
    for (group, members) in groups {
        let id = new_id();
        let listed: Vec<Value> = members
            .iter()
            .map(|member| json!({"value": ids[member], "display": member.as_str()}))
            .collect();
        let mut attributes = Map::new();
        attributes.insert("displayName".into(), json!(group.as_str()));
        attributes.insert("members".into(), Value::Array(listed));
        let stored = compose(DirectoryKind::Group, &id, attributes, now, now);
        writes.push(record(DirectoryKind::Group, &id, &stored));
        registry.put(DirectoryKind::Group, id.clone(), stored);
        let unique: BTreeSet<&Principal> = members.into_iter().collect();
        events.push(Happened::DirectoryGroup {
            change: DirectoryChange::Created,
            id,
            group: group.as_str().to_owned(),
            added: unique.into_iter().cloned().collect(),
            removed: Vec::new(),
            attributes: vec!["imported".to_owned()],
        });
    }
    Seed {
        registry,
        writes,
        events,
    }
}

fn record(kind: DirectoryKind, id: &str, stored: &Value) -> DirectoryWrite {
    DirectoryWrite::Put(DirectoryRecord {
        kind,
        id: id.to_owned(),
        resource: stored.to_string().into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_directory_file_becomes_the_same_directory_of_record() {
        let file =
            Directory::parse(crate::policy::demo::DIRECTORY, Path::new("directory.toml")).unwrap();
        let seed = seed(&file, "2026-12-05T00:00:00Z");
        let made = seed.registry.directory().unwrap();
        let people: Vec<_> = file.principals().collect();
        let again: Vec<_> = made.principals().collect();
        assert_eq!(
            people, again,
            "same people, groups, managers, status and accounts"
        );
        assert_eq!(seed.writes.len(), seed.events.len());
    }
}
