//! Prometheus metrics in the text exposition format: events by state, mapping seconds as a
//! histogram, HTTP responses by status code, webhook deliveries by outcome.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::store::Status;

/// Upper bounds of the mapping-time histogram's buckets, seconds.
pub const BUCKETS_S: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Counters of one service process (events by state are read from the store at scrape time).
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    http: BTreeMap<u16, u64>,
    /// Per outcome (`done`, `failed`): bucket counts, sum and count.
    mapping: BTreeMap<&'static str, ([u64; BUCKETS_S.len()], f64, u64)>,
    webhooks: BTreeMap<&'static str, u64>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one HTTP response.
    pub fn http_response(&self, code: u16) {
        *self.lock().http.entry(code).or_default() += 1;
    }

    /// Records one mapping attempt's duration, seconds, by outcome (`done` or `failed`).
    pub fn mapping(&self, outcome: &'static str, seconds: f64) {
        let mut g = self.lock();
        let (buckets, sum, count) = g.mapping.entry(outcome).or_insert(([0; BUCKETS_S.len()], 0.0, 0));
        for (b, le) in buckets.iter_mut().zip(BUCKETS_S) {
            if seconds <= le {
                *b += 1;
            }
        }
        *sum += seconds;
        *count += 1;
    }

    /// Counts one webhook delivery (`delivered` or `gave_up`).
    pub fn webhook(&self, outcome: &'static str) {
        *self.lock().webhooks.entry(outcome).or_default() += 1;
    }

    /// The exposition text, with `events` the current count of events per state.
    pub fn render(&self, events: &BTreeMap<Status, usize>) -> String {
        let g = self.lock();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP terrastream_flood_events Events known to the service, by state."
        );
        let _ = writeln!(s, "# TYPE terrastream_flood_events gauge");
        for st in Status::ALL {
            let _ = writeln!(
                s,
                "terrastream_flood_events{{status=\"{}\"}} {}",
                st.as_str(),
                events.get(&st).unwrap_or(&0)
            );
        }
        let _ = writeln!(
            s,
            "# HELP terrastream_flood_mapping_seconds Time to map one event, by outcome."
        );
        let _ = writeln!(s, "# TYPE terrastream_flood_mapping_seconds histogram");
        for (outcome, (buckets, sum, count)) in &g.mapping {
            for (b, le) in buckets.iter().zip(BUCKETS_S) {
                let _ = writeln!(
                    s,
                    "terrastream_flood_mapping_seconds_bucket{{outcome=\"{outcome}\",le=\"{le}\"}} {b}"
                );
            }
            let _ = writeln!(
                s,
                "terrastream_flood_mapping_seconds_bucket{{outcome=\"{outcome}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                s,
                "terrastream_flood_mapping_seconds_sum{{outcome=\"{outcome}\"}} {sum}"
            );
            let _ = writeln!(
                s,
                "terrastream_flood_mapping_seconds_count{{outcome=\"{outcome}\"}} {count}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP terrastream_flood_http_responses_total HTTP responses, by status code."
        );
        let _ = writeln!(s, "# TYPE terrastream_flood_http_responses_total counter");
        for (code, n) in &g.http {
            let _ = writeln!(s, "terrastream_flood_http_responses_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP terrastream_flood_webhooks_total Webhook deliveries, by outcome."
        );
        let _ = writeln!(s, "# TYPE terrastream_flood_webhooks_total counter");
        for (outcome, n) in &g.webhooks {
            let _ = writeln!(s, "terrastream_flood_webhooks_total{{outcome=\"{outcome}\"}} {n}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        m.mapping("done", 0.5);
        m.mapping("done", 7.0);
        m.mapping("done", 4000.0);
        m.http_response(202);
        m.http_response(401);
        m.http_response(401);
        let text = m.render(&BTreeMap::from([(Status::Done, 3)]));
        assert!(
            text.contains("terrastream_flood_mapping_seconds_bucket{outcome=\"done\",le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("terrastream_flood_mapping_seconds_bucket{outcome=\"done\",le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("terrastream_flood_mapping_seconds_bucket{outcome=\"done\",le=\"1800\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("terrastream_flood_mapping_seconds_bucket{outcome=\"done\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("terrastream_flood_mapping_seconds_sum{outcome=\"done\"} 4007.5\n"),
            "{text}"
        );
        assert!(
            text.contains("terrastream_flood_http_responses_total{code=\"401\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("terrastream_flood_events{status=\"done\"} 3\n"), "{text}");
        assert!(
            text.contains("terrastream_flood_events{status=\"queued\"} 0\n"),
            "{text}"
        );
    }
}
