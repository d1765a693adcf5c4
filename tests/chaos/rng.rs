//! A small seeded generator (SplitMix64): every choice the harness makes — which operation,
//! which principal, when to kill — comes from the run's seed, so a failing run can be replayed
//! with `ELEVATE_CHAOS_SEED`. (The daemon's own timing is not seeded; a replay follows the same
//! script, not necessarily the same interleaving.)

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// An independent generator for stream `n` of this one (a worker, a cycle).
    pub fn fork(&self, n: u64) -> Self {
        let mut mixed = Self(self.0 ^ n.wrapping_mul(0xA076_1D64_78BD_642F));
        Self(mixed.next())
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..high` (`high > low`).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = usize::try_from(self.range(0, items.len() as u64)).unwrap_or(0);
        &items[index]
    }
}

/// A seed for a run that names none: the time and the process id, mixed.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Rng::new(nanos ^ u64::from(std::process::id()).rotate_left(32)).next()
}
