//! Absolute wall-clock instants, persisted as unix milliseconds.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A wall-clock instant in unix milliseconds (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

/// A string was not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time '{0}': expected RFC 3339 (2026-01-31T12:00:00Z)")]
pub struct TimestampError(String);

impl Timestamp {
    /// Wraps unix milliseconds.
    pub const fn from_unix_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Unix milliseconds.
    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    /// Converts a system time; times before 1970 become the epoch.
    pub fn from_system_time(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// This instant as a system time.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// This instant plus a duration, saturating at the far future.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// This instant minus a duration, saturating at the epoch.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_sub(millis))
    }

    /// Time from `earlier` to this instant, zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 with milliseconds, UTC ("2026-11-22T10:00:00.000Z").
    pub fn rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.to_system_time()).to_string()
    }

    /// Parses RFC 3339.
    pub fn parse_rfc3339(value: &str) -> Result<Self, TimestampError> {
        humantime::parse_rfc3339_weak(value)
            .map(Self::from_system_time)
            .map_err(|_| TimestampError(value.chars().take(40).collect()))
    }
}

impl Timestamp {
    /// A point in time as people write it: RFC 3339 (`2026-08-01T09:00:00Z`), a date
    /// (`2026-08-01`, midnight UTC), or a duration before `now` (`7d`, `2h 30m`, `90m ago`).
    pub fn parse_when(text: &str, now: Timestamp) -> Result<Self, String> {
        let text = text.trim();
        let shown = || crate::model::one_line(&text.chars().take(40).collect::<String>());
        if text.is_empty() {
            return Err("a time is required".to_owned());
        }
        let is_date = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if is_date {
            return Self::parse_rfc3339(&format!("{text}T00:00:00Z"))
                .map_err(|_| format!("'{}' is not a valid date", shown()));
        }
        if text.as_bytes()[0].is_ascii_digit() && text.contains(['-', ':']) {
            return Self::parse_rfc3339(text).map_err(|_| {
                format!(
                    "'{}' is not an RFC 3339 time (like 2026-08-01T09:00:00Z)",
                    shown()
                )
            });
        }
        let ago = text.strip_suffix("ago").unwrap_or(text).trim_end();
        match humantime::parse_duration(ago) {
            Ok(duration) => Ok(now.saturating_sub(duration)),
            Err(_) => Err(format!(
                "'{}' is neither a time (2026-08-01T09:00:00Z, 2026-08-01) nor a duration ago (7d, 2h 30m)",
                shown()
            )),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_in_time_parse_in_every_accepted_form() {
        let now = Timestamp::parse_rfc3339("2026-11-22T12:00:00Z").unwrap();
        let at = |text: &str| Timestamp::parse_when(text, now).map(Timestamp::rfc3339);
        assert_eq!(
            at("2026-08-01T09:00:00Z").unwrap(),
            "2026-08-01T09:00:00.000Z"
        );
        assert_eq!(at("2026-08-01").unwrap(), "2026-08-01T00:00:00.000Z");
        assert_eq!(at("7d").unwrap(), "2026-11-15T12:00:00.000Z");
        assert_eq!(at("2h 30m ago").unwrap(), "2026-11-22T09:30:00.000Z");
        assert!(at("2026-13-01").unwrap_err().contains("not a valid date"));
        assert!(at("yesterday").unwrap_err().contains("neither a time"));
        assert!(at("").is_err());
    }

    #[test]
    fn formats_and_parses_rfc3339() {
        let t = Timestamp::from_unix_millis(1_795_000_000_123);
        assert_eq!(Timestamp::parse_rfc3339(&t.rfc3339()).unwrap(), t);
        assert!(t.rfc3339().ends_with('Z'));
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_millis(1000);
        assert_eq!(t.saturating_sub(Duration::from_secs(5)).unix_millis(), 0);
        assert_eq!(
            t.saturating_add(Duration::from_secs(1))
                .saturating_duration_since(t),
            Duration::from_secs(1)
        );
        assert_eq!(
            t.saturating_duration_since(t.saturating_add(Duration::from_secs(1))),
            Duration::ZERO
        );
    }
}
