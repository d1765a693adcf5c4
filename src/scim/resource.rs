//! Resources in and out: a request body checked against the schema and turned into the stored
//! form (attribute names as the schema spells them, whatever case they were sent in; read-only
//! attributes ignored; unknown attributes and wrong types refused), and a stored resource
//! rendered for an answer (its location, a user's groups, a member's `$ref`, and only the
//! attributes asked for).

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::{self, AttrPath, Scope};
use super::schema::{self, Attribute, Kind, Mutability, ResourceType, Returned};

/// Checks `value` sent for `attribute` (called `at` in errors) and returns its stored form,
/// `None` when it unassigns the attribute (null, an empty list or object).
pub fn value_of(
    attribute: &Attribute,
    value: &Value,
    at: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attribute.multi {
        let Value::Array(items) = value else {
            return Err(ScimError::invalid_value(format!(
                "'{at}' is multi-valued: send a list"
            )));
        };
        let mut stored = Vec::new();
        for item in items {
            if let Some(item) = single(attribute, item, at)? {
                if !stored.contains(&item) {
                    stored.push(item);
                }
            }
        }
        let primaries = stored.iter().filter(|item| item["primary"] == true).count();
        if primaries > 1 {
            return Err(ScimError::invalid_value(format!(
                "'{at}': at most one value may be primary"
            )));
        }
        return Ok((!stored.is_empty()).then_some(Value::Array(stored)));
    }
    single(attribute, value, at)
}

/// One value of `attribute` (an element, for a multi-valued one).
pub fn single(attribute: &Attribute, value: &Value, at: &str) -> Result<Option<Value>, ScimError> {
    let wrong = |what: &str| {
        Err(ScimError::invalid_value(format!(
            "'{at}' must be {what}, not {}",
            kind_of(value)
        )))
    };
    match (attribute.kind, value) {
        (_, Value::Null) => Ok(None),
        (Kind::Complex, Value::Object(fields)) => {
            let mut stored = Map::new();
            for (name, field) in fields {
                let Some(sub) = attribute.sub_attribute(name) else {
                    return Err(ScimError::invalid_syntax(format!(
                        "'{at}' has no sub-attribute '{name}'"
                    )));
                };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(field) = single(sub, field, &format!("{at}.{}", sub.name))? {
                    stored.insert(sub.name.to_owned(), field);
                }
            }
            for sub in attribute.sub {
                if sub.required && !stored.contains_key(sub.name) && !stored.is_empty() {
                    return Err(ScimError::invalid_value(format!(
                        "'{at}.{}' is required",
                        sub.name
                    )));
                }
            }
            Ok((!stored.is_empty()).then_some(Value::Object(stored)))
        }
        (Kind::Complex, _) => wrong("an object"),
        (Kind::Boolean, Value::Bool(_)) => Ok(Some(value.clone())),
        (Kind::Boolean, _) => wrong("true or false"),
        (Kind::Integer, Value::Number(number)) if number.is_i64() || number.is_u64() => {
            Ok(Some(value.clone()))
        }
        (Kind::Integer, _) => wrong("a whole number"),
        (Kind::Decimal, Value::Number(_)) => Ok(Some(value.clone())),
        (Kind::Decimal, _) => wrong("a number"),
        (Kind::DateTime, Value::String(text)) => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    ScimError::invalid_value(format!(
                        "'{at}' must be an RFC 3339 timestamp, not {text:?}"
                    ))
                })?;
            Ok(Some(value.clone()))
        }
        (Kind::String | Kind::Reference | Kind::Binary, Value::String(_)) => {
            Ok(Some(value.clone()))
        }
        (Kind::String | Kind::Reference | Kind::Binary | Kind::DateTime, _) => wrong("a string"),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks a whole resource sent with POST or PUT and returns its writable attributes in
/// stored form (core ones at the top, each extension's under its URN); `id`, `meta` and
/// read-only attributes are ignored, `password` is checked and dropped (never stored).
pub fn writable(resource: &ResourceType, body: &Value) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(fields) = body else {
        return Err(ScimError::invalid_syntax(format!(
            "the body must be a {} object",
            resource.name
        )));
    };
    let schemas = fields
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("schemas"))
        .map(|(_, value)| value);
    let Some(Value::Array(schemas)) = schemas else {
        return Err(ScimError::invalid_syntax(format!(
            "'schemas' must list {}",
            resource.schema.id
        )));
    };
    let mut core_listed = false;
    for urn in schemas {
        let known = urn.as_str().and_then(|urn| resource.schema(urn));
        match known {
            Some(schema) if schema.id == resource.schema.id => core_listed = true,
            Some(_) => {}
            None => {
                return Err(ScimError::invalid_syntax(format!(
                    "'schemas' names {urn}, which {} resources do not have",
                    resource.name
                )));
            }
        }
    }
    if !core_listed {
        return Err(ScimError::invalid_syntax(format!(
            "'schemas' must list {}",
            resource.schema.id
        )));
    }
    let mut stored = Map::new();
    for (name, value) in fields {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|skip| name.eq_ignore_ascii_case(skip))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(schema::EXTERNAL_ID.name) {
            if let Some(value) = single(&schema::EXTERNAL_ID, value, "externalId")? {
                stored.insert(schema::EXTERNAL_ID.name.to_owned(), value);
            }
            continue;
        }
        if let Some(extension) = resource
            .schema(name)
            .filter(|schema| schema.id != resource.schema.id)
        {
            let Value::Object(inner) = value else {
                if value.is_null() {
                    continue;
                }
                return Err(ScimError::invalid_value(format!(
                    "'{}' must be an object of its attributes",
                    extension.id
                )));
            };
            let mut attributes = Map::new();
            for (name, value) in inner {
                let Some(attribute) = extension.attribute(name) else {
                    return Err(ScimError::invalid_syntax(format!(
                        "unknown attribute '{name}' of {}",
                        extension.id
                    )));
                };
                if let Some(value) = input(attribute, value)? {
                    attributes.insert(attribute.name.to_owned(), value);
                }
            }
            if !attributes.is_empty() {
                stored.insert(extension.id.to_owned(), Value::Object(attributes));
            }
            continue;
        }
        let Some(attribute) = resource.schema.attribute(name) else {
            return Err(ScimError::invalid_syntax(format!(
                "unknown attribute '{name}': not in the {} schema",
                resource.name
            )));
        };
        if let Some(value) = input(attribute, value)? {
            stored.insert(attribute.name.to_owned(), value);
        }
    }
    Ok(stored)
}

/// The stored form of `value` sent for `attribute`, `None` for read-only and write-only
/// attributes (ignored and discarded) and unassigned ones.
fn input(attribute: &Attribute, value: &Value) -> Result<Option<Value>, ScimError> {
    let stored = value_of(attribute, value, attribute.name)?;
    Ok(match attribute.mutability {
        Mutability::ReadOnly | Mutability::WriteOnly => None,
        _ => stored,
    })
}

/// Fails unless `resource` has every required attribute of its schema.
pub fn check_required(
    resource: &ResourceType,
    stored: &Map<String, Value>,
) -> Result<(), ScimError> {
    for attribute in resource.schema.attributes {
        if attribute.required && !stored.contains_key(attribute.name) {
            return Err(ScimError::invalid_value(format!(
                "'{}' is required",
                attribute.name
            )));
        }
    }
    Ok(())
}

/// Which attributes an answer holds (`attributes` / `excludedAttributes`).
#[derive(Clone, Debug, Default)]
pub struct Projection {
    /// Only these (and those always returned).
    pub only: Option<Vec<AttrPath>>,
    /// All but these.
    pub excluded: Vec<AttrPath>,
}

impl Projection {
    /// From the comma-separated query parameters.
    pub fn parse(only: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimError> {
        let list = |text: &str| -> Result<Vec<AttrPath>, ScimError> {
            text.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| {
                    let path = filter::parse_path(name).map_err(|_| {
                        ScimError::invalid_value(format!("'{name}' is not an attribute name"))
                    })?;
                    Ok(path.attr)
                })
                .collect()
        };
        Ok(Self {
            only: only.map(list).transpose()?,
            excluded: excluded.map(list).transpose()?.unwrap_or_default(),
        })
    }

    /// `full` (a rendered resource) as this projection shows it. Names the schema lacks are
    /// ignored, as RFC 7644 asks.
    pub fn apply(&self, resource: &'static ResourceType, full: Value) -> Value {
        let Value::Object(mut fields) = full else {
            return full;
        };
        let scope = Scope::Resource(resource);
        if let Some(only) = &self.only {
            let mut kept = Map::new();
            for (name, value) in &fields {
                let always = matches!(name.as_str(), "schemas" | "id")
                    || resource
                        .schema
                        .attribute(name)
                        .is_some_and(|a| a.returned == Returned::Always);
                if always {
                    kept.insert(name.clone(), value.clone());
                }
            }
            for path in only {
                let Ok(resolved) = scope.resolve(path) else {
                    continue;
                };
                copy(
                    &fields,
                    &mut kept,
                    resolved.extension,
                    resolved.attribute,
                    resolved.sub,
                );
            }
            return Value::Object(kept);
        }
        for path in &self.excluded {
            let Ok(resolved) = scope.resolve(path) else {
                continue;
            };
            if resolved.attribute.returned == Returned::Always {
                continue;
            }
            let container = match resolved.extension {
                Some(urn) => fields.get_mut(urn).and_then(Value::as_object_mut),
                None => Some(&mut fields),
            };
            let Some(container) = container else { continue };
            match resolved.sub {
                None => {
                    container.remove(resolved.attribute.name);
                }
                Some(sub) => match container.get_mut(resolved.attribute.name) {
                    Some(Value::Object(inner)) => {
                        inner.remove(sub.name);
                    }
                    Some(Value::Array(items)) => {
                        for item in items.iter_mut().filter_map(Value::as_object_mut) {
                            item.remove(sub.name);
                        }
                    }
                    _ => {}
                },
            }
        }
        Value::Object(fields)
    }
}

/// Copies `attribute` (or only its `sub`) from `from` to `to`, inside its extension's object.
fn copy(
    from: &Map<String, Value>,
    to: &mut Map<String, Value>,
    extension: Option<&'static str>,
    attribute: &Attribute,
    sub: Option<&Attribute>,
) {
    let source = match extension {
        Some(urn) => from.get(urn).and_then(Value::as_object),
        None => Some(from),
    };
    let Some(value) = source.and_then(|source| source.get(attribute.name)) else {
        return;
    };
    let picked = match (sub, value) {
        (None, value) => value.clone(),
        (Some(sub), Value::Object(inner)) => match inner.get(sub.name) {
            Some(field) => json!({ sub.name: field }),
            None => return,
        },
        (Some(sub), Value::Array(items)) => Value::Array(
            items
                .iter()
                .filter_map(|item| item.get(sub.name).map(|field| json!({ sub.name: field })))
                .collect(),
        ),
        (Some(_), _) => return,
    };
    let target = match extension {
        Some(urn) => {
            let entry = to
                .entry(urn.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            match entry.as_object_mut() {
                Some(object) => object,
                None => return,
            }
        }
        None => to,
    };
    match (target.get_mut(attribute.name), picked) {
        (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
        (_, picked) => {
            target.insert(attribute.name.to_owned(), picked);
        }
    }
}
