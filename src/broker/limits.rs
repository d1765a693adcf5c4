//! Per-principal rate limits on submissions and extensions: a token bucket per principal and
//! action (and per resource, for resources whose policy sets a rate of their own), on the
//! daemon's clock. A refused call changes nothing but the count of refusals; the first refusal
//! of a principal in each window of the rate is audited (`rate.limited`), so a client retrying
//! in a loop cannot flood the audit log. Break-glass is never rate limited here: it has its
//! own daily limit in the policy and must never wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::audit::{Actor, entry};
use crate::broker::{Broker, BrokerError};
use crate::model::{Bucket, Happened, Principal, Rate, ResourceName, Timestamp};

/// The global rates, from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Submissions per principal.
    pub submit: Rate,
    /// Extension requests per principal.
    pub extend: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            submit: Rate {
                count: 20,
                per: std::time::Duration::from_secs(60),
            },
            extend: Rate {
                count: 10,
                per: std::time::Duration::from_secs(60),
            },
        }
    }
}

/// A rate-limited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limited {
    /// Submitting a request.
    Submit,
    /// Asking to extend a lease.
    Extend,
}

impl Limited {
    /// Its name in messages, audit details and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Extend => "extend",
        }
    }
}

type Key = (Principal, Limited, Option<ResourceName>);

/// The buckets and the refusals. Short `std::sync::Mutex`es; nothing awaits under them.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<Key, Bucket>>,
    /// When each principal's refusals of an action were last audited.
    audited: Mutex<HashMap<(Principal, Limited), Timestamp>>,
    refused: Arc<Refusals>,
}

/// Calls refused by a rate limit since start, by action: shared with the metrics.
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; 2]);

impl Refusals {
    /// Each action and its refusals.
    pub fn counts(&self) -> [(&'static str, u64); 2] {
        [Limited::Submit, Limited::Extend].map(|action| {
            (
                action.as_str(),
                self.0[action as usize].load(Ordering::Relaxed),
            )
        })
    }
}

/// Buckets kept at most; past this, full ones are forgotten (a forgotten bucket is a full one).
const MAX_BUCKETS: usize = 100_000;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Limiter {
    /// Takes a token of `rate` for `key` at `now`, or says how long until one is there.
    fn take(&self, key: Key, rate: Rate, now: Timestamp) -> Result<(), std::time::Duration> {
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= MAX_BUCKETS {
            buckets.clear();
        }
        buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }

    /// Whether this refusal is the first of its window, to be audited.
    fn first_in_window(
        &self,
        principal: &Principal,
        action: Limited,
        rate: Rate,
        now: Timestamp,
    ) -> bool {
        let mut audited = lock(&self.audited);
        let key = (principal.clone(), action);
        if audited
            .get(&key)
            .is_some_and(|last| now.saturating_duration_since(*last) < rate.per)
        {
            return false;
        }
        if audited.len() >= MAX_BUCKETS {
            audited.clear();
        }
        audited.insert(key, now);
        true
    }
}

impl Broker {
    /// Takes a token for `principal` doing `action` on `resource`: the resource's own rate
    /// when its policy sets one (a bucket per resource), else the global one.
    pub(crate) fn check_rate(
        &self,
        principal: &Principal,
        action: Limited,
        resource: &ResourceName,
    ) -> Result<(), BrokerError> {
        let snapshot = self.inner.rules.current();
        let own = snapshot
            .policy
            .resource(resource)
            .and_then(|resource| match action {
                Limited::Submit => resource.rate_limits.submit,
                Limited::Extend => resource.rate_limits.extend,
            });
        let global = match action {
            Limited::Submit => self.inner.settings.rate_limits.submit,
            Limited::Extend => self.inner.settings.rate_limits.extend,
        };
        let (rate, scope) = match own {
            Some(rate) => (rate, Some(resource.clone())),
            None => (global, None),
        };
        let now = self.inner.clock.now();
        let limiter = &self.inner.limiter;
        let Err(retry_after) = limiter.take((principal.clone(), action, scope), rate, now) else {
            return Ok(());
        };
        limiter.refused.0[action as usize].fetch_add(1, Ordering::Relaxed);
        if limiter.first_in_window(principal, action, rate, now) {
            let draft = entry::of(
                now,
                Actor::Principal(principal.clone()),
                Happened::RateLimited {
                    principal: principal.clone(),
                    resource: resource.clone(),
                    action: action.as_str(),
                    rate,
                },
            );
            let broker = self.clone();
            tokio::spawn(async move {
                if let Err(error) = broker.record(draft).await {
                    tracing::warn!(%error, "could not record a rate-limited caller");
                }
            });
        }
        Err(BrokerError::TooFast {
            action: action.as_str(),
            rate,
            retry_after,
        })
    }

    /// The count of calls refused by a rate limit, kept up to date.
    pub fn rate_refusals(&self) -> Arc<Refusals> {
        self.inner.limiter.refused.clone()
    }
}
