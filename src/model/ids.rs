//! Request ids: one id follows a request through its whole life.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The id of an access request and of its lease, shown as `req-<n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(u64);

/// A string was not a request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request id '{0}': expected req-<number>, for example req-42")]
pub struct IdError(String);

impl RequestId {
    /// The first id a new store hands out.
    pub const FIRST: RequestId = RequestId(1);

    /// Wraps a raw id as stored.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number, used as the store key.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The id after this one.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req-{}", self.0)
    }
}

impl FromStr for RequestId {
    type Err = IdError;

    /// Accepts `req-42` and, for convenience at the command line, `42`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let digits = value.strip_prefix("req-").unwrap_or(value);
        if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError(value.chars().take(40).collect()));
        }
        match digits.parse::<u64>() {
            Ok(raw) if raw > 0 => Ok(Self(raw)),
            _ => Err(IdError(value.chars().take(40).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display() {
        let id = RequestId::from_raw(42);
        assert_eq!(id.to_string(), "req-42");
        assert_eq!("req-42".parse::<RequestId>().unwrap(), id);
        assert_eq!("42".parse::<RequestId>().unwrap(), id);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "req-",
            "req-0",
            "req--1",
            "req-1x",
            "abc",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<RequestId>().is_err(), "{bad}");
        }
    }
}
