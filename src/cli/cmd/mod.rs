//! The commands, one module each: its arguments (a clap struct) and how it runs against a
//! [`Session`](super::session::Session).

pub mod admin;
pub mod approve;
pub mod audit;
pub mod break_glass;
pub mod cancel;
pub mod completions;
pub mod credentials;
pub mod deny;
pub mod extend;
pub mod history;
pub mod list;
pub mod pending;
pub mod release;
pub mod report;
pub mod request;
pub mod resources;
pub mod review;
pub mod reviews;
pub mod status;
pub mod whoami;
