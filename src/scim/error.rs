//! SCIM errors (RFC 7644 §3.12): an HTTP status, a `scimType` where the protocol names one,
//! and a detail for the identity provider's operator. Nothing internal reaches the detail: a
//! failure of the store or of a target is logged here and answered as a plain 500 or 503.

use http::StatusCode;
use serde_json::{Value, json};

use super::schema;

/// A SCIM error response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {scim_type:?}: {detail}")]
pub struct ScimError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `scimType` (`invalidFilter`, `uniqueness`, …), when one applies.
    pub scim_type: Option<&'static str>,
    /// What went wrong, for the identity provider's operator.
    pub detail: String,
    /// The methods allowed, for a 405.
    pub allow: Option<&'static str>,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
            allow: None,
        }
    }

    /// The same error, saying which methods are allowed (a 405's `Allow` header).
    pub fn allowing(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    /// 400 `invalidFilter`: a filter that does not parse or names what cannot be filtered.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidFilter"), detail)
    }

    /// 400 `invalidSyntax`: a body that is not the message it should be (unknown attributes,
    /// not JSON, a missing `schemas`).
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidSyntax"), detail)
    }

    /// 400 `invalidValue`: a value of the wrong type, a required attribute missing, a name
    /// elevate cannot use.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
    }

    /// 400 `invalidPath`: a PATCH path that does not parse or names no attribute.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidPath"), detail)
    }

    /// 400 `noTarget`: a PATCH path whose filter matches nothing.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("noTarget"), detail)
    }

    /// 400 `mutability`: a change to an attribute that may not change that way.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("mutability"), detail)
    }

    /// 400 `tooMany`: more results than one answer may hold.
    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("tooMany"), detail)
    }

    /// 409 `uniqueness`: another resource already has the value.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
    }

    /// 400 with no `scimType`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, None, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }

    /// 412: `If-Match` names another version.
    pub fn precondition(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, None, detail)
    }

    /// Any other status, without a `scimType`.
    pub fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::new(status, None, detail)
    }

    /// The error as the body of a response.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [schema::ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = json!(scim_type);
        }
        body
    }
}
