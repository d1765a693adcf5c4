//! The one source of time. Everything that reads "now" or waits for an instant goes through a
//! [`Clock`], so that tests of expiry, time-outs and retries advance a [`ManualClock`] instead of
//! sleeping.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::model::Timestamp;

/// A future that completes at an instant.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Wall-clock time and waiting for it.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;

    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// The system clock is re-read at least this often while waiting, so that a wall-clock step
/// (NTP, suspend) delays a deadline by at most this much.
const RECHECK: Duration = Duration::from_secs(1);

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        Box::pin(async move {
            loop {
                let now = SystemClock.now();
                if now >= deadline {
                    return;
                }
                let wait = deadline.saturating_duration_since(now).min(RECHECK);
                tokio::time::sleep(wait).await;
            }
        })
    }
}

/// A clock that only moves when told to: for tests and benchmarks. Cloning shares the clock.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// A clock standing at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward, waking everything whose deadline passed.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now = now.saturating_add(by));
    }

    /// Sets the clock; it never moves backwards.
    pub fn set(&self, to: Timestamp) {
        self.now.send_modify(|now| *now = (*now).max(to));
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &*self.now.borrow())
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as any clone of the clock; if it is gone nobody can
            // advance time any more, so the deadline never comes.
            if now.wait_for(|now| *now >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_000));
        let sleep = clock.sleep_until(Timestamp::from_unix_millis(61_000));
        let waiter = tokio::spawn(sleep);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        clock.advance(Duration::from_secs(60));
        waiter.await.unwrap();
        assert_eq!(clock.now().unix_millis(), 61_000);
    }

    #[test]
    fn manual_clock_never_goes_back() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(5_000));
        clock.set(Timestamp::from_unix_millis(1_000));
        assert_eq!(clock.now().unix_millis(), 5_000);
    }
}
