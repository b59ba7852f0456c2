//! Prometheus metrics: one registry per process, each metric declared once, and the text a
//! scraper reads.
//!
//! A crate declares its metrics once, as a struct of families built by [`counter`], [`gauge`],
//! [`gauge_f64`], [`histogram`] and [`histogram_with_exemplars`] behind a `LazyLock`, and
//! touches it at start-up so that every family is registered before the first scrape. Label
//! sets are declared with [`metric_labels!`](crate::metric_labels), which also records the
//! label names, so that [`catalogue`] can describe every registered metric (the README's table
//! is checked against it).
//!
//! [`render`] answers in the OpenMetrics text format (with exemplars) to a client that asks for
//! it, as Prometheus does, and in the classic Prometheus text format (0.0.4) otherwise, which
//! `promtool check metrics` and older tools read.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use std::collections::{BTreeSet, HashSet};
use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex, PoisonError, RwLock};

#[cfg(feature = "http")]
pub mod http;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;

/// What [`metric_labels!`](crate::metric_labels) expands to refers to these.
#[doc(hidden)]
pub use prometheus_client::encoding;

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets for request and database latencies, in seconds (1 ms to 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for how long an event takes to become visible, in seconds (5 ms to 2 min).
pub const VISIBILITY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Buckets for batch sizes, in events.
pub const BATCH_SIZE_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// The process's one registry.
static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));
/// What has been registered, in the order it was.
static CATALOGUE: Mutex<Vec<Described>> = Mutex::new(Vec::new());

/// A label set declared with [`metric_labels!`](crate::metric_labels): its label names.
pub trait Labels:
    EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug + Send + Sync + 'static
{
    const NAMES: &'static [&'static str];
}

/// The kind of a metric, as the exposition formats name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One registered metric, as a scraper sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The name its samples carry (a counter's ends in `_total`; a histogram's samples add
    /// `_bucket`, `_sum` and `_count`).
    pub name: String,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Every metric registered in this process so far.
pub fn catalogue() -> Vec<Described> {
    CATALOGUE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Registers `metric` under `name` (a counter's name ends in `_total`, which the registry adds
/// itself) and returns it.
///
/// # Panics
/// When a metric of that name is already registered: each is declared once.
fn register<M: Metric + Clone>(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    metric: M,
) -> M {
    let mut catalogue = CATALOGUE.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(
        catalogue.iter().all(|d| d.name != name),
        "the metric {name} is declared twice"
    );
    let registered = match kind {
        Kind::Counter => name
            .strip_suffix("_total")
            .unwrap_or_else(|| panic!("the counter {name} must end in _total")),
        Kind::Gauge | Kind::Histogram => name,
    };
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .register(registered, help, metric.clone());
    catalogue.push(Described {
        name: name.to_owned(),
        kind,
        labels,
        help,
    });
    metric
}

/// Creates the series of `labels` in `family` at zero, so that it is exposed (and its rate
/// defined) before its first observation.
pub fn preregister<S, M, C>(family: &Family<S, M, C>, labels: &S)
where
    S: Clone + Hash + Eq,
    C: MetricConstructor<M>,
{
    drop(family.get_or_create(labels));
}

/// A family of counters; `name` ends in `_total`.
pub fn counter<L: Labels>(name: &'static str, help: &'static str) -> Family<L, Counter> {
    register(name, help, Kind::Counter, L::NAMES, Family::default())
}

/// A family of integer gauges.
pub fn gauge<L: Labels>(name: &'static str, help: &'static str) -> Family<L, Gauge> {
    register(name, help, Kind::Gauge, L::NAMES, Family::default())
}

/// A gauge holding a fraction (seconds, say).
pub type GaugeF64 = Gauge<f64, AtomicU64>;

/// A family of gauges holding fractions.
pub fn gauge_f64<L: Labels>(name: &'static str, help: &'static str) -> Family<L, GaugeF64> {
    register(name, help, Kind::Gauge, L::NAMES, Family::default())
}

/// An unlabelled counter; `name` ends in `_total`.
pub fn single_counter(name: &'static str, help: &'static str) -> Counter {
    register(name, help, Kind::Counter, &[], Counter::default())
}

/// An unlabelled integer gauge.
pub fn single_gauge(name: &'static str, help: &'static str) -> Gauge {
    register(name, help, Kind::Gauge, &[], Gauge::default())
}

/// Makes each histogram of a family with the same buckets.
#[derive(Debug, Clone, Copy)]
pub struct Buckets(pub &'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

impl<E> MetricConstructor<HistogramWithExemplars<E>> for Buckets {
    fn new_metric(&self) -> HistogramWithExemplars<E> {
        HistogramWithExemplars::new(self.0.iter().copied())
    }
}

/// A family of histograms.
pub type HistogramFamily<L> = Family<L, Histogram, Buckets>;
/// A family of histograms whose observations may carry an exemplar `E` (a trace id, say).
pub type ExemplarHistogramFamily<L, E> = Family<L, HistogramWithExemplars<E>, Buckets>;

/// A family of histograms with `buckets`.
pub fn histogram<L: Labels>(
    name: &'static str,
    help: &'static str,
    buckets: &'static [f64],
) -> HistogramFamily<L> {
    let family = Family::new_with_constructor(Buckets(buckets));
    register(name, help, Kind::Histogram, L::NAMES, family)
}

/// A family of histograms with `buckets` whose observations may carry an exemplar `E`.
pub fn histogram_with_exemplars<L: Labels, E: Labels>(
    name: &'static str,
    help: &'static str,
    buckets: &'static [f64],
) -> ExemplarHistogramFamily<L, E> {
    let family = Family::new_with_constructor(Buckets(buckets));
    register(name, help, Kind::Histogram, L::NAMES, family)
}

/// Declares a label set once: the struct, its encoding and its label names (the field names).
///
/// ```
/// service_kit::metric_labels! {
///     /// Per projection.
///     pub struct ProjectionLabels { projection: &'static str }
/// }
/// ```
#[macro_export]
macro_rules! metric_labels {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Hash, PartialEq, Eq)]
        $vis struct $name { $(pub $field: $ty),* }

        impl $crate::metrics::encoding::EncodeLabelSet for $name {
            fn encode(
                &self,
                encoder: &mut $crate::metrics::encoding::LabelSetEncoder<'_>,
            ) -> ::core::result::Result<(), ::core::fmt::Error> {
                #[allow(unused_imports)]
                use $crate::metrics::encoding::{EncodeLabelKey, EncodeLabelValue};
                $({
                    let mut label = encoder.encode_label();
                    let mut key = label.encode_label_key()?;
                    EncodeLabelKey::encode(&stringify!($field), &mut key)?;
                    let mut value = key.encode_label_value()?;
                    EncodeLabelValue::encode(&self.$field, &mut value)?;
                    value.finish()?;
                })*
                ::core::result::Result::Ok(())
            }
        }

        impl $crate::metrics::Labels for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}

/// The most distinct label values [`intern`] keeps; past it, values read `other`.
const INTERNED_MAX: usize = 512;

/// A `'static` copy of a label value from a small, bounded set (route patterns, problem codes),
/// made once per distinct value, so that label sets need no allocation per observation. Past
/// [`INTERNED_MAX`] distinct values, `other`: a label never grows without bound.
pub fn intern(value: &str) -> &'static str {
    static INTERNED: LazyLock<RwLock<HashSet<&'static str>>> = LazyLock::new(Default::default);
    if let Some(known) = INTERNED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(value)
    {
        return known;
    }
    let mut interned = INTERNED.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = interned.get(value) {
        return known;
    }
    if interned.len() >= INTERNED_MAX {
        return "other";
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    interned.insert(leaked);
    leaked
}

/// Which text format a client asked for in its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (with exemplars): what Prometheus asks for.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4: for every other client.
    Prometheus,
}

impl Format {
    /// OpenMetrics when `accept` names it, the classic format otherwise.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

/// Every registered metric, in `format`.
pub fn render(format: Format) -> String {
    let mut text = String::new();
    {
        let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing to a String cannot fail; the encoder's only errors are the writer's.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    }
    match format {
        Format::OpenMetrics => text,
        Format::Prometheus => classic_text(&text),
    }
}

/// The classic Prometheus text format of an OpenMetrics exposition: a counter's `# HELP` and
/// `# TYPE` name its samples (`_total`), and `# UNIT`, `# EOF` and exemplars are left out.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| line.strip_prefix(prefix).map(|rest| (prefix, rest)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None if line.starts_with('#') => out.push_str(line),
            None => out.push_str(without_exemplar(line)),
        }
        out.push('\n');
    }
    out
}

/// A sample line without its exemplar (` # {...} value [timestamp]`), which the classic format
/// does not have. A `#` inside a quoted label value is not one.
fn without_exemplar(sample: &str) -> &str {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in sample.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted => return sample[..i].trim_end(),
            _ => {}
        }
    }
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::metric_labels! {
        struct TestLabels { route: &'static str, status: u16 }
    }
    crate::metric_labels! {
        struct TestTrace { trace_id: String }
    }

    #[test]
    fn a_counter_is_read_in_either_format_with_its_labels() {
        let requests = counter::<TestLabels>(
            "milestone_test_requests_total",
            "Requests answered, in a test",
        );
        requests
            .get_or_create(&TestLabels {
                route: "/orders/{order_id}",
                status: 201,
            })
            .inc();
        let open = render(Format::OpenMetrics);
        assert!(
            open.contains("# TYPE milestone_test_requests counter\n"),
            "{open}"
        );
        assert!(
            open.contains(
                "milestone_test_requests_total{route=\"/orders/{order_id}\",status=\"201\"} 1\n"
            ),
            "{open}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
        let classic = render(Format::Prometheus);
        assert!(
            classic
                .contains("# HELP milestone_test_requests_total Requests answered, in a test.\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE milestone_test_requests_total counter\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
    }

    #[test]
    fn an_exemplar_is_shown_to_openmetrics_readers_only() {
        let visible = histogram_with_exemplars::<TestLabels, TestTrace>(
            "milestone_test_visible_seconds",
            "From a command to its visibility, in a test",
            VISIBILITY_BUCKETS,
        );
        let labels = TestLabels {
            route: "orders",
            status: 200,
        };
        visible.get_or_create(&labels).observe(
            0.02,
            Some(TestTrace {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
            }),
            None,
        );
        let open = render(Format::OpenMetrics);
        assert!(
            open.contains("# {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.02"),
            "{open}"
        );
        let classic = render(Format::Prometheus);
        assert!(!classic.contains("trace_id"), "{classic}");
        assert!(
            classic.contains(
                "milestone_test_visible_seconds_bucket{le=\"0.025\",route=\"orders\",status=\"200\"} 1\n"
            ),
            "{classic}"
        );
    }

    #[test]
    fn every_registered_metric_is_described_with_its_labels() {
        let _ = gauge::<TestLabels>("milestone_test_lag_events", "Events behind, in a test");
        let described = catalogue();
        let lag = described
            .iter()
            .find(|d| d.name == "milestone_test_lag_events")
            .expect("described");
        assert_eq!(lag.kind, Kind::Gauge);
        assert_eq!(lag.labels, ["route", "status"]);
    }

    #[test]
    fn prometheus_is_answered_in_openmetrics_and_other_clients_in_the_classic_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
    }

    #[test]
    fn a_hash_inside_a_label_value_is_not_taken_for_an_exemplar() {
        assert_eq!(
            without_exemplar(r##"m_total{route="/a#b\"#"} 3 # {trace_id="x"} 1.0"##),
            r##"m_total{route="/a#b\"#"} 3"##
        );
        assert_eq!(without_exemplar("m_total 3"), "m_total 3");
    }

    #[test]
    fn interned_values_are_shared_and_bounded() {
        let a = intern("/orders/{order_id}/ship");
        let b = intern(&String::from("/orders/{order_id}/ship"));
        assert!(std::ptr::eq(a, b));
    }
}
