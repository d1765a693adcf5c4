//! The metric families, kept with the `prometheus-client` crate and written by its encoder of
//! the Prometheus text format, version 0.0.4 (what `promtool check metrics` reads, and every
//! Prometheus scrapes). Counters and histograms are kept between scrapes; gauges are written
//! straight from what a scrape reads ([`Exposition`]).
//!
//! Names are given as they are scraped (`elevate_requests_total`); help texts end with a
//! period, which the encoder writes itself.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter as Count;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram as Buckets;
use prometheus_client::registry::Registry;

/// The `Content-Type` of an exposition.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A label set: each label's name with its value.
type Labels<const N: usize> = [(&'static str, String); N];

/// The name a counter is registered under: the encoder adds `_total`.
fn counter_name(name: &'static str) -> &'static str {
    name.strip_suffix("_total").unwrap_or(name)
}

/// A help text as registered: the encoder adds the final period.
fn help(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

/// A labelled counter.
#[derive(Debug)]
pub struct Counter<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    family: Family<Labels<N>, Count>,
}

impl<const N: usize> Counter<N> {
    /// The counter `name` (ending in `_total`), with labels named `labels`.
    pub fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Self {
            name,
            help,
            labels,
            family: Family::default(),
        }
    }

    fn key(&self, values: [&str; N]) -> Labels<N> {
        std::array::from_fn(|i| (self.labels[i], values[i].to_owned()))
    }

    /// Adds one to the series of `values`.
    pub fn increment(&self, values: [&str; N]) {
        self.family.get_or_create(&self.key(values)).inc();
    }

    /// The value of the series of `values` (0 before its first increment).
    pub fn value(&self, values: [&str; N]) -> u64 {
        self.family
            .get(&self.key(values))
            .map_or(0, |count| count.get())
    }

    /// Adds the family to a scrape.
    pub fn register(&self, out: &mut Exposition) {
        out.registry.register(
            counter_name(self.name),
            help(self.help),
            self.family.clone(),
        );
    }
}

/// Makes each series of a histogram family with the family's bucket bounds.
#[derive(Clone, Debug)]
struct Bounds(&'static [f64]);

impl MetricConstructor<Buckets> for Bounds {
    fn new_metric(&self) -> Buckets {
        Buckets::new(self.0.iter().copied())
    }
}

/// The count and sum of one histogram series.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Series {
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

/// A labelled histogram with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    family: Family<Labels<N>, Buckets, Bounds>,
}

impl<const N: usize> Histogram<N> {
    /// The histogram `name`, with labels named `labels`, counted into buckets `bounds`.
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
        bounds: &'static [f64],
    ) -> Self {
        let histogram = Self {
            name,
            help,
            labels,
            family: Family::new_with_constructor(Bounds(bounds)),
        };
        if N == 0 {
            // Its one series is scraped from the start, zeros included.
            drop(histogram.family.get_or_create(&histogram.key([""; N])));
        }
        histogram
    }

    fn key(&self, values: [&str; N]) -> Labels<N> {
        std::array::from_fn(|i| (self.labels[i], values[i].to_owned()))
    }

    /// Counts `value` into the series of `values`.
    pub fn observe(&self, values: [&str; N], value: f64) {
        self.family.get_or_create(&self.key(values)).observe(value);
    }

    /// The count and sum of the series of `values` (for tests of what was counted).
    #[cfg(test)]
    pub fn series(&self, values: [&str; N]) -> Series {
        self.family
            .get(&self.key(values))
            .map_or(Series { count: 0, sum: 0.0 }, |buckets| Series {
                count: buckets.count(),
                sum: buckets.sum(),
            })
    }

    /// Adds the family to a scrape.
    pub fn register(&self, out: &mut Exposition) {
        out.registry
            .register(self.name, help(self.help), self.family.clone());
    }
}

/// One scrape being put together: the kept families, and gauges and counts read now.
#[derive(Debug, Default)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// A gauge without labels.
    pub fn gauge(&mut self, name: &'static str, text: &'static str, value: u64) {
        let gauge: Gauge = Gauge::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        self.registry.register(name, help(text), gauge);
    }

    /// A counter without labels (named with `_total`), read now.
    pub fn count(&mut self, name: &'static str, text: &'static str, value: u64) {
        let count: Count = Count::default();
        count.inc_by(value);
        self.registry
            .register(counter_name(name), help(text), count);
    }

    /// A gauge family with one label, a series per `(label value, value)`.
    pub fn gauges(
        &mut self,
        name: &'static str,
        text: &'static str,
        label: &'static str,
        series: impl IntoIterator<Item = (String, i64)>,
    ) {
        let family: Family<Labels<1>, Gauge> = Family::default();
        for (value, gauge) in series {
            family.get_or_create(&[(label, value)]).set(gauge);
        }
        self.registry.register(name, help(text), family);
    }

    /// A counter family (named with `_total`) with one label, whose counts were read now.
    pub fn counts(
        &mut self,
        name: &'static str,
        text: &'static str,
        label: &'static str,
        series: impl IntoIterator<Item = (String, u64)>,
    ) {
        let family: Family<Labels<1>, Count> = Family::default();
        for (value, count) in series {
            family.get_or_create(&[(label, value)]).inc_by(count);
        }
        self.registry
            .register(counter_name(name), help(text), family);
    }

    /// The text of the scrape.
    pub fn finish(self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_in_the_text_format_promtool_reads() {
        let counter = Counter::new("demo_things_total", "Things done.", ["kind"]);
        counter.increment(["a \"quoted\"\nvalue"]);
        counter.increment(["b"]);
        counter.increment(["b"]);
        assert_eq!(counter.value(["b"]), 2);
        let histogram = Histogram::new("demo_seconds", "Time taken.", [], &[0.5, 1.0]);
        histogram.observe([], 0.75);
        assert_eq!(
            histogram.series([]),
            Series {
                count: 1,
                sum: 0.75
            }
        );
        let mut out = Exposition::default();
        counter.register(&mut out);
        histogram.register(&mut out);
        out.gauge("demo_open", "Open things.", 3);
        let text = out.finish();
        for line in [
            "# HELP demo_things_total Things done.",
            "# TYPE demo_things_total counter",
            "demo_things_total{kind=\"b\"} 2",
            "demo_things_total{kind=\"a \\\"quoted\\\"\\nvalue\"} 1",
            "# TYPE demo_seconds histogram",
            "demo_seconds_bucket{le=\"0.5\"} 0",
            "demo_seconds_bucket{le=\"1\"} 1",
            "demo_seconds_bucket{le=\"+Inf\"} 1",
            "demo_seconds_count 1",
            "# HELP demo_open Open things.",
            "demo_open 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn a_labelled_family_appears_with_its_first_series() {
        let counter = Counter::new("demo_none_total", "Nothing yet.", ["kind"]);
        let mut out = Exposition::default();
        counter.register(&mut out);
        assert_eq!(out.finish(), "");
        counter.increment(["x"]);
        let mut out = Exposition::default();
        counter.register(&mut out);
        assert_eq!(
            out.finish(),
            "# HELP demo_none_total Nothing yet.\n# TYPE demo_none_total counter\ndemo_none_total{kind=\"x\"} 1\n"
        );
    }

    #[test]
    fn histograms_write_cumulative_buckets_then_sum_and_count() {
        let histogram = Histogram::new("demo_size", "Sizes.", ["kind"], &[0.5, 1.0]);
        for value in [0.1, 0.1, 2.0] {
            histogram.observe(["x"], value);
        }
        let mut out = Exposition::default();
        histogram.register(&mut out);
        let text = out.finish();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "demo_size_bucket{kind=\"x\",le=\"0.5\"} 2",
                "demo_size_bucket{kind=\"x\",le=\"1\"} 2",
                "demo_size_bucket{kind=\"x\",le=\"+Inf\"} 3",
                "demo_size_sum{kind=\"x\"} 2.2",
                "demo_size_count{kind=\"x\"} 3",
            ]
        );
        assert_eq!(histogram.series(["y"]), Series { count: 0, sum: 0.0 });
    }

    #[test]
    fn an_unlabelled_histogram_is_written_at_zero_before_its_first_observation() {
        let histogram = Histogram::new("demo_wait_seconds", "Waits.", [], &[1.0]);
        let mut out = Exposition::default();
        histogram.register(&mut out);
        let text = out.finish();
        for line in [
            "demo_wait_seconds_bucket{le=\"+Inf\"} 0",
            "demo_wait_seconds_count 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
