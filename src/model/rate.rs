//! Rates of calls, written `COUNT/DURATION` (`20/1m`: twenty a minute, in bursts of up to
//! twenty), and the token bucket that enforces one.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::model::Timestamp;

/// At most `count` calls in a burst, refilled at `count` per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Calls in a full bucket.
    pub count: u32,
    /// Time to refill the whole bucket.
    pub per: Duration,
}

/// Not a rate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate '{0}': expected COUNT/DURATION, for example 20/1m or 100/1h")]
pub struct RateError(String);

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            RateError(crate::model::one_line(
                &text.chars().take(40).collect::<String>(),
            ))
        };
        let (count, per) = text.trim().split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let per = humantime::parse_duration(per.trim()).map_err(|_| invalid())?;
        if count == 0 || per < Duration::from_secs(1) || per > Duration::from_secs(366 * 86400) {
            return Err(invalid());
        }
        Ok(Self { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A token bucket for one rate: full at first, each call takes a token, tokens come back at
/// the rate's pace. Kept in thousandths of a token so that slow rates refill smoothly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    millitokens: u64,
    at: Timestamp,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(rate: Rate, now: Timestamp) -> Self {
        Self {
            millitokens: u64::from(rate.count) * 1000,
            at: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&mut self, rate: Rate, now: Timestamp) -> Result<(), Duration> {
        let capacity = u64::from(rate.count) * 1000;
        let per_ms = u64::try_from(rate.per.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let elapsed = now.saturating_duration_since(self.at).as_millis();
        let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
        // Tokens come back at capacity per `per`: capacity * elapsed / per_ms millitokens.
        let refilled = u128::from(capacity) * u128::from(elapsed) / u128::from(per_ms);
        self.millitokens = capacity.min(
            self.millitokens
                .saturating_add(u64::try_from(refilled).unwrap_or(u64::MAX)),
        );
        self.at = now;
        if self.millitokens >= 1000 {
            self.millitokens -= 1000;
            return Ok(());
        }
        let missing = 1000 - self.millitokens;
        let wait_ms = (u128::from(missing) * u128::from(per_ms)).div_ceil(u128::from(capacity));
        Err(Duration::from_millis(
            u64::try_from(wait_ms).unwrap_or(u64::MAX),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_refuse_nonsense() {
        let rate: Rate = "20/1m".parse().unwrap();
        assert_eq!(
            rate,
            Rate {
                count: 20,
                per: Duration::from_secs(60)
            }
        );
        assert_eq!(rate.to_string(), "20/1m");
        for bad in [
            "",
            "20",
            "0/1m",
            "x/1m",
            "20/",
            "20/0s",
            "20/fortnight",
            "-1/1m",
        ] {
            let error = bad.parse::<Rate>().unwrap_err().to_string();
            assert!(error.contains("COUNT/DURATION"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_bucket_allows_a_burst_then_refills_at_the_rate() {
        let rate: Rate = "3/1m".parse().unwrap();
        let start = Timestamp::from_unix_millis(1_000_000);
        let mut bucket = Bucket::full(rate, start);
        for _ in 0..3 {
            bucket.take(rate, start).unwrap();
        }
        assert_eq!(bucket.take(rate, start), Err(Duration::from_secs(20)));
        let later = start.saturating_add(Duration::from_secs(19));
        assert_eq!(bucket.take(rate, later), Err(Duration::from_secs(1)));
        let refilled = start.saturating_add(Duration::from_secs(20));
        bucket.take(rate, refilled).unwrap();
        // Never more than a full bucket, however long it waited.
        let much_later = refilled.saturating_add(Duration::from_secs(3600));
        for _ in 0..3 {
            bucket.take(rate, much_later).unwrap();
        }
        assert!(bucket.take(rate, much_later).is_err());
    }
}
