//! The directory of record as SCIM knows it: every user and group, in stored form, and what the
//! broker makes of them (a [`Directory`]: `userName` → principal, `active` → status, the
//! enterprise `manager` → manager, group `displayName` → group, `members` → membership, elevate's
//! `accounts` → accounts). A change is checked here against everything else first: a userName
//! that cannot be a principal, a name another resource has, a member that is no user.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::schema::{self, GROUPS, ResourceType, USERS};
use crate::model::{GroupName, Principal};
use crate::policy::{Directory, Person, Status};
use crate::store::{DirectoryKind, DirectoryRecord};

/// Every user and group, by id, as stored. Cloning is cheap (resources are shared).
#[derive(Clone, Debug, Default)]
pub struct Registry {
    users: BTreeMap<String, Arc<Value>>,
    groups: BTreeMap<String, Arc<Value>>,
}

/// The resource type of `kind`.
pub fn resource_type(kind: DirectoryKind) -> &'static ResourceType {
    match kind {
        DirectoryKind::User => &USERS,
        DirectoryKind::Group => &GROUPS,
    }
}

impl Registry {
    /// The registry the store holds.
    pub fn load(records: Vec<DirectoryRecord>) -> Result<Self, String> {
        let mut registry = Self::default();
        for record in records {
            let resource: Value = serde_json::from_slice(&record.resource).map_err(|error| {
                format!(
                    "directory of record: {} {} is not JSON: {error}",
                    record.kind.as_str(),
                    record.id
                )
            })?;
            registry.put(record.kind, record.id, resource);
        }
        Ok(registry)
    }

    /// The resources of `kind`, by id.
    pub fn all(&self, kind: DirectoryKind) -> &BTreeMap<String, Arc<Value>> {
        match kind {
            DirectoryKind::User => &self.users,
            DirectoryKind::Group => &self.groups,
        }
    }

    /// The resource of `kind` with `id`.
    pub fn get(&self, kind: DirectoryKind, id: &str) -> Option<&Arc<Value>> {
        self.all(kind).get(id)
    }

    /// Stores `resource` under `id`.
    pub fn put(&mut self, kind: DirectoryKind, id: String, resource: Value) {
        let resource = Arc::new(resource);
        match kind {
            DirectoryKind::User => self.users.insert(id, resource),
            DirectoryKind::Group => self.groups.insert(id, resource),
        };
    }

    /// Removes the resource of `kind` with `id`.
    pub fn remove(&mut self, kind: DirectoryKind, id: &str) -> Option<Arc<Value>> {
        match kind {
            DirectoryKind::User => self.users.remove(id),
            DirectoryKind::Group => self.groups.remove(id),
        }
    }

    /// The principal user `id` is.
    pub fn principal(&self, id: &str) -> Option<Principal> {
        self.users
            .get(id)
            .and_then(|user| user["userName"].as_str())
            .and_then(|name| Principal::parse(name).ok())
    }

    /// The user whose userName is `name` (case-insensitively).
    pub fn user_named(&self, name: &str) -> Option<(&String, &Arc<Value>)> {
        self.users.iter().find(|(_, user)| {
            user["userName"]
                .as_str()
                .is_some_and(|user_name| user_name.eq_ignore_ascii_case(name))
        })
    }

    /// The ids of the users `group` lists as members.
    pub fn member_ids(group: &Value) -> Vec<String> {
        group["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|member| member["value"].as_str().map(str::to_owned))
            .collect()
    }

    /// Checks the writable attributes of a `kind` resource `id` would have against the rest
    /// of the directory.
    pub fn check(
        &self,
        kind: DirectoryKind,
        id: &str,
        attributes: &Map<String, Value>,
    ) -> Result<(), ScimError> {
        match kind {
            DirectoryKind::User => {
                let name = attributes["userName"].as_str().unwrap_or_default();
                Principal::parse(name).map_err(|error| {
                    ScimError::invalid_value(format!(
                        "userName {name:?} cannot be an elevate principal: {}",
                        error.problem
                    ))
                })?;
                if let Some((other, _)) = self.user_named(name)
                    && other != id
                {
                    return Err(ScimError::uniqueness(format!(
                        "userName {name:?} is already taken"
                    )));
                }
                let manager = attributes
                    .get(schema::ENTERPRISE)
                    .and_then(|extension| extension["manager"]["value"].as_str());
                if manager
                    .is_some_and(|manager| manager == id || manager.eq_ignore_ascii_case(name))
                {
                    return Err(ScimError::invalid_value(
                        "a user cannot be their own manager",
                    ));
                }
            }
            DirectoryKind::Group => {
                let name = attributes["displayName"].as_str().unwrap_or_default();
                GroupName::parse(name).map_err(|error| {
                    ScimError::invalid_value(format!(
                        "displayName {name:?} cannot be an elevate group: {}",
                        error.problem
                    ))
                })?;
                let taken = self.groups.iter().any(|(other, group)| {
                    other != id
                        && group["displayName"]
                            .as_str()
                            .is_some_and(|other| other.eq_ignore_ascii_case(name))
                });
                if taken {
                    return Err(ScimError::uniqueness(format!(
                        "a group is already named {name:?}"
                    )));
                }
                for member in attributes
                    .get("members")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if member["type"]
                        .as_str()
                        .is_some_and(|kind| kind.eq_ignore_ascii_case("Group"))
                    {
                        return Err(ScimError::invalid_value(
                            "groups do not nest: members must be users",
                        ));
                    }
                    let Some(value) = member["value"].as_str() else {
                        return Err(ScimError::invalid_value(
                            "every member needs a value (a user id)",
                        ));
                    };
                    if !self.users.contains_key(value) {
                        return Err(ScimError::invalid_value(format!(
                            "member {value:?} is not the id of a user"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The directory the broker enforces: see the module notes. A manager that is not (yet)
    /// a user counts as none.
    pub fn directory(&self) -> Result<Directory, ScimError> {
        let mut people = BTreeMap::new();
        for user in self.users.values() {
            let Some(principal) = user["userName"]
                .as_str()
                .and_then(|name| Principal::parse(name).ok())
            else {
                continue;
            };
            let manager = user
                .get(schema::ENTERPRISE)
                .and_then(|extension| extension["manager"]["value"].as_str())
                .and_then(|reference| {
                    self.principal(reference).or_else(|| {
                        self.user_named(reference)
                            .and_then(|(id, _)| self.principal(id))
                    })
                })
                .filter(|manager| *manager != principal);
            let accounts = user
                .get(schema::ELEVATE)
                .and_then(|extension| extension["accounts"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|account| {
                    Some((
                        account["type"].as_str()?.to_owned(),
                        account["value"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            let status = if user["active"].as_bool() == Some(false) {
                Status::Suspended
            } else {
                Status::Active
            };
            people.insert(
                principal,
                Person {
                    groups: BTreeSet::new(),
                    manager,
                    status,
                    accounts,
                },
            );
        }
        for group in self.groups.values() {
            let Some(name) = group["displayName"]
                .as_str()
                .and_then(|name| GroupName::parse(name).ok())
            else {
                continue;
            };
            for member in Self::member_ids(group) {
                if let Some(person) = self
                    .principal(&member)
                    .and_then(|principal| people.get_mut(&principal))
                {
                    person.groups.insert(name.clone());
                }
            }
        }
        Directory::assemble(self.version(), people).map_err(ScimError::invalid_value)
    }

    /// A hash of every resource: the directory version requests record, new with every change.
    pub fn version(&self) -> String {
        let mut bytes = Vec::new();
        for (kind, resources) in [("User", &self.users), ("Group", &self.groups)] {
            for (id, resource) in resources {
                bytes.extend_from_slice(kind.as_bytes());
                bytes.push(0);
                bytes.extend_from_slice(id.as_bytes());
                bytes.push(0);
                bytes.extend_from_slice(resource.to_string().as_bytes());
                bytes.push(0);
            }
        }
        format!("scim:{}", crate::hash::content_version(&bytes))
    }

    /// Each user's groups (id and displayName), by user id: what renders their `groups`.
    pub fn memberships(&self) -> std::collections::HashMap<String, Vec<(String, Value)>> {
        let mut memberships: std::collections::HashMap<String, Vec<(String, Value)>> =
            std::collections::HashMap::new();
        for (group_id, group) in &self.groups {
            for member in Self::member_ids(group) {
                memberships
                    .entry(member)
                    .or_default()
                    .push((group_id.clone(), group["displayName"].clone()));
            }
        }
        memberships
    }

    /// `stored` as an answer shows it: with its location, a user's groups, a member's `$ref`.
    pub fn render(&self, kind: DirectoryKind, stored: &Value, base: &str) -> Value {
        let id = stored["id"].as_str().unwrap_or_default();
        let groups: Vec<(String, Value)> = match kind {
            DirectoryKind::User => self
                .groups
                .iter()
                .filter(|(_, group)| Self::member_ids(group).iter().any(|m| m == id))
                .map(|(group_id, group)| (group_id.clone(), group["displayName"].clone()))
                .collect(),
            DirectoryKind::Group => Vec::new(),
        };
        self.render_with(kind, stored, base, &groups)
    }

    /// [`Registry::render`] with a user's `groups` already known. A user's version covers
    /// their groups too, so that it changes whenever what is shown does.
    pub fn render_with(
        &self,
        kind: DirectoryKind,
        stored: &Value,
        base: &str,
        groups: &[(String, Value)],
    ) -> Value {
        let mut rendered = stored.clone();
        let id = stored["id"].as_str().unwrap_or_default();
        let endpoint = resource_type(kind).endpoint;
        rendered["meta"]["location"] = json!(format!("{base}{endpoint}/{id}"));
        match kind {
            DirectoryKind::User => {
                if !groups.is_empty() {
                    let listed: Vec<Value> = groups
                        .iter()
                        .map(|(group_id, name)| {
                            json!({
                                "value": group_id,
                                "$ref": format!("{base}/Groups/{group_id}"),
                                "display": name,
                                "type": "direct",
                            })
                        })
                        .collect();
                    let mut seed = stored["meta"]["version"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    for (group_id, _) in groups {
                        seed.push(' ');
                        seed.push_str(group_id);
                    }
                    let hash = crate::hash::content_version(seed.as_bytes());
                    let hex = hash.trim_start_matches("sha256:");
                    rendered["meta"]["version"] =
                        json!(format!("W/\"{}\"", &hex[..hex.len().min(16)]));
                    rendered["groups"] = Value::Array(listed);
                }
                if let Some(manager) = rendered
                    .get_mut(schema::ENTERPRISE)
                    .and_then(|extension| extension.get_mut("manager"))
                    .and_then(Value::as_object_mut)
                    && let Some(value) = manager.get("value").and_then(Value::as_str)
                    && let Some(user) = self.users.get(value)
                {
                    manager.insert("$ref".into(), json!(format!("{base}/Users/{value}")));
                    let shown = user
                        .get("displayName")
                        .cloned()
                        .unwrap_or_else(|| user["userName"].clone());
                    manager.insert("displayName".into(), shown);
                }
            }
            DirectoryKind::Group => {
                if let Some(members) = rendered.get_mut("members").and_then(Value::as_array_mut) {
                    for member in members {
                        if let Some(value) = member["value"].as_str().map(str::to_owned) {
                            member["$ref"] = json!(format!("{base}/Users/{value}"));
                            member["type"] = json!("User");
                            if member.get("display").is_none()
                                && let Some(user) = self.users.get(&value)
                            {
                                member["display"] = user
                                    .get("displayName")
                                    .cloned()
                                    .unwrap_or_else(|| user["userName"].clone());
                            }
                        }
                    }
                }
            }
        }
        rendered
    }
}

/// A resource in stored form: `schemas` (the core one and the extensions it has), `id`, its
/// writable attributes and `meta` (created, last modified and a version over the attributes).
pub fn compose(
    kind: DirectoryKind,
    id: &str,
    attributes: Map<String, Value>,
    created: &str,
    now: &str,
) -> Value {
    let resource = resource_type(kind);
    let mut schemas = vec![json!(resource.schema.id)];
    for extension in resource.extensions {
        if attributes.contains_key(extension.id) {
            schemas.push(json!(extension.id));
        }
    }
    let version = version_of(&attributes);
    let mut stored = attributes;
    stored.insert("schemas".into(), Value::Array(schemas));
    stored.insert("id".into(), json!(id));
    stored.insert(
        "meta".into(),
        json!({
            "resourceType": resource.name,
            "created": created,
            "lastModified": now,
            "version": version,
        }),
    );
    Value::Object(stored)
}

/// The ETag of a resource with `attributes`: weak, a hash of their stored form.
pub fn version_of(attributes: &Map<String, Value>) -> String {
    let hash =
        crate::hash::content_version(Value::Object(attributes.clone()).to_string().as_bytes());
    let hex = hash.trim_start_matches("sha256:");
    format!("W/\"{}\"", &hex[..hex.len().min(16)])
}

/// The writable attributes of a stored resource (without `schemas`, `id` and `meta`).
pub fn attributes_of(stored: &Value) -> Map<String, Value> {
    let mut attributes = stored.as_object().cloned().unwrap_or_default();
    for name in ["schemas", "id", "meta"] {
        attributes.remove(name);
    }
    attributes
}
