//! A hierarchical timing wheel over unix-millisecond deadlines.
//!
//! Six levels of 64 slots: level `l` slots span `64^l` ms, so the wheel covers 2^36 ms (about
//! two years) at millisecond resolution. Insert is O(1) (compute level and slot, push); cancel is
//! O(1) (forget the id in the schedule map; its slot entry is dropped as stale when reached).
//! Deadlines more than [`HORIZON`] (about a year) away wait in an ordered set and are filed into
//! the wheel once they come within it, so the top level never wraps. A clock that steps back
//! rebuilds the wheel from the schedule map, so nothing is handed out before its deadline.
//! Each id has at most one live deadline: scheduling it again replaces the old one, so there is
//! never a second timer for one lease. The layout follows the well-known design of tokio's
//! timer; it is keyed by persisted wall-clock deadlines rather than by tokio's `Instant`, so a
//! test clock can drive it.

use std::collections::{BTreeSet, HashMap};

use crate::model::{RequestId, Timestamp};

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// What the levels can address.
const MAX_SPAN: u64 = (1 << (SLOT_BITS as usize * LEVELS)) - 1;
/// Deadlines at least this far from the wheel's time wait in the far set.
pub const HORIZON: u64 = 1 << 35;

/// One scheduled entry: the deadline it was filed for and the id.
type Entry = (u64, RequestId);

struct Level {
    occupied: u64,
    slots: Box<[Vec<Entry>; SLOTS]>,
}

impl Level {
    fn new() -> Self {
        Self {
            occupied: 0,
            slots: Box::new(std::array::from_fn(|_| Vec::new())),
        }
    }
}

/// The slot that holds the soonest entries.
#[derive(Debug, Clone, Copy)]
struct Expiration {
    level: usize,
    slot: usize,
    /// Start of the slot: nothing in it is due before this.
    deadline: u64,
}

/// The timing wheel.
pub struct Wheel {
    /// Everything up to and including this instant has been handed out.
    elapsed: u64,
    levels: Vec<Level>,
    /// The one live deadline of each scheduled id.
    scheduled: HashMap<RequestId, u64>,
    /// Entries already due when inserted.
    overdue: Vec<Entry>,
    /// Entries beyond the horizon, soonest first.
    far: BTreeSet<Entry>,
}

fn level_for(elapsed: u64, when: u64) -> usize {
    let mut masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    if masked >= MAX_SPAN {
        masked = MAX_SPAN - 1;
    }
    let significant = 63 - masked.leading_zeros() as usize;
    significant / SLOT_BITS as usize
}

fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (level * SLOT_BITS as usize)) & (SLOTS as u64 - 1)) as usize
}

impl Wheel {
    /// An empty wheel whose time starts at `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            elapsed: now.unix_millis(),
            levels: (0..LEVELS).map(|_| Level::new()).collect(),
            scheduled: HashMap::new(),
            overdue: Vec::new(),
            far: BTreeSet::new(),
        }
    }

    /// Number of ids scheduled.
    pub fn len(&self) -> usize {
        self.scheduled.len()
    }

    /// Whether nothing is scheduled.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }

    /// The live deadline of `id`.
    pub fn deadline(&self, id: RequestId) -> Option<Timestamp> {
        self.scheduled
            .get(&id)
            .copied()
            .map(Timestamp::from_unix_millis)
    }

    /// Makes room for `additional` more ids without rehashing on the way.
    pub fn reserve(&mut self, additional: usize) {
        self.scheduled.reserve(additional);
    }

    /// Schedules `id` at `deadline`, replacing any deadline it had.
    pub fn insert(&mut self, id: RequestId, deadline: Timestamp) {
        let when = deadline.unix_millis();
        if self.scheduled.insert(id, when) == Some(when) {
            // Already filed for exactly this deadline.
            return;
        }
        self.file((when, id));
    }

    fn file(&mut self, entry: Entry) {
        let when = entry.0;
        if when <= self.elapsed {
            self.overdue.push(entry);
            return;
        }
        if when - self.elapsed >= HORIZON {
            self.far.insert(entry);
            return;
        }
        let level = level_for(self.elapsed, when);
        let slot = slot_for(when, level);
        let level = &mut self.levels[level];
        level.slots[slot].push(entry);
        level.occupied |= 1 << slot;
    }

    /// Forgets `id`'s deadline.
    pub fn remove(&mut self, id: RequestId) {
        self.scheduled.remove(&id);
    }

    fn next_expiration(&self) -> Option<Expiration> {
        for (index, level) in self.levels.iter().enumerate() {
            if level.occupied == 0 {
                continue;
            }
            let slot_range = 1u64 << (index * SLOT_BITS as usize);
            let level_range = slot_range << SLOT_BITS;
            let now_slot = slot_for(self.elapsed, index);
            let rotated = level.occupied.rotate_right(now_slot as u32);
            let slot = (rotated.trailing_zeros() as usize + now_slot) % SLOTS;
            let level_start = self.elapsed & !(level_range - 1);
            let mut deadline = level_start + slot as u64 * slot_range;
            if deadline < self.elapsed {
                // Only the top level wraps: the slot belongs to the next rotation.
                deadline += level_range;
            }
            return Some(Expiration {
                level: index,
                slot,
                deadline,
            });
        }
        None
    }

    /// The earliest instant at which [`Wheel::poll`] may have work: an entry due, a slot to
    /// cascade, or a far entry to bring within the horizon.
    pub fn next_wake(&self) -> Option<Timestamp> {
        if !self.overdue.is_empty() {
            return Some(Timestamp::from_unix_millis(self.elapsed));
        }
        let wheel = self.next_expiration().map(|e| e.deadline);
        let far = self.far.first().map(|(when, _)| when - HORIZON + 1);
        wheel
            .into_iter()
            .chain(far)
            .min()
            .map(Timestamp::from_unix_millis)
    }

    /// Files every live entry again relative to `now` (after the clock stepped back).
    fn rebuild(&mut self, now: u64) {
        for level in &mut self.levels {
            level.occupied = 0;
            level.slots.iter_mut().for_each(Vec::clear);
        }
        self.overdue.clear();
        self.far.clear();
        self.elapsed = now;
        let live: Vec<Entry> = self
            .scheduled
            .iter()
            .map(|(id, when)| (*when, *id))
            .collect();
        for entry in live {
            self.file(entry);
        }
    }

    /// Hands out every id whose deadline is at or before `now`, soonest first per slot, and
    /// forgets them.
    pub fn poll(&mut self, now: Timestamp) -> Vec<RequestId> {
        let now = now.unix_millis();
        if now < self.elapsed {
            self.rebuild(now);
        }
        let mut due = Vec::new();
        for (when, id) in std::mem::take(&mut self.overdue) {
            self.take_if_live(when, id, &mut due);
        }
        while let Some(&(when, id)) = self.far.first() {
            if when > now {
                break;
            }
            self.far.pop_first();
            self.take_if_live(when, id, &mut due);
        }
        while let Some(expiration) = self.next_expiration() {
            if expiration.deadline > now {
                break;
            }
            let level = &mut self.levels[expiration.level];
            let entries = std::mem::take(&mut level.slots[expiration.slot]);
            level.occupied &= !(1 << expiration.slot);
            self.elapsed = self.elapsed.max(expiration.deadline);
            for (when, id) in entries {
                if when <= self.elapsed {
                    self.take_if_live(when, id, &mut due);
                } else if self.scheduled.get(&id) == Some(&when) {
                    self.file((when, id));
                }
            }
            // Entries re-filed at or before `elapsed` land in `overdue`.
            for (when, id) in std::mem::take(&mut self.overdue) {
                self.take_if_live(when, id, &mut due);
            }
        }
        self.elapsed = self.elapsed.max(now);
        while let Some(&(when, id)) = self.far.first() {
            if when - self.elapsed >= HORIZON {
                break;
            }
            self.far.pop_first();
            if self.scheduled.get(&id) == Some(&when) {
                self.file((when, id));
            }
        }
        due
    }

    fn take_if_live(&mut self, when: u64, id: RequestId, due: &mut Vec<RequestId>) {
        if self.scheduled.get(&id) == Some(&when) {
            self.scheduled.remove(&id);
            due.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const START: u64 = 1_800_000_000_000;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(START + ms)
    }

    fn id(n: u64) -> RequestId {
        RequestId::from_raw(n)
    }

    #[test]
    fn fires_at_the_deadline_not_before() {
        let mut wheel = Wheel::new(t(0));
        wheel.insert(id(1), t(45 * 60_000));
        assert!(wheel.poll(t(45 * 60_000 - 1)).is_empty());
        assert_eq!(wheel.poll(t(45 * 60_000)), vec![id(1)]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn rescheduling_replaces_and_removal_cancels() {
        let mut wheel = Wheel::new(t(0));
        wheel.insert(id(1), t(1_000));
        wheel.insert(id(1), t(5_000));
        wheel.insert(id(2), t(2_000));
        wheel.remove(id(2));
        assert_eq!(wheel.len(), 1);
        assert!(wheel.poll(t(4_999)).is_empty());
        assert_eq!(wheel.poll(t(5_000)), vec![id(1)]);
        assert!(wheel.poll(t(10_000)).is_empty());
    }

    #[test]
    fn past_deadlines_are_due_at_once() {
        let mut wheel = Wheel::new(t(10_000));
        wheel.insert(id(1), t(0));
        assert_eq!(wheel.next_wake(), Some(t(10_000)));
        assert_eq!(wheel.poll(t(10_000)), vec![id(1)]);
    }

    #[test]
    fn deadlines_beyond_the_wheel_span_wait_and_then_fire() {
        // Starting exactly on a top-level slot boundary used to spin forever.
        let start = 1u64 << 40;
        let mut wheel = Wheel::new(Timestamp::from_unix_millis(start));
        let far = start + (1 << 37) + 5;
        wheel.insert(id(1), Timestamp::from_unix_millis(far));
        wheel.insert(id(2), Timestamp::from_unix_millis(start + 10));
        assert_eq!(
            wheel.poll(Timestamp::from_unix_millis(start + (1 << 30))),
            vec![id(2)]
        );
        assert!(wheel.next_wake().unwrap().unix_millis() <= far);
        assert!(wheel.poll(Timestamp::from_unix_millis(far - 1)).is_empty());
        assert_eq!(wheel.poll(Timestamp::from_unix_millis(far)), vec![id(1)]);
    }

    #[test]
    fn a_clock_stepping_back_hands_out_nothing_early() {
        let mut wheel = Wheel::new(t(100_000));
        wheel.insert(id(1), t(150_000));
        assert!(wheel.poll(t(120_000)).is_empty());
        // The wall clock steps back a minute; id 1 is re-filed, not handed out.
        assert!(wheel.poll(t(60_000)).is_empty());
        wheel.insert(id(2), t(90_000));
        assert!(wheel.poll(t(89_999)).is_empty());
        assert_eq!(wheel.poll(t(90_000)), vec![id(2)]);
        assert!(wheel.poll(t(149_999)).is_empty());
        assert_eq!(wheel.poll(t(150_000)), vec![id(1)]);
    }

    /// Random inserts, cancels and polls against a simple reference model.
    #[test]
    fn agrees_with_a_reference_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut wheel = Wheel::new(t(0));
        let mut model: HashMap<RequestId, u64> = HashMap::new();
        let mut now = START;
        for _ in 0..20_000 {
            match next() % 10 {
                0..=5 => {
                    let spans = [10, 1_000, 100_000, 10_000_000, 5_000_000_000, 1 << 38];
                    let span = spans[(next() % spans.len() as u64) as usize];
                    let when = now + next() % span;
                    let key = id(next() % 500);
                    wheel.insert(key, Timestamp::from_unix_millis(when));
                    model.insert(key, when);
                }
                6 => {
                    let key = id(next() % 500);
                    wheel.remove(key);
                    model.remove(&key);
                }
                _ => {
                    let steps = [1, 63, 4_096, 300_000, 86_400_000, 1 << 36];
                    now += next() % steps[(next() % steps.len() as u64) as usize];
                    match next() % 16 {
                        // Land exactly on a top-level slot boundary.
                        0 | 1 => now = (now | ((1 << 30) - 1)) + 1,
                        // The wall clock steps back.
                        2 => now = now.saturating_sub(next() % 600_000).max(START),
                        _ => {}
                    }
                    let got: BTreeSet<RequestId> = wheel
                        .poll(Timestamp::from_unix_millis(now))
                        .into_iter()
                        .collect();
                    let expected: BTreeSet<RequestId> = model
                        .iter()
                        .filter(|(_, w)| **w <= now)
                        .map(|(k, _)| *k)
                        .collect();
                    model.retain(|_, w| *w > now);
                    assert_eq!(got, expected, "at {now}");
                    if let Some(wake) = wheel.next_wake() {
                        let soonest = model.values().min().copied();
                        assert!(soonest.is_none_or(|s| wake.unix_millis() <= s));
                    }
                }
            }
            assert_eq!(wheel.len(), model.len());
        }
    }
}
