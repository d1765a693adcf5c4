//! PATCH (RFC 7644 §3.5.2): `add`, `remove` and `replace`, with a path or without, with value
//! filters (`members[value eq "…"]`) and sub-attributes (`emails[type eq "work"].value`). The
//! operations apply in order to a copy; any failure leaves the resource as it was.
//!
//! Shapes identity providers send beyond the letter of the RFC, accepted on purpose:
//! - operation names in any case (`Replace`, as Entra sends them);
//! - `remove` of a multi-valued attribute with a `value` removes only those values (Entra
//!   removes members so); without a value it removes them all;
//! - the strings `"True"`/`"False"` for a boolean (Entra's `active`), and a bare string for a
//!   complex attribute with a `value` (Entra's `manager`);
//! - `id`, `schemas` and `meta` inside a path-less value are ignored (Okta sends the id);
//! - `add` or `replace` through a filter that matches no value, with a sub-attribute, creates
//!   the value the filter describes (`emails[type eq "work"].value` on a user with no work
//!   email), when the filter is a conjunction of `eq`.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{self, AttrPath, Filter, Op, Path, Scope};
use super::resource::{single, value_of};
use super::schema::{self, Attribute, Kind, Mutability, ResourceType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Add,
    Remove,
    Replace,
}

/// Applies the PatchOp `body` to `current` (a resource's writable attributes in stored form)
/// and returns the result.
pub fn apply(
    resource: &'static ResourceType,
    current: &Map<String, Value>,
    body: &Value,
) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(fields) = body else {
        return Err(ScimError::invalid_syntax(
            "the body must be a PatchOp object",
        ));
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    };
    let patch_op = match field("schemas") {
        Some(Value::Array(schemas)) => schemas.iter().any(|urn| {
            urn.as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(schema::PATCH_OP))
        }),
        _ => false,
    };
    if !patch_op {
        return Err(ScimError::invalid_syntax(format!(
            "'schemas' must list {}",
            schema::PATCH_OP
        )));
    }
    let Some(Value::Array(operations)) = field("Operations") else {
        return Err(ScimError::invalid_syntax("'Operations' must be a list"));
    };
    if operations.is_empty() {
        return Err(ScimError::invalid_syntax("'Operations' is empty"));
    }
    let mut next = current.clone();
    for (index, operation) in operations.iter().enumerate() {
        let Value::Object(operation) = operation else {
            return Err(ScimError::invalid_syntax(format!(
                "Operations[{index}] must be an object"
            )));
        };
        let get = |name: &str| {
            operation
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        };
        let verb = match get("op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
        {
            Some(op) if op == "add" => Verb::Add,
            Some(op) if op == "remove" => Verb::Remove,
            Some(op) if op == "replace" => Verb::Replace,
            _ => {
                return Err(ScimError::invalid_syntax(format!(
                    "Operations[{index}].op must be add, remove or replace"
                )));
            }
        };
        let value = get("value");
        match get("path") {
            Some(Value::String(path)) => {
                let path = filter::parse_path(path)?;
                at_path(resource, &mut next, verb, &path, value)?;
            }
            Some(Value::Null) | None => {
                if verb == Verb::Remove {
                    return Err(ScimError::no_target(format!(
                        "Operations[{index}]: remove needs a path"
                    )));
                }
                let Some(Value::Object(values)) = value else {
                    return Err(ScimError::invalid_value(format!(
                        "Operations[{index}]: without a path, the value must be an object of attributes"
                    )));
                };
                for (name, value) in values {
                    if ["schemas", "id", "meta"]
                        .iter()
                        .any(|skip| name.eq_ignore_ascii_case(skip))
                    {
                        continue;
                    }
                    if let Some(extension) = resource
                        .schema(name)
                        .filter(|schema| schema.id != resource.schema.id)
                    {
                        each_attribute(resource, &mut next, verb, extension.id, Some(value))?;
                        continue;
                    }
                    let path = filter::parse_path(name).map_err(|_| {
                        ScimError::invalid_syntax(format!("unknown attribute '{name}'"))
                    })?;
                    at_path(resource, &mut next, verb, &path, Some(value))?;
                }
            }
            Some(_) => {
                return Err(ScimError::invalid_path(format!(
                    "Operations[{index}].path must be a string"
                )));
            }
        }
    }
    one_primary(&mut next);
    for extension in resource.extensions {
        if let Some(Value::Object(inner)) = next.get_mut(extension.id) {
            one_primary(inner);
        }
    }
    Ok(next)
}

/// Leaves at most one value of each multi-valued attribute primary: the last one made so (a
/// value added or replaced as primary comes after the others), as RFC 7644 §3.5.2 asks.
fn one_primary(attributes: &mut Map<String, Value>) {
    for value in attributes.values_mut() {
        let Value::Array(items) = value else { continue };
        let Some(last) = items.iter().rposition(|item| item["primary"] == true) else {
            continue;
        };
        for (index, item) in items.iter_mut().enumerate() {
            if index != last
                && let Some(object) = item.as_object_mut()
                && object.get("primary") == Some(&Value::Bool(true))
            {
                object.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

/// Applies one operation at `path`.
fn at_path(
    resource: &'static ResourceType,
    next: &mut Map<String, Value>,
    verb: Verb,
    path: &Path,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    // A path naming a whole extension: its attributes one by one.
    if let Some(urn) = &path.attr.urn {
        let whole = format!("{urn}:{}", path.attr.name);
        if resource.schema(urn).is_none()
            && let Some(extension) = resource.schema(&whole)
        {
            if verb == Verb::Remove {
                next.remove(extension.id);
                return Ok(());
            }
            return each_attribute(resource, next, verb, extension.id, value);
        }
    }
    let resolved = Scope::Resource(resource)
        .resolve(&path.attr)
        .map_err(ScimError::invalid_path)?;
    let attribute = resolved.attribute;
    if attribute.name == "id" || attribute.name == "meta" {
        return Err(ScimError::mutability(format!(
            "'{}' is read-only",
            attribute.name
        )));
    }
    if attribute.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!(
            "'{}' is read-only",
            attribute.name
        )));
    }
    if attribute.mutability == Mutability::WriteOnly {
        // Accepted and discarded (the password): nothing is stored.
        return Ok(());
    }
    if verb != Verb::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "'{}': add and replace need a value",
            attribute.name
        )));
    }
    let container = match resolved.extension {
        Some(urn) => {
            let entry = next
                .entry(urn.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            match entry.as_object_mut() {
                Some(object) => object,
                None => {
                    return Err(ScimError::invalid_value(format!(
                        "'{urn}' must be an object"
                    )));
                }
            }
        }
        None => &mut *next,
    };
    let outcome = match (&path.filter, resolved.sub, &path.sub) {
        (None, None, _) => whole(container, attribute, verb, value),
        (None, Some(sub), _) => sub_attribute(container, attribute, sub, verb, value),
        (Some(filter), None, None) => filtered(container, attribute, filter, None, verb, value),
        (Some(filter), None, Some(sub)) => {
            let sub = attribute.sub_attribute(sub).ok_or_else(|| {
                ScimError::invalid_path(format!(
                    "'{}' has no sub-attribute '{sub}'",
                    attribute.name
                ))
            })?;
            filtered(container, attribute, filter, Some(sub), verb, value)
        }
        (Some(_), Some(_), _) => Err(ScimError::invalid_path(format!(
            "'{}': put the sub-attribute after the filter",
            attribute.name
        ))),
    };
    outcome?;
    if let Some(urn) = resolved.extension
        && next
            .get(urn)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        next.remove(urn);
    }
    Ok(())
}

/// Applies `verb` to each attribute of extension `urn` that `value` (an object of them) holds.
fn each_attribute(
    resource: &'static ResourceType,
    next: &mut Map<String, Value>,
    verb: Verb,
    urn: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(Value::Object(inner)) = value else {
        return Err(ScimError::invalid_value(format!(
            "'{urn}' must be an object of its attributes"
        )));
    };
    for (name, value) in inner {
        let path = Path {
            attr: AttrPath {
                urn: Some(urn.to_owned()),
                name: name.clone(),
                sub: None,
            },
            filter: None,
            sub: None,
        };
        at_path(resource, next, verb, &path, Some(value))?;
    }
    Ok(())
}

/// What identity providers send, made what the schema says (see the module notes).
fn lenient<'v>(attribute: &Attribute, value: &'v Value) -> std::borrow::Cow<'v, Value> {
    match (attribute.kind, value) {
        (Kind::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("true") => {
            std::borrow::Cow::Owned(Value::Bool(true))
        }
        (Kind::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("false") => {
            std::borrow::Cow::Owned(Value::Bool(false))
        }
        (Kind::Complex, Value::String(text))
            if !attribute.multi && attribute.sub_attribute("value").is_some() =>
        {
            let mut object = Map::new();
            object.insert("value".to_owned(), Value::String(text.clone()));
            std::borrow::Cow::Owned(Value::Object(object))
        }
        _ => std::borrow::Cow::Borrowed(value),
    }
}

/// An operation on a whole attribute.
fn whole(
    container: &mut Map<String, Value>,
    attribute: &'static Attribute,
    verb: Verb,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = attribute.name;
    let Some(value) = value else {
        container.remove(name);
        return Ok(());
    };
    let value = lenient(attribute, value);
    if attribute.multi {
        let list = match value.as_ref() {
            Value::Array(_) => value.into_owned(),
            other => Value::Array(vec![other.clone()]),
        };
        let given = match value_of(attribute, &list, name)? {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let existing = match container.remove(name) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let kept: Vec<Value> = match verb {
            Verb::Replace => given,
            Verb::Add => {
                let mut items = existing;
                for item in given {
                    if !items.iter().any(|old| same(attribute, old, &item)) {
                        items.push(item);
                    }
                }
                items
            }
            Verb::Remove => existing
                .into_iter()
                .filter(|old| !given.iter().any(|item| same(attribute, old, item)))
                .collect(),
        };
        if !kept.is_empty() {
            container.insert(name.to_owned(), Value::Array(kept));
        }
        return Ok(());
    }
    if verb == Verb::Remove {
        container.remove(name);
        return Ok(());
    }
    match single(attribute, &value, name)? {
        None => {
            container.remove(name);
        }
        Some(Value::Object(fields)) => {
            // A complex attribute: the sub-attributes sent replace theirs, the others stay.
            match container.get_mut(name) {
                Some(Value::Object(existing)) => existing.extend(fields),
                _ => {
                    container.insert(name.to_owned(), Value::Object(fields));
                }
            }
        }
        Some(stored) => {
            container.insert(name.to_owned(), stored);
        }
    }
    Ok(())
}

/// Whether two values of a multi-valued attribute are the same one: the same `value` for a
/// complex attribute that has one, else equal.
fn same(attribute: &Attribute, left: &Value, right: &Value) -> bool {
    if attribute.kind == Kind::Complex
        && let (Some(a), Some(b)) = (left.get("value"), right.get("value"))
    {
        // A member is one user however it is described; an email of another type is another.
        return a == b && (attribute.name == "members" || left.get("type") == right.get("type"));
    }
    left == right
}

/// An operation on a sub-attribute (`name.givenName`), of a single complex attribute or of
/// every value of a multi-valued one.
fn sub_attribute(
    container: &mut Map<String, Value>,
    attribute: &'static Attribute,
    sub: &'static Attribute,
    verb: Verb,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if sub.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!(
            "'{}.{}' is read-only",
            attribute.name, sub.name
        )));
    }
    let stored = match (verb, value) {
        (Verb::Remove, _) | (_, None) => None,
        (_, Some(value)) => single(
            sub,
            &lenient(sub, value),
            &format!("{}.{}", attribute.name, sub.name),
        )?,
    };
    let set = |object: &mut Map<String, Value>| match &stored {
        Some(stored) => {
            object.insert(sub.name.to_owned(), stored.clone());
        }
        None => {
            object.remove(sub.name);
        }
    };
    if attribute.multi {
        if let Some(Value::Array(items)) = container.get_mut(attribute.name) {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                set(item);
            }
        }
    } else {
        let entry = container
            .entry(attribute.name.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(object) = entry.as_object_mut() {
            set(object);
        }
        if entry.as_object().is_some_and(Map::is_empty) {
            container.remove(attribute.name);
        }
    }
    Ok(())
}

/// An operation on the values of a multi-valued attribute that `filter` selects (or on their
/// `sub`-attribute).
fn filtered(
    container: &mut Map<String, Value>,
    attribute: &'static Attribute,
    filter: &Filter,
    sub: Option<&'static Attribute>,
    verb: Verb,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if !attribute.multi || attribute.kind != Kind::Complex {
        return Err(ScimError::invalid_path(format!(
            "'{}' has no values to filter",
            attribute.name
        )));
    }
    let scope = Scope::Within(attribute);
    let mut items = match container.remove(attribute.name) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let mut selected = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if filter::matches(filter, item, scope).map_err(|e| ScimError::invalid_path(e.detail))? {
            selected.push(index);
        }
    }
    let result = (|| {
        match (verb, sub) {
            (Verb::Remove, None) => {
                let mut index = 0;
                items.retain(|_| {
                    let keep = !selected.contains(&index);
                    index += 1;
                    keep
                });
            }
            (Verb::Remove, Some(sub)) => {
                for &index in &selected {
                    if let Some(object) = items[index].as_object_mut() {
                        object.remove(sub.name);
                    }
                }
            }
            (_, None) => {
                let Some(value) = value else {
                    return Err(ScimError::invalid_value("add and replace need a value"));
                };
                let Some(Value::Object(fields)) = single(attribute, value, attribute.name)? else {
                    return Err(ScimError::invalid_value(format!(
                        "'{}': the value must be an object",
                        attribute.name
                    )));
                };
                if selected.is_empty() {
                    if verb == Verb::Replace {
                        return Err(ScimError::no_target(format!(
                            "no value of '{}' matches the filter",
                            attribute.name
                        )));
                    }
                    items.push(Value::Object(fields.clone()));
                }
                for &index in &selected {
                    if let Some(object) = items[index].as_object_mut() {
                        if verb == Verb::Replace {
                            object.clear();
                        }
                        object.extend(fields.clone());
                    }
                }
            }
            (_, Some(sub)) => {
                let Some(value) = value else {
                    return Err(ScimError::invalid_value("add and replace need a value"));
                };
                let at = format!("{}.{}", attribute.name, sub.name);
                let stored = single(sub, &lenient(sub, value), &at)?;
                if selected.is_empty() {
                    let Some(mut created) = described(filter) else {
                        return Err(ScimError::no_target(format!(
                            "no value of '{}' matches the filter",
                            attribute.name
                        )));
                    };
                    if let Some(stored) = stored {
                        created.insert(sub.name.to_owned(), stored);
                    }
                    let created = single(attribute, &Value::Object(created), attribute.name)?;
                    items.extend(created);
                } else {
                    for &index in &selected {
                        if let Some(object) = items[index].as_object_mut() {
                            match &stored {
                                Some(stored) => {
                                    object.insert(sub.name.to_owned(), stored.clone());
                                }
                                None => {
                                    object.remove(sub.name);
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    })();
    if !items.is_empty() {
        container.insert(attribute.name.to_owned(), Value::Array(items));
    }
    result
}

/// The value a conjunction of `eq` comparisons describes, e.g. `{"type": "work"}`.
fn described(filter: &Filter) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare(path, Op::Eq, value) if path.urn.is_none() && path.sub.is_none() => {
            let mut object = Map::new();
            object.insert(path.name.clone(), value.clone());
            Some(object)
        }
        Filter::And(left, right) => {
            let mut object = described(left)?;
            object.extend(described(right)?);
            Some(object)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::schema::{GROUPS, USERS};

    fn patch(
        resource: &'static ResourceType,
        current: Value,
        ops: Value,
    ) -> Result<Value, ScimError> {
        let Value::Object(current) = current else {
            panic!()
        };
        let body = json!({"schemas": [schema::PATCH_OP], "Operations": ops});
        apply(resource, &current, &body).map(Value::Object)
    }

    #[test]
    fn okta_and_entra_shapes() {
        let user = json!({"userName": "alice", "active": true});
        let out = patch(
            &USERS,
            user.clone(),
            json!([{"op": "replace", "value": {"id": "x", "active": false}}]),
        )
        .unwrap();
        assert_eq!(out["active"], false);
        let out = patch(
            &USERS,
            user.clone(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .unwrap();
        assert_eq!(out["active"], false);
        let two = json!({"userName": "alice", "emails": [{"value": "a@h.example", "type": "home", "primary": true}]});
        let out = patch(&USERS, two, json!([{"op": "add", "path": "emails", "value": [{"value": "a@w.example", "type": "work", "primary": true}]}])).unwrap();
        assert_eq!(
            out["emails"][0]["primary"], false,
            "one primary: the one just added"
        );
        assert_eq!(out["emails"][1]["primary"], true);
        let out = patch(&USERS, user.clone(), json!([
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@w.example"},
            {"op": "Replace", "path": "name.givenName", "value": "Alice"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "m-1"}
        ])).unwrap();
        assert_eq!(
            out["emails"],
            json!([{"type": "work", "value": "a@w.example"}])
        );
        assert_eq!(out["name"]["givenName"], "Alice");
        assert_eq!(out[schema::ENTERPRISE]["manager"]["value"], "m-1");

        let group = json!({"displayName": "sre", "members": [{"value": "a"}, {"value": "b"}]});
        let out = patch(&GROUPS, group.clone(), json!([{"op": "add", "path": "members", "value": [{"value": "c", "display": "c@x"}, {"value": "a"}]}])).unwrap();
        assert_eq!(out["members"].as_array().unwrap().len(), 3);
        let out = patch(
            &GROUPS,
            group.clone(),
            json!([{"op": "remove", "path": "members[value eq \"a\"]"}]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "b"}]));
        let out = patch(
            &GROUPS,
            group.clone(),
            json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "b"}]}]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "a"}]));
        let out = patch(
            &GROUPS,
            group.clone(),
            json!([{"op": "remove", "path": "members"}]),
        )
        .unwrap();
        assert!(out.get("members").is_none());
        let out = patch(
            &GROUPS,
            group,
            json!([{"op": "replace", "value": {"id": "g", "displayName": "ops"}}]),
        )
        .unwrap();
        assert_eq!(out["displayName"], "ops");
    }

    #[test]
    fn bad_operations_change_nothing() {
        let user = json!({"userName": "alice"});
        for (ops, scim_type) in [
            (
                json!([{"op": "move", "path": "active", "value": true}]),
                "invalidSyntax",
            ),
            (
                json!([{"op": "replace", "path": "colour", "value": "red"}]),
                "invalidPath",
            ),
            (
                json!([{"op": "replace", "path": "active", "value": 3}]),
                "invalidValue",
            ),
            (
                json!([{"op": "replace", "path": "groups", "value": []}]),
                "mutability",
            ),
            (json!([{"op": "remove"}]), "noTarget"),
            (
                json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"value": "x"}}]),
                "noTarget",
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]),
                "invalidPath",
            ),
        ] {
            let error = patch(&USERS, user.clone(), ops.clone()).unwrap_err();
            assert_eq!(error.scim_type, Some(scim_type), "{ops}: {error}");
        }
    }
}
