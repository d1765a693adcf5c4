//! Integration tests: the real daemon over mutual TLS on a loopback port, with generated
//! certificates, a temporary redb and a manual clock. One test binary; modules by topic.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod it;
