//! Lease durations: humantime text in, a bounded whole-millisecond duration out.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest duration any field accepts, whatever the policy says: one year.
const ABSOLUTE_MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// A positive duration of whole milliseconds, at most a year. Resource bounds are checked by
/// the policy; this type only guarantees a sane value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct LeaseDuration(Duration);

/// A string was not a usable duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not humantime.
    #[error("invalid duration '{0}': expected a number and a unit, for example 45m, 2h or 1h30m")]
    Malformed(String),
    /// Zero.
    #[error("invalid duration '{0}': must be longer than zero")]
    Zero(String),
    /// Longer than a year.
    #[error("invalid duration '{0}': longer than a year")]
    TooLong(String),
}

impl LeaseDuration {
    /// Parses humantime text such as `45m` or `1h30m`.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let shown: String = text.chars().take(40).collect();
        let duration = humantime::parse_duration(text.trim())
            .map_err(|_| DurationError::Malformed(shown.clone()))?;
        Self::new(duration).map_err(|error| match error {
            DurationError::Zero(_) => DurationError::Zero(shown.clone()),
            DurationError::TooLong(_) => DurationError::TooLong(shown.clone()),
            other => other,
        })
    }

    /// Checks a duration, dropping sub-millisecond parts.
    pub fn new(duration: Duration) -> Result<Self, DurationError> {
        let millis = Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        if millis.is_zero() {
            return Err(DurationError::Zero(format_duration(duration)));
        }
        if millis > ABSOLUTE_MAX {
            return Err(DurationError::TooLong(format_duration(duration)));
        }
        Ok(Self(millis))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl TryFrom<u64> for LeaseDuration {
    type Error = DurationError;
    fn try_from(millis: u64) -> Result<Self, Self::Error> {
        Self::new(Duration::from_millis(millis))
    }
}

impl From<LeaseDuration> for u64 {
    fn from(duration: LeaseDuration) -> u64 {
        u64::try_from(duration.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for LeaseDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// Formats a duration the way people write it ("1h 30m").
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    ))
    .to_string()
}

/// Deserializes a humantime duration (`90s`, `1h30m`) for configuration fields, naming the text
/// that is not one.
pub fn humantime<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    ::humantime::parse_duration(&text)
        .map_err(|error| serde::de::Error::custom(format!("invalid duration '{text}': {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_humantime() {
        assert_eq!(
            LeaseDuration::parse("45m").unwrap().get(),
            Duration::from_secs(2700)
        );
        assert_eq!(
            LeaseDuration::parse("1h30m").unwrap().get(),
            Duration::from_secs(5400)
        );
        assert_eq!(LeaseDuration::parse("2h").unwrap().to_string(), "2h");
    }

    #[test]
    fn rejects_malformed_zero_and_huge() {
        assert!(matches!(
            LeaseDuration::parse("soon"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            LeaseDuration::parse("-5m"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            LeaseDuration::parse("0s"),
            Err(DurationError::Zero(_))
        ));
        assert!(matches!(
            LeaseDuration::parse("400days"),
            Err(DurationError::TooLong(_))
        ));
    }
}
