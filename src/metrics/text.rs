//! The Prometheus text exposition format, version 0.0.4, and the two kinds of metric kept
//! between scrapes: labelled counters and labelled histograms. Gauges are not kept; they are
//! written straight from what a scrape reads.
//!
//! Every family is written with its `# HELP` and `# TYPE` lines; samples of one family are
//! contiguous and ordered by their label values, so a scrape is deterministic. Label values and
//! help texts are escaped as the format requires.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The `Content-Type` of an exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family, as its `# TYPE` line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until the daemon restarts).
    Counter,
    /// A current value.
    Gauge,
    /// Observations counted into buckets, with their sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// An exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts the family `name`: its help and type lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "invalid metric name {name}");
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the family started last.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                debug_assert!(valid_name(label) && !label.contains(':'));
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&number(value));
        self.text.push('\n');
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, &[], value as f64);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.text
    }
}

/// A valid metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A help text escaped: backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value escaped: backslash, double quote and line feed.
fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value or bucket bound as the format spells it: integers without a fraction,
/// `+Inf`, `-Inf`, `NaN`.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust prints finite floats without exponents and with the fewest digits that read
        // back as the same value, which every Prometheus parser accepts.
        value.to_string()
    }
}

/// The map behind a family; a panic elsewhere while it was held leaves numbers that are still
/// whole, so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The labels of one series, paired with their names.
fn pairs<'a, const N: usize>(
    names: &[&'static str; N],
    values: &'a [String; N],
) -> Vec<(&'static str, &'a str)> {
    names
        .iter()
        .zip(values.iter())
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// A counter family with labels `N`. Shared by reference; each update takes a short lock.
#[derive(Debug)]
pub struct Counter<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    values: Mutex<BTreeMap<[String; N], u64>>,
}

impl<const N: usize> Counter<N> {
    /// A family with no series yet. `name` ends in `_total`.
    pub fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        debug_assert!(name.ends_with("_total"));
        Self {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds one to the series with label values `values`.
    pub fn increment(&self, values: [&str; N]) {
        *lock(&self.values)
            .entry(values.map(str::to_owned))
            .or_default() += 1;
    }

    /// The value of one series (0 when it has none yet).
    pub fn value(&self, values: [&str; N]) -> u64 {
        lock(&self.values)
            .get(&values.map(str::to_owned))
            .copied()
            .unwrap_or(0)
    }

    /// Writes the family.
    pub fn encode(&self, out: &mut Exposition) {
        out.family(self.name, Kind::Counter, self.help);
        for (values, count) in lock(&self.values).iter() {
            out.sample(self.name, &pairs(&self.labels, values), *count as f64);
        }
    }
}

/// The buckets, sum and count of one histogram series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Observations at most each bound (not cumulative; above the last bound: none).
    pub buckets: Vec<u64>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// A histogram family with labels `N` and fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    bounds: &'static [f64],
    series: Mutex<BTreeMap<[String; N], Series>>,
}

impl<const N: usize> Histogram<N> {
    /// A family with no observations. `bounds` are the buckets' upper bounds, ascending, finite.
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
        bounds: &'static [f64],
    ) -> Self {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        debug_assert!(bounds.iter().all(|bound| bound.is_finite()));
        Self {
            name,
            help,
            labels,
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts `value` in the series with label values `values`.
    pub fn observe(&self, values: [&str; N], value: f64) {
        let mut series = lock(&self.series);
        let series = series.entry(values.map(str::to_owned)).or_default();
        if series.buckets.is_empty() {
            series.buckets = vec![0; self.bounds.len()];
        }
        if let Some(bucket) = self.bounds.iter().position(|bound| value <= *bound) {
            series.buckets[bucket] += 1;
        }
        series.sum += value;
        series.count += 1;
    }

    /// One series as it is now (empty when it has no observations).
    pub fn series(&self, values: [&str; N]) -> Series {
        lock(&self.series)
            .get(&values.map(str::to_owned))
            .cloned()
            .unwrap_or_default()
    }

    /// Writes the family. Without labels, its one series is written even before the first
    /// observation, so that rates over it start at zero.
    pub fn encode(&self, out: &mut Exposition) {
        out.family(self.name, Kind::Histogram, self.help);
        let series = lock(&self.series);
        let empty = [(); N].map(|()| String::new());
        let zero = Series {
            buckets: vec![0; self.bounds.len()],
            ..Series::default()
        };
        let unlabelled = (N == 0 && series.is_empty()).then_some((&empty, &zero));
        let bucket = format!("{}_bucket", self.name);
        let sum = format!("{}_sum", self.name);
        let count = format!("{}_count", self.name);
        for (values, one) in series.iter().chain(unlabelled) {
            let labels = pairs(&self.labels, values);
            let mut cumulative = 0;
            for (bound, observed) in self.bounds.iter().zip(&one.buckets) {
                cumulative += observed;
                let le = number(*bound);
                let mut with_le = labels.clone();
                with_le.push(("le", &le));
                out.sample(&bucket, &with_le, cumulative as f64);
            }
            let mut with_le = labels.clone();
            with_le.push(("le", "+Inf"));
            out.sample(&bucket, &with_le, one.count as f64);
            out.sample(&sum, &labels, one.sum);
            out.sample(&count, &labels, one.count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_write_help_type_and_one_line_per_series_in_label_order() {
        let counter = Counter::new(
            "elevate_things_total",
            "Things done.",
            ["resource", "outcome"],
        );
        counter.increment(["b", "ok"]);
        counter.increment(["a", "ok"]);
        counter.increment(["b", "ok"]);
        let mut out = Exposition::default();
        counter.encode(&mut out);
        assert_eq!(
            out.finish(),
            "# HELP elevate_things_total Things done.\n\
             # TYPE elevate_things_total counter\n\
             elevate_things_total{resource=\"a\",outcome=\"ok\"} 1\n\
             elevate_things_total{resource=\"b\",outcome=\"ok\"} 2\n"
        );
        assert_eq!(counter.value(["b", "ok"]), 2);
        assert_eq!(counter.value(["c", "ok"]), 0);
    }

    #[test]
    fn a_counter_without_series_writes_only_its_header() {
        let counter = Counter::new("elevate_none_total", "None yet.", ["resource"]);
        let mut out = Exposition::default();
        counter.encode(&mut out);
        assert_eq!(
            out.finish(),
            "# HELP elevate_none_total None yet.\n# TYPE elevate_none_total counter\n"
        );
    }

    #[test]
    fn histograms_write_cumulative_buckets_then_sum_and_count() {
        let histogram = Histogram::new(
            "elevate_wait_seconds",
            "Waiting.",
            ["kind"],
            &[0.5, 1.0, 2.5],
        );
        for value in [0.1, 0.5, 2.0, 7.0] {
            histogram.observe(["x"], value);
        }
        let mut out = Exposition::default();
        histogram.encode(&mut out);
        assert_eq!(
            out.finish(),
            "# HELP elevate_wait_seconds Waiting.\n\
             # TYPE elevate_wait_seconds histogram\n\
             elevate_wait_seconds_bucket{kind=\"x\",le=\"0.5\"} 2\n\
             elevate_wait_seconds_bucket{kind=\"x\",le=\"1\"} 2\n\
             elevate_wait_seconds_bucket{kind=\"x\",le=\"2.5\"} 3\n\
             elevate_wait_seconds_bucket{kind=\"x\",le=\"+Inf\"} 4\n\
             elevate_wait_seconds_sum{kind=\"x\"} 9.6\n\
             elevate_wait_seconds_count{kind=\"x\"} 4\n"
        );
        let series = histogram.series(["x"]);
        assert_eq!((series.buckets, series.count), (vec![2, 0, 1], 4));
        assert_eq!(histogram.series(["y"]), Series::default());
    }

    #[test]
    fn an_unlabelled_histogram_is_written_at_zero_before_its_first_observation() {
        let histogram = Histogram::new("elevate_lag_seconds", "Lag.", [], &[1.0]);
        let mut out = Exposition::default();
        histogram.encode(&mut out);
        assert_eq!(
            out.finish(),
            "# HELP elevate_lag_seconds Lag.\n\
             # TYPE elevate_lag_seconds histogram\n\
             elevate_lag_seconds_bucket{le=\"1\"} 0\n\
             elevate_lag_seconds_bucket{le=\"+Inf\"} 0\n\
             elevate_lag_seconds_sum 0\n\
             elevate_lag_seconds_count 0\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = Exposition::default();
        out.family("elevate_odd", Kind::Gauge, "A \\ help\nover two lines.");
        out.sample("elevate_odd", &[("name", "a\"b\\c\nd")], 1.0);
        assert_eq!(
            out.finish(),
            "# HELP elevate_odd A \\\\ help\\nover two lines.\n\
             # TYPE elevate_odd gauge\n\
             elevate_odd{name=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn numbers_are_spelled_as_the_format_wants() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(0.0005), "0.0005");
        assert_eq!(number(1e21), "1000000000000000000000");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("elevate_requests_total"));
        assert!(valid_name("a:b_c9"));
        assert!(!valid_name("9a"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }
}
