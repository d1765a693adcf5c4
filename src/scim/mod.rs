//! The SCIM 2.0 service provider (RFC 7643 schemas, RFC 7644 protocol): the identity provider
//! pushes users and groups here, and they are the directory of record (`policy.directory =
//! "scim"`). Changes are stored with their audit entries and put in force in one transaction;
//! a deactivated or deleted user is a leaver and a user removed from a group a mover, both
//! acted on before the answer is sent.
//!
//! - [`schema`]: the schemas, resource types and service provider configuration served;
//! - [`filter`]: the filter and PATCH path grammar, and filter evaluation;
//! - [`resource`]: request bodies checked against the schemas, answers projected;
//! - [`patch`]: PATCH operations;
//! - [`registry`]: the users and groups, and the directory the broker makes of them;
//! - [`service`]: the operations; [`http`]: the HTTPS listener, authentication and routing;
//! - [`token`]: the bearer token; [`import`]: seeding from a directory file.

pub mod error;
pub mod filter;
pub mod http;
pub mod import;
pub mod patch;
pub mod registry;
pub mod resource;
pub mod schema;
pub mod service;
pub mod token;

pub use error::ScimError;
pub use registry::Registry;
pub use service::Scim;
pub use token::Token;
