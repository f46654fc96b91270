//! The open-loop schedule: operation `i` is *intended* to start at
//! `start + i / rate`, whatever happened to the operations before it, so a
//! server stall shows up as latency (measured from the intended time) instead
//! of silently slowing the generator down.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    interval: Duration,
    total: u64,
}

impl Schedule {
    /// `rate` operations per second for `duration`.
    pub fn new(start: Instant, rate: f64, duration: Duration) -> Self {
        let rate = rate.max(0.001);
        Self {
            start,
            interval: Duration::from_secs_f64(1.0 / rate),
            total: (rate * duration.as_secs_f64()).floor() as u64,
        }
    }

    /// How many operations the whole run schedules.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When operation `i` is meant to start.
    pub fn intended(&self, i: u64) -> Instant {
        self.start + self.interval.mul_f64(i as f64)
    }
}

/// Runs `request(i)` for every operation of an open-loop schedule of `rate`
/// per second for `duration`, each started at its intended time whatever the
/// earlier ones are doing; answers the latencies (from the intended start)
/// of those that succeeded and the count of each kind of failure.
pub async fn open_loop<F, Fut>(
    rate: f64,
    duration: Duration,
    request: F,
) -> (
    crate::stats::Latencies,
    std::collections::BTreeMap<String, u64>,
)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let (record, mut recorded) = tokio::sync::mpsc::unbounded_channel::<Result<u64, String>>();
    let schedule = Schedule::new(Instant::now(), rate, duration);
    for i in 0..schedule.total() {
        let intended = schedule.intended(i);
        tokio::time::sleep_until(intended.into()).await;
        let (work, record) = (request(i), record.clone());
        tokio::spawn(async move {
            let outcome = work.await.map(|()| intended.elapsed().as_micros() as u64);
            let _ = record.send(outcome);
        });
    }
    drop(record);
    let mut latencies = crate::stats::Latencies::default();
    let mut errors = std::collections::BTreeMap::new();
    while let Some(outcome) = recorded.recv().await {
        match outcome {
            Ok(micros) => latencies.record_micros(micros),
            Err(kind) => *errors.entry(kind).or_default() += 1,
        }
    }
    (latencies, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_evenly_spaced_and_counted() {
        let start = Instant::now();
        let s = Schedule::new(start, 1000.0, Duration::from_secs(2));
        assert_eq!(s.total(), 2000);
        assert_eq!(s.intended(0), start);
        assert_eq!(s.intended(1000) - start, Duration::from_secs(1));
        let gap = s.intended(11) - s.intended(10);
        assert!(
            gap >= Duration::from_micros(999) && gap <= Duration::from_micros(1001),
            "{gap:?}"
        );
    }

    #[test]
    fn the_schedule_does_not_depend_on_progress() {
        // Intended times are a pure function of the index: a late operation
        // does not push the next ones back (open loop).
        let start = Instant::now();
        let s = Schedule::new(start, 10.0, Duration::from_secs(1));
        assert_eq!(s.intended(7) - start, Duration::from_millis(700));
    }
}
