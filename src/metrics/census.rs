//! Gauges of current state, counted in one read transaction at each scrape: correct after a
//! restart, and consistent with one another. Only open requests are counted by state; finished
//! ones are history, counted by `elevate_requests_total`, and counting them here would make
//! every scrape read an index that grows without end.

use super::families::Exposition;
use crate::model::{ReviewState, StateKind};
use crate::store::{Reads, StoreError};

/// The open states, in lifecycle order.
const OPEN: [StateKind; 4] = [
    StateKind::Pending,
    StateKind::Approved,
    StateKind::Active,
    StateKind::RevokeFailing,
];

/// What the store holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Census {
    /// Requests in each open state, in the order of `OPEN`.
    pub open: [u64; 4],
    /// Reviews before their deadline.
    pub reviews_pending: u64,
    /// Reviews past their deadline.
    pub reviews_overdue: u64,
    /// Notifications waiting in the outbox.
    pub outbox: u64,
}

impl Census {
    /// Counts, in `reader`'s snapshot.
    pub fn read(reader: &dyn Reads) -> Result<Self, StoreError> {
        let mut open = [0; 4];
        for (count, state) in open.iter_mut().zip(OPEN) {
            *count = reader.count_in_state(state)?;
        }
        Ok(Self {
            open,
            reviews_pending: reader.count_reviews(ReviewState::Pending)?,
            reviews_overdue: reader.count_reviews(ReviewState::Overdue)?,
            outbox: reader.outbox_len()?,
        })
    }

    fn in_state(&self, wanted: StateKind) -> u64 {
        OPEN.iter()
            .zip(self.open)
            .find(|(state, _)| **state == wanted)
            .map_or(0, |(_, count)| count)
    }

    /// Writes the gauges.
    pub fn encode(&self, out: &mut Exposition) {
        out.gauges(
            "elevate_requests_open",
            "Requests not yet finished, by state: pending, approved (being granted), active, revoke_failing.",
            "state",
            OPEN.iter().zip(self.open).map(|(state, count)| {
                (
                    state.as_str().to_owned(),
                    i64::try_from(count).unwrap_or(i64::MAX),
                )
            }),
        );
        out.gauge(
            "elevate_leases_active",
            "Leases in force (state active).",
            self.in_state(StateKind::Active),
        );
        out.gauge(
            "elevate_leases_revoke_failing",
            "Leases that should have ended whose revoke is being retried; they still hold access.",
            self.in_state(StateKind::RevokeFailing),
        );
        out.gauge(
            "elevate_reviews_open",
            "Break-glass reviews waiting for a verdict, overdue ones included.",
            self.reviews_pending + self.reviews_overdue,
        );
        out.gauge(
            "elevate_reviews_overdue",
            "Break-glass reviews past their deadline without a verdict.",
            self.reviews_overdue,
        );
        out.gauge(
            "elevate_notification_outbox_depth",
            "Notifications waiting in the outbox for delivery.",
            self.outbox,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_written_from_the_counts() {
        let census = Census {
            open: [1, 0, 3, 2],
            reviews_pending: 1,
            reviews_overdue: 2,
            outbox: 5,
        };
        let mut out = Exposition::default();
        census.encode(&mut out);
        let text = out.finish();
        for line in [
            "elevate_requests_open{state=\"pending\"} 1",
            "elevate_requests_open{state=\"approved\"} 0",
            "elevate_requests_open{state=\"active\"} 3",
            "elevate_requests_open{state=\"revoke_failing\"} 2",
            "elevate_leases_active 3",
            "elevate_leases_revoke_failing 2",
            "elevate_reviews_open 3",
            "elevate_reviews_overdue 2",
            "elevate_notification_outbox_depth 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
