//! The operations of the SCIM endpoint on users and groups: list and search, read, create,
//! replace, patch and delete. One change at a time (the registry's lock is held from reading
//! the resource to putting the change in force); a change is checked whole, stored with its
//! audit entries in one transaction, and its consequences (leavers, movers) are committed
//! before the answer.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::{self, Filter, Scope};
use super::patch;
use super::registry::{Registry, attributes_of, compose, resource_type};
use super::resource::{Projection, check_required, writable};
use super::schema::{self, MAX_RESULTS};
use crate::audit::Actor;
use crate::broker::{Broker, BrokerError, DirectoryUpdate};
use crate::model::{DirectoryChange, Happened, Principal};
use crate::store::{DirectoryKind, DirectoryRecord, DirectoryWrite};

/// How many resources a list returns when the request does not say.
pub const DEFAULT_COUNT: usize = 100;

/// An answer: its status, body and headers.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `Location` header.
    pub location: Option<String>,
}

impl Answer {
    /// 200 with `body`.
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body: Some(body),
            etag: None,
            location: None,
        }
    }

    fn resource(status: StatusCode, body: Value) -> Self {
        let etag = body["meta"]["version"].as_str().map(str::to_owned);
        let location = body["meta"]["location"].as_str().map(str::to_owned);
        Self {
            status,
            body: Some(body),
            etag,
            location,
        }
    }
}

/// What a list or search asks for.
#[derive(Debug, Default)]
pub struct Query {
    /// Which resources.
    pub filter: Option<Filter>,
    /// Sorted by this attribute.
    pub sort_by: Option<filter::AttrPath>,
    /// Descending instead of ascending.
    pub descending: bool,
    /// The first result's 1-based index.
    pub start_index: usize,
    /// At most this many.
    pub count: usize,
    /// Which attributes.
    pub projection: Projection,
}

/// The SCIM operations over the directory of record. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Scim {
    broker: Broker,
    // A tokio lock: held across the store's commit and the sweep after it, so that changes
    // are put in force one at a time and in the order they were checked.
    registry: Arc<tokio::sync::Mutex<Registry>>,
}

impl Scim {
    /// The operations over `registry` (loaded from the store), in force through `broker`.
    pub fn new(broker: Broker, registry: Registry) -> Self {
        Self {
            broker,
            registry: Arc::new(tokio::sync::Mutex::new(registry)),
        }
    }

    /// The time now, by the daemon's clock.
    pub fn now(&self) -> crate::model::Timestamp {
        self.broker.now()
    }

    /// The directory of record as it is now.
    pub async fn registry(&self) -> Registry {
        self.registry.lock().await.clone()
    }

    /// Lists the resources of `kinds` that `query` selects.
    pub async fn list(
        &self,
        kinds: &[DirectoryKind],
        query: &Query,
        base: &str,
    ) -> Result<Answer, ScimError> {
        let registry = self.registry.lock().await.clone();
        if let Some(filter) = &query.filter {
            // Refused whatever the data; searching every type, it must suit one of them.
            let checked: Vec<Result<(), ScimError>> = kinds
                .iter()
                .map(|kind| filter::validate(filter, Scope::Resource(resource_type(*kind))))
                .collect();
            if !checked.iter().any(Result::is_ok) {
                if let Some(Err(error)) = checked.into_iter().next() {
                    return Err(error);
                }
            }
        }
        let memberships = registry.memberships();
        let mut found: Vec<(DirectoryKind, Value)> = Vec::new();
        for &kind in kinds {
            let scope = Scope::Resource(resource_type(kind));
            for (id, stored) in registry.all(kind) {
                let groups = memberships.get(id).map(Vec::as_slice).unwrap_or_default();
                // Filtered as shown: a user's groups and every location are part of it.
                let resource = registry.render_with(kind, stored, base, groups);
                let keep = match &query.filter {
                    None => true,
                    // Searching every type: a filter on what one type lacks matches none of it.
                    Some(filter) => match filter::matches(filter, &resource, scope) {
                        Ok(keep) => keep,
                        Err(_) if kinds.len() > 1 => false,
                        Err(error) => return Err(error),
                    },
                };
                if keep {
                    found.push((kind, resource));
                }
            }
        }
        if let Some(sort_by) = &query.sort_by {
            let key = |(kind, resource): &(DirectoryKind, Value)| -> Option<String> {
                let resolved = Scope::Resource(resource_type(*kind))
                    .resolve(sort_by)
                    .ok()?;
                let value = filter::values(resource, &resolved).into_iter().next()?;
                let leaf = match resolved.sub {
                    Some(sub) => value.get(sub.name)?,
                    None if value.is_object() => value.get("value")?,
                    None => value,
                };
                Some(match leaf {
                    Value::String(text) => text.to_lowercase(),
                    other => other.to_string(),
                })
            };
            // Resources without the attribute go last, whichever the order.
            found.sort_by(|a, b| match (key(a), key(b)) {
                (Some(a), Some(b)) if query.descending => b.cmp(&a),
                (Some(a), Some(b)) => a.cmp(&b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        }
        let total = found.len();
        let start = query.start_index.max(1);
        let page: Vec<Value> = found
            .into_iter()
            .skip(start - 1)
            .take(query.count.min(MAX_RESULTS))
            .map(|(kind, resource)| query.projection.apply(resource_type(kind), resource))
            .collect();
        Ok(Answer::ok(json!({
            "schemas": [schema::LIST_RESPONSE],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        })))
    }

    /// The resource of `kind` with `id`; 304 when `if_none_match` names its version.
    pub async fn get(
        &self,
        kind: DirectoryKind,
        id: &str,
        projection: &Projection,
        if_none_match: Option<&str>,
        base: &str,
    ) -> Result<Answer, ScimError> {
        let registry = self.registry.lock().await;
        let full = registry.render(kind, found(&registry, kind, id)?, base);
        let etag = full["meta"]["version"].as_str().map(str::to_owned);
        if let Some(tags) = if_none_match
            && matches_tag(tags, &full)
        {
            return Ok(Answer {
                status: StatusCode::NOT_MODIFIED,
                body: None,
                etag,
                location: None,
            });
        }
        let mut answer =
            Answer::resource(StatusCode::OK, projection.apply(resource_type(kind), full));
        answer.etag = etag;
        Ok(answer)
    }

    /// Creates a resource of `kind` from `body`.
    pub async fn create(
        &self,
        kind: DirectoryKind,
        body: &Value,
        base: &str,
    ) -> Result<Answer, ScimError> {
        let resource = resource_type(kind);
        let attributes = writable(resource, body)?;
        check_required(resource, &attributes)?;
        let mut registry = self.registry.lock().await;
        let id = new_id();
        registry.check(kind, &id, &attributes)?;
        let now = self.broker.now().rfc3339();
        let stored = compose(kind, &id, attributes, &now, &now);
        let mut next = registry.clone();
        next.put(kind, id.clone(), stored.clone());
        let (events, only) = match kind {
            DirectoryKind::User => {
                let principal = principal_in(&stored)?;
                (
                    vec![Happened::DirectoryUser {
                        change: DirectoryChange::Created,
                        id: id.clone(),
                        principal: principal.clone(),
                        attributes: Vec::new(),
                    }],
                    Some(principal),
                )
            }
            DirectoryKind::Group => (
                vec![Happened::DirectoryGroup {
                    change: DirectoryChange::Created,
                    id: id.clone(),
                    group: name_of(&stored),
                    added: principals(&next, &Registry::member_ids(&stored)),
                    removed: Vec::new(),
                    attributes: Vec::new(),
                }],
                None,
            ),
        };
        let writes = vec![put(kind, &id, &stored)];
        self.commit(&mut registry, next, writes, events, only)
            .await?;
        Ok(Answer::resource(
            StatusCode::CREATED,
            registry.render(kind, &stored, base),
        ))
    }

    /// Replaces the resource of `kind` with `id` by `body` (PUT).
    pub async fn replace(
        &self,
        kind: DirectoryKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        base: &str,
    ) -> Result<Answer, ScimError> {
        let resource = resource_type(kind);
        let attributes = writable(resource, body)?;
        self.change(kind, id, if_match, base, move |_| Ok(attributes))
            .await
    }

    /// Applies the PatchOp `body` to the resource of `kind` with `id`.
    pub async fn patch(
        &self,
        kind: DirectoryKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        base: &str,
    ) -> Result<Answer, ScimError> {
        let resource = resource_type(kind);
        self.change(kind, id, if_match, base, move |current| {
            patch::apply(resource, current, body)
        })
        .await
    }

    /// Replaces a resource's attributes by what `change` makes of them.
    async fn change(
        &self,
        kind: DirectoryKind,
        id: &str,
        if_match: Option<&str>,
        base: &str,
        change: impl FnOnce(&Map<String, Value>) -> Result<Map<String, Value>, ScimError>,
    ) -> Result<Answer, ScimError> {
        let resource = resource_type(kind);
        let mut registry = self.registry.lock().await;
        let existing = found(&registry, kind, id)?.clone();
        precondition(if_match, &registry.render(kind, &existing, base))?;
        let before = attributes_of(&existing);
        let attributes = change(&before)?;
        check_required(resource, &attributes)?;
        registry.check(kind, id, &attributes)?;
        if attributes == before {
            return Ok(Answer::resource(
                StatusCode::OK,
                registry.render(kind, &existing, base),
            ));
        }
        let created = existing["meta"]["created"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let now = self.broker.now().rfc3339();
        let stored = compose(kind, id, attributes.clone(), &created, &now);
        let mut next = registry.clone();
        next.put(kind, id.to_owned(), stored.clone());
        let (events, only) = match kind {
            DirectoryKind::User => user_events(id, &before, &attributes)?,
            DirectoryKind::Group => (
                vec![group_event(
                    &registry,
                    id,
                    DirectoryChange::Updated,
                    &before,
                    &attributes,
                )],
                None,
            ),
        };
        let writes = vec![put(kind, id, &stored)];
        self.commit(&mut registry, next, writes, events, only)
            .await?;
        Ok(Answer::resource(
            StatusCode::OK,
            registry.render(kind, &stored, base),
        ))
    }

    /// Deletes the resource of `kind` with `id`; a user leaves every group too.
    pub async fn delete(
        &self,
        kind: DirectoryKind,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<Answer, ScimError> {
        let mut registry = self.registry.lock().await;
        let existing = found(&registry, kind, id)?.clone();
        precondition(if_match, &registry.render(kind, &existing, ""))?;
        let mut next = registry.clone();
        next.remove(kind, id);
        let mut writes = vec![DirectoryWrite::Remove(kind, id.to_owned())];
        let mut events = Vec::new();
        let only = match kind {
            DirectoryKind::User => {
                let principal = principal_in(&existing)?;
                events.push(Happened::DirectoryUser {
                    change: DirectoryChange::Deleted,
                    id: id.to_owned(),
                    principal: principal.clone(),
                    attributes: Vec::new(),
                });
                let now = self.broker.now().rfc3339();
                for (group_id, group) in registry.all(DirectoryKind::Group) {
                    if !Registry::member_ids(group)
                        .iter()
                        .any(|member| member == id)
                    {
                        continue;
                    }
                    let before = attributes_of(group);
                    let mut after = before.clone();
                    if let Some(Value::Array(members)) = after.get_mut("members") {
                        members.retain(|member| member["value"].as_str() != Some(id));
                        if members.is_empty() {
                            after.remove("members");
                        }
                    }
                    events.push(group_event(
                        &registry,
                        group_id,
                        DirectoryChange::Updated,
                        &before,
                        &after,
                    ));
                    let created = group["meta"]["created"].as_str().unwrap_or_default();
                    let stored = compose(DirectoryKind::Group, group_id, after, created, &now);
                    writes.push(put(DirectoryKind::Group, group_id, &stored));
                    next.put(DirectoryKind::Group, group_id.clone(), stored);
                }
                Some(principal)
            }
            DirectoryKind::Group => {
                events.push(group_event(
                    &registry,
                    id,
                    DirectoryChange::Deleted,
                    &attributes_of(&existing),
                    &Map::new(),
                ));
                None
            }
        };
        self.commit(&mut registry, next, writes, events, only)
            .await?;
        Ok(Answer {
            status: StatusCode::NO_CONTENT,
            body: None,
            etag: None,
            location: None,
        })
    }

    /// Stores the change that makes `next`, puts it in force and holds the open requests
    /// against it; then `registry` becomes `next`.
    async fn commit(
        &self,
        registry: &mut Registry,
        next: Registry,
        writes: Vec<DirectoryWrite>,
        events: Vec<Happened>,
        only: Option<Principal>,
    ) -> Result<(), ScimError> {
        let directory = next.directory()?;
        let enforced = self
            .broker
            .put_directory(DirectoryUpdate {
                directory,
                writes,
                events,
                actor: Actor::Scim,
                only,
            })
            .await
            .map_err(unavailable)?;
        *registry = next;
        enforced.log("after a change of the directory of record");
        Ok(())
    }
}

/// A failure of the store or the daemon, answered without its details.
fn unavailable(error: BrokerError) -> ScimError {
    tracing::error!(%error, "a SCIM change could not be committed");
    match error {
        BrokerError::ShuttingDown | BrokerError::Store(_) => ScimError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the directory of record cannot be written now; try again",
        ),
        _ => ScimError::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the change could not be made",
        ),
    }
}

fn found<'r>(
    registry: &'r Registry,
    kind: DirectoryKind,
    id: &str,
) -> Result<&'r Value, ScimError> {
    registry
        .get(kind, id)
        .map(|stored| stored.as_ref())
        .ok_or_else(|| ScimError::not_found(format!("no {} with id {id:?}", kind.as_str())))
}

/// Whether the `If-Match`/`If-None-Match` list `tags` names `stored`'s version (`*` names
/// every one; weak and strong tags compare alike).
fn matches_tag(tags: &str, stored: &Value) -> bool {
    let version = stored["meta"]["version"].as_str().unwrap_or_default();
    let bare = |tag: &str| {
        tag.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    tags.split(',')
        .any(|tag| tag.trim() == "*" || bare(tag) == bare(version))
}

fn precondition(if_match: Option<&str>, stored: &Value) -> Result<(), ScimError> {
    match if_match {
        Some(tags) if !matches_tag(tags, stored) => Err(ScimError::precondition(format!(
            "If-Match {tags} does not name the current version {}",
            stored["meta"]["version"].as_str().unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

fn put(kind: DirectoryKind, id: &str, stored: &Value) -> DirectoryWrite {
    DirectoryWrite::Put(DirectoryRecord {
        kind,
        id: id.to_owned(),
        resource: stored.to_string().into_bytes(),
    })
}

fn principal_in(attributes: &Value) -> Result<Principal, ScimError> {
    let name = attributes["userName"].as_str().unwrap_or_default();
    Principal::parse(name).map_err(|error| ScimError::invalid_value(error.to_string()))
}

fn name_of(group: &Value) -> String {
    group["displayName"].as_str().unwrap_or_default().to_owned()
}

fn principals(registry: &Registry, ids: &[String]) -> Vec<Principal> {
    ids.iter().filter_map(|id| registry.principal(id)).collect()
}

/// What a change of user `id` from `before` to `after` records, and whose standing it can
/// change (`None`: a new userName, so every open request is looked at).
fn user_events(
    id: &str,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> Result<(Vec<Happened>, Option<Principal>), ScimError> {
    let old = principal_in(&Value::Object(before.clone()))?;
    let new = principal_in(&Value::Object(after.clone()))?;
    let active = |attributes: &Map<String, Value>| attributes.get("active") != Some(&json!(false));
    let mut events = Vec::new();
    let mut changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|name| *name != "active" && before.get(*name) != after.get(*name))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    if old != new {
        for name in &mut changed {
            if name == "userName" {
                *name = format!("userName (was {old})");
            }
        }
    }
    if !changed.is_empty() {
        events.push(Happened::DirectoryUser {
            change: DirectoryChange::Updated,
            id: id.to_owned(),
            principal: new.clone(),
            attributes: changed,
        });
    }
    if active(before) != active(after) {
        events.push(Happened::DirectoryUser {
            change: if active(after) {
                DirectoryChange::Reactivated
            } else {
                DirectoryChange::Deactivated
            },
            id: id.to_owned(),
            principal: new.clone(),
            attributes: Vec::new(),
        });
    }
    Ok((events, (old == new).then_some(new)))
}

/// What a change of group `id` from `before` to `after` records.
fn group_event(
    registry: &Registry,
    id: &str,
    change: DirectoryChange,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> Happened {
    let members =
        |attributes: &Map<String, Value>| Registry::member_ids(&Value::Object(attributes.clone()));
    let (old, new) = (members(before), members(after));
    let added: Vec<String> = new.iter().filter(|m| !old.contains(m)).cloned().collect();
    let removed: Vec<String> = old.iter().filter(|m| !new.contains(m)).cloned().collect();
    let old_name = before
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let new_name = after
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or(old_name);
    let mut attributes = Vec::new();
    if change == DirectoryChange::Updated && old_name != new_name {
        attributes.push(format!("displayName (was {old_name})"));
    }
    if change == DirectoryChange::Updated && before.get("externalId") != after.get("externalId") {
        attributes.push("externalId".to_owned());
    }
    Happened::DirectoryGroup {
        change,
        id: id.to_owned(),
        group: new_name.to_owned(),
        added: principals(registry, &added),
        removed: principals(registry, &removed),
        attributes,
    }
}

/// A new id: random, in the familiar UUID form (version 4).
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    // The system's random source failing leaves zeros, which the counter below still makes
    // distinct; it does not happen on a working system.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for (byte, extra) in bytes[12..].iter_mut().zip(count.to_be_bytes()) {
        *byte ^= extra;
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::hash::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
