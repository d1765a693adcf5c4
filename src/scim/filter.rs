//! Filters and PATCH paths (RFC 7644 §3.4.2.2 and §3.5.2): a grammar of parser combinators
//! (winnow) turns the text into a typed expression once, and the expression is evaluated
//! against resources with the attributes' types and case rules from the schema.
//!
//! Precedence is `not`, then `and`, then `or`; keywords and operators are case-insensitive.
//! Strings compare case-insensitively unless the attribute is `caseExact`; `gt`, `ge`, `lt` and
//! `le` order timestamps by time, numbers by value and strings by their characters; booleans and
//! binaries only compare for equality. A multi-valued attribute matches when any of its values
//! does (a complex one through its `value`, or the named sub-attribute); `ne` matches when
//! none equals. A filter naming an attribute the schema lacks is refused (`invalidFilter`).

use std::cmp::Ordering;

use serde_json::Value;
use winnow::ascii::{Caseless, multispace0, multispace1};
use winnow::combinator::{alt, delimited, opt, preceded, terminated};
use winnow::prelude::*;
use winnow::token::{literal, take_while};

use super::error::ScimError;
use super::schema::{self, Attribute, Kind, ResourceType};

/// An attribute named by a filter or a path: an optional schema URN, a name and an optional
/// sub-attribute, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN prefix, when written.
    pub urn: Option<String>,
    /// The attribute's name.
    pub name: String,
    /// The sub-attribute's name.
    pub sub: Option<String>,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Contains.
    Co,
    /// Starts with.
    Sw,
    /// Ends with.
    Ew,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

/// A filter expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// It does not hold.
    Not(Box<Filter>),
    /// The attribute has a value (`pr`).
    Present(AttrPath),
    /// The attribute compares to a literal.
    Compare(AttrPath, Op, Value),
    /// Some value of a multi-valued attribute matches the inner filter (`emails[type eq "work"]`).
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH path: an attribute, optionally a filter on its values, optionally a sub-attribute
/// of the values it selects.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    /// The attribute (with a sub-attribute when written `name.givenName`).
    pub attr: AttrPath,
    /// Which values (`members[value eq "…"]`).
    pub filter: Option<Filter>,
    /// The sub-attribute of the selected values (`emails[type eq "work"].value`).
    pub sub: Option<String>,
}

/// The longest filter accepted, in bytes: longer ones are refused before parsing.
pub const MAX_FILTER: usize = 4096;

/// The deepest nesting of parentheses and brackets accepted.
pub const MAX_NESTING: usize = 16;

/// Fails when `text` is longer than `max` bytes or nests deeper than [`MAX_NESTING`] (outside
/// quoted strings): the parser and evaluation recurse, and their depth stays bounded.
fn bounded(text: &str, max: usize, what: &str) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("the {what} is longer than {max} bytes"));
    }
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' | '[' if !quoted => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!("the {what} nests deeper than {MAX_NESTING} levels"));
                }
            }
            ')' | ']' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a filter.
pub fn parse_filter(text: &str) -> Result<Filter, ScimError> {
    whole(text, "filter", or_expr, ScimError::invalid_filter)
}

/// Parses a PATCH path.
pub fn parse_path(text: &str) -> Result<Path, ScimError> {
    whole(text, "path", path, ScimError::invalid_path)
}

/// `text`, bounded, as one `parser` production between optional spaces; errors made by
/// `refuse` name the character where parsing stopped.
fn whole<T>(
    text: &str,
    what: &str,
    parser: impl FnMut(&mut &str) -> winnow::Result<T>,
    refuse: fn(String) -> ScimError,
) -> Result<T, ScimError> {
    bounded(text, MAX_FILTER, what).map_err(refuse)?;
    delimited(multispace0, parser, multispace0)
        .parse(text)
        .map_err(|error| {
            refuse(format!(
                "malformed {what} at character {}: {text:?}",
                error.offset() + 1
            ))
        })
}

fn path(input: &mut &str) -> winnow::Result<Path> {
    let attr = attr_path(input)?;
    let filter = opt(delimited(
        '[',
        delimited(multispace0, or_expr, multispace0),
        ']',
    ))
    .parse_next(input)?;
    let sub = match filter {
        Some(_) => opt(preceded('.', name)).parse_next(input)?,
        None => None,
    };
    Ok(Path {
        attr,
        filter,
        sub: sub.map(str::to_owned),
    })
}

fn or_expr(input: &mut &str) -> winnow::Result<Filter> {
    chain(input, "or", and_expr, Filter::Or)
}

fn and_expr(input: &mut &str) -> winnow::Result<Filter> {
    chain(input, "and", unary, Filter::And)
}

/// `operand (keyword operand)*`, folded to the left with `combine`.
fn chain(
    input: &mut &str,
    keyword: &'static str,
    mut operand: impl FnMut(&mut &str) -> winnow::Result<Filter>,
    combine: fn(Box<Filter>, Box<Filter>) -> Filter,
) -> winnow::Result<Filter> {
    let mut left = operand(input)?;
    while let Some(right) = opt(preceded(
        (multispace1, literal(Caseless(keyword)), multispace1),
        &mut operand,
    ))
    .parse_next(input)?
    {
        left = combine(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn unary(input: &mut &str) -> winnow::Result<Filter> {
    let inner = |input: &mut &str| {
        terminated(delimited(multispace0, or_expr, multispace0), ')').parse_next(input)
    };
    alt((
        preceded((literal(Caseless("not")), multispace0, '('), inner)
            .map(|filter| Filter::Not(Box::new(filter))),
        preceded('(', inner),
        attr_expr,
    ))
    .parse_next(input)
}

fn attr_expr(input: &mut &str) -> winnow::Result<Filter> {
    let path = attr_path(input)?;
    if let Some(inner) = opt(delimited(
        '[',
        delimited(multispace0, or_expr, multispace0),
        ']',
    ))
    .parse_next(input)?
    {
        return Ok(Filter::ValuePath(path, Box::new(inner)));
    }
    multispace1(input)?;
    let op = operator(input)?;
    let Some(op) = op else {
        return Ok(Filter::Present(path));
    };
    multispace1(input)?;
    let value = comp_value(input)?;
    Ok(Filter::Compare(path, op, value))
}

fn operator(input: &mut &str) -> winnow::Result<Option<Op>> {
    let word = take_while(2, |c: char| c.is_ascii_alphabetic()).parse_next(input)?;
    Ok(Some(match word.to_ascii_lowercase().as_str() {
        "pr" => return Ok(None),
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "co" => Op::Co,
        "sw" => Op::Sw,
        "ew" => Op::Ew,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "lt" => Op::Lt,
        "le" => Op::Le,
        _ => return winnow::combinator::fail(input),
    }))
}

/// `false`, `null`, `true`, a number or a JSON string.
fn comp_value(input: &mut &str) -> winnow::Result<Value> {
    alt((
        literal(Caseless("true")).value(Value::Bool(true)),
        literal(Caseless("false")).value(Value::Bool(false)),
        literal(Caseless("null")).value(Value::Null),
        json_string,
        json_number,
    ))
    .parse_next(input)
}

fn json_string(input: &mut &str) -> winnow::Result<Value> {
    let start = *input;
    '"'.parse_next(input)?;
    let mut escaped = false;
    let end = input.char_indices().find_map(|(at, c)| {
        let close = c == '"' && !escaped;
        escaped = c == '\\' && !escaped;
        close.then_some(at)
    });
    let Some(end) = end else {
        return winnow::combinator::fail(input);
    };
    let literal = &start[..end + 2];
    match serde_json::from_str::<String>(literal) {
        Ok(text) => {
            *input = &input[end + 1..];
            Ok(Value::String(text))
        }
        Err(_) => winnow::combinator::fail(input),
    }
}

fn json_number(input: &mut &str) -> winnow::Result<Value> {
    let text = take_while(1.., |c: char| {
        c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')
    })
    .parse_next(input)?;
    match serde_json::from_str::<serde_json::Number>(text) {
        Ok(number) => Ok(Value::Number(number)),
        Err(_) => winnow::combinator::fail(input),
    }
}

fn name<'s>(input: &mut &'s str) -> winnow::Result<&'s str> {
    (
        take_while(1, |c: char| c.is_ascii_alphabetic() || c == '$'),
        take_while(0.., |c: char| {
            c.is_ascii_alphanumeric() || c == '_' || c == '-'
        }),
    )
        .take()
        .parse_next(input)
}

/// `[URN ":"] name ["." sub]`.
fn attr_path(input: &mut &str) -> winnow::Result<AttrPath> {
    let raw = take_while(1.., |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '$')
    })
    .parse_next(input)?;
    let (urn, rest) = if raw.len() > 4 && raw[..4].eq_ignore_ascii_case("urn:") {
        match raw.rfind(':') {
            Some(at) => (Some(raw[..at].to_owned()), &raw[at + 1..]),
            None => (None, raw),
        }
    } else {
        (None, raw)
    };
    let (attr, sub) = match rest.split_once('.') {
        Some((attr, sub)) => (attr, Some(sub)),
        None => (rest, None),
    };
    let valid = |text: &str| {
        let mut text = text;
        name.parse_next(&mut text).is_ok() && text.is_empty()
    };
    if !valid(attr) || !sub.is_none_or(valid) {
        return winnow::combinator::fail(input);
    }
    Ok(AttrPath {
        urn,
        name: attr.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

/// Where a path is resolved: at a resource's top, or inside the values of a multi-valued
/// complex attribute (in a value filter).
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// A resource of this type.
    Resource(&'static ResourceType),
    /// A value of this complex attribute.
    Within(&'static Attribute),
}

/// An attribute a path names: where its values live and its definition.
#[derive(Clone, Copy, Debug)]
pub struct Resolved {
    /// The schema URN of the extension holding it, `None` for the core schema.
    pub extension: Option<&'static str>,
    /// The attribute.
    pub attribute: &'static Attribute,
    /// Its sub-attribute, when the path names one.
    pub sub: Option<&'static Attribute>,
}

impl Scope {
    /// Resolves `path` here, or says why it names nothing.
    pub fn resolve(self, path: &AttrPath) -> Result<Resolved, String> {
        let attribute = match self {
            Scope::Within(parent) => {
                if path.urn.is_some() {
                    return Err(format!("'{}' cannot name a schema here", path.name));
                }
                let attribute = parent.sub_attribute(&path.name).ok_or_else(|| {
                    format!("'{}' has no sub-attribute '{}'", parent.name, path.name)
                })?;
                return Ok(Resolved {
                    extension: None,
                    attribute,
                    sub: None,
                });
            }
            Scope::Resource(resource) => {
                let (extension, attribute) = match &path.urn {
                    Some(urn) => {
                        let schema = resource
                            .schema(urn)
                            .ok_or_else(|| format!("unknown schema '{urn}'"))?;
                        let extension = (schema.id != resource.schema.id).then_some(schema.id);
                        (extension, schema.attribute(&path.name))
                    }
                    None => (
                        None,
                        common(&path.name).or_else(|| resource.schema.attribute(&path.name)),
                    ),
                };
                let attribute =
                    attribute.ok_or_else(|| format!("unknown attribute '{}'", path.name))?;
                (extension, attribute)
            }
        };
        let (extension, attribute) = attribute;
        let sub = match &path.sub {
            None => None,
            Some(sub) => Some(
                attribute
                    .sub_attribute(sub)
                    .ok_or_else(|| format!("'{}' has no sub-attribute '{sub}'", attribute.name))?,
            ),
        };
        Ok(Resolved {
            extension,
            attribute,
            sub,
        })
    }
}

/// `id`, `externalId` and `meta`, which every resource has.
pub fn common(name: &str) -> Option<&'static Attribute> {
    [&schema::ID, &schema::EXTERNAL_ID, &schema::META]
        .into_iter()
        .find(|attribute| attribute.name.eq_ignore_ascii_case(name))
}

/// Whether `resource` (a stored or rendered resource, keys as the schema spells them)
/// matches `filter` in `scope`.
pub fn matches(filter: &Filter, resource: &Value, scope: Scope) -> Result<bool, ScimError> {
    match filter {
        Filter::And(left, right) => {
            Ok(matches(left, resource, scope)? && matches(right, resource, scope)?)
        }
        Filter::Or(left, right) => {
            Ok(matches(left, resource, scope)? || matches(right, resource, scope)?)
        }
        Filter::Not(inner) => Ok(!matches(inner, resource, scope)?),
        Filter::Present(path) => {
            let resolved = scope.resolve(path).map_err(ScimError::invalid_filter)?;
            if resolved.sub.is_none() {
                // A complex attribute is present when it holds a non-empty value.
                return Ok(values(resource, &resolved)
                    .iter()
                    .any(|value| present(value)));
            }
            let (leaves, _) = leaves(resource, scope, path)?;
            Ok(leaves.iter().any(|leaf| present(leaf)))
        }
        Filter::Compare(path, op, literal) => {
            let (leaves, leaf) = leaves(resource, scope, path)?;
            if *op == Op::Ne {
                if literal.is_null() {
                    return Ok(leaves.iter().any(|value| present(value)));
                }
                for value in &leaves {
                    if compare(leaf, value, Op::Eq, literal)? {
                        return Ok(false);
                    }
                }
                return Ok(true);
            }
            if literal.is_null() && *op == Op::Eq {
                return Ok(!leaves.iter().any(|value| present(value)));
            }
            for value in &leaves {
                if compare(leaf, value, *op, literal)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Filter::ValuePath(path, inner) => {
            let resolved = scope.resolve(path).map_err(ScimError::invalid_filter)?;
            if resolved.attribute.kind != Kind::Complex || resolved.sub.is_some() {
                return Err(ScimError::invalid_filter(format!(
                    "'{}' has no values to filter",
                    resolved.attribute.name
                )));
            }
            let within = Scope::Within(resolved.attribute);
            for value in values(resource, &resolved) {
                if matches(inner, value, within)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// Checks `filter` in `scope` without a resource: every attribute it names exists, and every
/// comparison suits its attribute's type. A filter is refused whatever the data.
pub fn validate(filter: &Filter, scope: Scope) -> Result<(), ScimError> {
    match filter {
        Filter::And(left, right) | Filter::Or(left, right) => {
            validate(left, scope)?;
            validate(right, scope)
        }
        Filter::Not(inner) => validate(inner, scope),
        Filter::Present(path) => scope
            .resolve(path)
            .map(drop)
            .map_err(ScimError::invalid_filter),
        Filter::Compare(path, op, literal) => {
            let (_, leaf) = leaves(&Value::Null, scope, path)?;
            let sample = match leaf.kind {
                Kind::Boolean => Value::Bool(false),
                Kind::Integer | Kind::Decimal => Value::from(0),
                Kind::DateTime => Value::from("1970-01-01T00:00:00Z"),
                _ => Value::from(""),
            };
            if literal.is_null() {
                return match op {
                    Op::Eq | Op::Ne => Ok(()),
                    _ => Err(ScimError::invalid_filter(format!(
                        "'{}' can only be compared to null with eq or ne",
                        leaf.name
                    ))),
                };
            }
            let op = if *op == Op::Ne { Op::Eq } else { *op };
            compare(leaf, &sample, op, literal).map(drop)
        }
        Filter::ValuePath(path, inner) => {
            let resolved = scope.resolve(path).map_err(ScimError::invalid_filter)?;
            if resolved.attribute.kind != Kind::Complex || resolved.sub.is_some() {
                return Err(ScimError::invalid_filter(format!(
                    "'{}' has no values to filter",
                    resolved.attribute.name
                )));
            }
            validate(inner, Scope::Within(resolved.attribute))
        }
    }
}

/// The values an attribute holds in `resource` (each element of a multi-valued one).
pub fn values<'v>(resource: &'v Value, resolved: &Resolved) -> Vec<&'v Value> {
    let container = match resolved.extension {
        Some(urn) => resource.get(urn),
        None => Some(resource),
    };
    match container.and_then(|container| container.get(resolved.attribute.name)) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if resolved.attribute.multi => items.iter().collect(),
        Some(value) => vec![value],
    }
}

/// The leaf values `path` selects in `resource`, and the attribute they are values of.
fn leaves<'v>(
    resource: &'v Value,
    scope: Scope,
    path: &AttrPath,
) -> Result<(Vec<&'v Value>, &'static Attribute), ScimError> {
    let resolved = scope.resolve(path).map_err(ScimError::invalid_filter)?;
    let values = values(resource, &resolved);
    let leaf = match (resolved.sub, resolved.attribute.kind) {
        (Some(sub), _) => sub,
        (None, Kind::Complex) => resolved.attribute.sub_attribute("value").ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "'{}' is complex: name one of its sub-attributes",
                resolved.attribute.name
            ))
        })?,
        (None, _) => resolved.attribute,
    };
    let selected = if resolved.attribute.kind == Kind::Complex {
        values
            .into_iter()
            .filter_map(|value| value.get(leaf.name))
            .collect()
    } else {
        values
    };
    Ok((selected, leaf))
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        _ => true,
    }
}

/// Whether `value`, of `attribute`, stands in `op` to `literal`.
fn compare(
    attribute: &Attribute,
    value: &Value,
    op: Op,
    literal: &Value,
) -> Result<bool, ScimError> {
    let refuse = |why: &str| {
        Err(ScimError::invalid_filter(format!(
            "'{}' {why}",
            attribute.name
        )))
    };
    if literal.is_null() {
        return refuse("can only be compared to null with eq or ne");
    }
    match attribute.kind {
        Kind::Boolean => match (op, value.as_bool(), literal.as_bool()) {
            (Op::Eq, Some(value), Some(literal)) => Ok(value == literal),
            (Op::Eq, None, Some(_)) => Ok(false),
            (Op::Eq, _, None) => refuse("is a boolean: compare it to true or false"),
            _ => refuse("is a boolean: only eq, ne and pr apply"),
        },
        Kind::Integer | Kind::Decimal => {
            let (Some(value), Some(literal)) = (value.as_f64(), literal.as_f64()) else {
                return match literal.as_f64() {
                    None => refuse("is a number: compare it to a number"),
                    Some(_) => Ok(false),
                };
            };
            ordered(op, value.partial_cmp(&literal), attribute)
        }
        Kind::DateTime => {
            let Some(literal_text) = literal.as_str() else {
                return refuse("is a dateTime: compare it to a quoted timestamp");
            };
            let Some(text) = value.as_str() else {
                return Ok(false);
            };
            match op {
                Op::Co | Op::Sw | Op::Ew => Ok(textual(op, text, literal_text, true)),
                _ => {
                    let parse = |text: &str| {
                        time::OffsetDateTime::parse(
                            text,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    };
                    let Some(literal) = parse(literal_text) else {
                        return refuse(&format!(
                            "is a dateTime: {literal_text:?} is not an RFC 3339 timestamp"
                        ));
                    };
                    match parse(text) {
                        Some(value) => ordered(op, Some(value.cmp(&literal)), attribute),
                        None => Ok(false),
                    }
                }
            }
        }
        Kind::Complex => refuse("is complex: name one of its sub-attributes"),
        Kind::String | Kind::Reference | Kind::Binary => {
            let Some(literal) = literal.as_str() else {
                return refuse("is a string: compare it to a quoted string");
            };
            let Some(value) = value.as_str() else {
                return Ok(false);
            };
            if attribute.kind == Kind::Binary && !matches!(op, Op::Eq) {
                return refuse("is binary: only eq, ne and pr apply");
            }
            match op {
                Op::Gt | Op::Ge | Op::Lt | Op::Le => {
                    let ordering = if attribute.case_exact {
                        value.cmp(literal)
                    } else {
                        value.to_lowercase().cmp(&literal.to_lowercase())
                    };
                    ordered(op, Some(ordering), attribute)
                }
                _ => Ok(textual(op, value, literal, attribute.case_exact)),
            }
        }
    }
}

fn textual(op: Op, value: &str, literal: &str, case_exact: bool) -> bool {
    let (value, literal) = if case_exact {
        (value.to_owned(), literal.to_owned())
    } else {
        (value.to_lowercase(), literal.to_lowercase())
    };
    match op {
        Op::Eq => value == literal,
        Op::Co => value.contains(&literal),
        Op::Sw => value.starts_with(&literal),
        Op::Ew => value.ends_with(&literal),
        _ => false,
    }
}

fn ordered(op: Op, ordering: Option<Ordering>, attribute: &Attribute) -> Result<bool, ScimError> {
    let Some(ordering) = ordering else {
        return Ok(false);
    };
    Ok(match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Ne | Op::Co | Op::Sw | Op::Ew => {
            return Err(ScimError::invalid_filter(format!(
                "'{}' is not a string: co, sw and ew do not apply",
                attribute.name
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::schema::USERS;

    fn user() -> Value {
        json!({
            "id": "u1",
            "userName": "alice",
            "active": true,
            "emails": [
                {"value": "alice@work.example", "type": "work", "primary": true},
                {"value": "alice@home.example", "type": "home"}
            ],
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "meta": {"created": "2026-01-02T03:04:05Z", "lastModified": "2026-03-01T00:00:00Z"},
            schema::ENTERPRISE: {"manager": {"value": "u2"}, "department": "SRE"}
        })
    }

    fn check(filter: &str) -> bool {
        let parsed = parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        validate(&parsed, Scope::Resource(&USERS)).unwrap_or_else(|e| panic!("{filter}: {e}"));
        matches(&parsed, &user(), Scope::Resource(&USERS)).unwrap()
    }

    #[test]
    fn operators_case_rules_and_precedence() {
        assert!(check(r#"userName eq "ALICE""#));
        assert!(check(r#"USERNAME Eq "alice""#));
        assert!(!check(r#"id eq "U1""#), "id is caseExact");
        assert!(check(r#"userName sw "al" and userName ew "CE""#));
        assert!(check(r#"userName co "lic""#));
        assert!(check(r#"userName ne "bob""#));
        assert!(!check(r#"userName ne "alice""#));
        assert!(check(r#"title ne "x""#), "ne matches an absent attribute");
        assert!(check("active eq true"));
        assert!(!check("active eq false"));
        assert!(check("name.givenName pr"));
        assert!(check("name pr"));
        assert!(!check("addresses pr"));
        assert!(!check("title pr"));
        assert!(check(r#"emails.value co "@home""#));
        assert!(check(
            r#"emails[type eq "work" and value ew "work.example"]"#
        ));
        assert!(!check(r#"emails[type eq "home" and primary eq true]"#));
        assert!(check(r#"meta.lastModified gt "2026-02-01T00:00:00Z""#));
        assert!(check(r#"meta.created le "2026-01-02T04:04:05+01:00""#));
        assert!(!check(r#"meta.created lt "2026-01-02T03:04:05Z""#));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "u2""#
        ));
        assert!(check(
            r#"userName eq "bob" or userName eq "alice" and active eq true"#
        ));
        assert!(!check(
            r#"(userName eq "bob" or userName eq "alice") and active eq false"#
        ));
        assert!(check(r#"not (userName eq "bob")"#));
        assert!(check(r#"not(userName eq "bob") and not (title pr)"#));
        assert!(check(r#"userName eq "al\"ice" or userName eq "alice""#));
    }

    #[test]
    fn malformed_or_impossible_filters_are_refused() {
        for bad in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName xx "a""#,
            r#"userName eq "a"#,
            r#"(userName eq "a""#,
            r#"userName eq "a" and"#,
            r#"userName eq "a" junk"#,
            r#"emails[type eq "work""#,
            &format!("{}userName pr{}", "(".repeat(1000), ")".repeat(1000)),
            &vec!["userName pr"; 2000].join(" and "),
        ] {
            let error = parse_filter(bad).unwrap_err();
            assert_eq!(error.scim_type, Some("invalidFilter"), "{bad}");
        }
        for impossible in [
            r#"colour eq "red""#,
            "active gt true",
            r#"active eq "yes""#,
            r#"meta.created gt "yesterday""#,
            r#"name eq "x""#,
        ] {
            let parsed = parse_filter(impossible).unwrap();
            let error = matches(&parsed, &user(), Scope::Resource(&USERS)).unwrap_err();
            assert_eq!(error.scim_type, Some("invalidFilter"), "{impossible}");
            let error = validate(&parsed, Scope::Resource(&USERS)).unwrap_err();
            assert_eq!(error.scim_type, Some("invalidFilter"), "{impossible}");
        }
    }

    #[test]
    fn patch_paths() {
        let path = parse_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!(path.attr.name, "members");
        assert!(path.filter.is_some());
        let path = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(path.sub.as_deref(), Some("value"));
        let path = parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager")
            .unwrap();
        assert_eq!(path.attr.name, "manager");
        assert_eq!(path.attr.urn.as_deref(), Some(schema::ENTERPRISE));
        let path = parse_path("name.givenName").unwrap();
        assert_eq!(path.attr.sub.as_deref(), Some("givenName"));
        assert!(parse_path("members[").is_err());
        assert!(parse_path("a b").is_err());
    }
}
