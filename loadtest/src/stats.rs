//! Latency bookkeeping: an HdrHistogram of microseconds, summarised in
//! milliseconds.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Latencies in microseconds, from 1 µs to 10 minutes, 3 significant digits.
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            // Constant, valid bounds: construction cannot fail.
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }
}

impl Latencies {
    pub fn record_micros(&mut self, micros: u64) {
        self.histogram.saturating_record(micros.max(1));
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The `q` quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }

    /// p50/p90/p99/p99.9/max in milliseconds, and the count.
    pub fn summary(&self) -> Value {
        json!({
            "count": self.count(),
            "p50_ms": self.quantile_ms(0.50),
            "p90_ms": self.quantile_ms(0.90),
            "p99_ms": self.quantile_ms(0.99),
            "p999_ms": self.quantile_ms(0.999),
            "max_ms": self.max_ms(),
        })
    }

    /// One table row: `name  count  p50  p90  p99  p99.9  max`.
    pub fn row(&self, name: &str) -> String {
        format!(
            "{name:<22} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            self.count(),
            self.quantile_ms(0.50),
            self.quantile_ms(0.90),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.max_ms()
        )
    }
}

/// The header matching [`Latencies::row`].
pub fn header() -> String {
    format!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_what_was_recorded() {
        let mut l = Latencies::default();
        for micros in 1..=1000 {
            l.record_micros(micros * 10); // 0.01 ms .. 10 ms
        }
        assert_eq!(l.count(), 1000);
        assert!(
            (l.quantile_ms(0.5) - 5.0).abs() < 0.05,
            "{}",
            l.quantile_ms(0.5)
        );
        assert!(
            (l.quantile_ms(0.99) - 9.9).abs() < 0.05,
            "{}",
            l.quantile_ms(0.99)
        );
        assert!((l.max_ms() - 10.0).abs() < 0.02);
    }

    #[test]
    fn a_stall_shows_in_the_tail_not_the_median() {
        let mut a = Latencies::default();
        for _ in 0..990 {
            a.record_micros(1_000);
        }
        for _ in 0..10 {
            a.record_micros(2_000_000); // a 2 s stall
        }
        assert_eq!(a.count(), 1000);
        assert!(a.quantile_ms(0.5) < 1.1);
        assert!(a.quantile_ms(0.999) > 1900.0);
    }
}
