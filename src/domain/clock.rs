//! Time as the rules see it. Production uses [`SystemClock`]; tests use
//! [`ManualClock`] to move time forward (for example, to watch a suspension
//! expire) without sleeping.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stays where it is told: the real time plus an offset that
/// tests advance.
#[derive(Clone, Default)]
pub struct ManualClock {
    offset: Arc<Mutex<Duration>>,
}

impl ManualClock {
    /// Moves this clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut offset) = self.offset.lock() {
            *offset += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = self.offset.lock().map(|o| *o).unwrap_or_default();
        Utc::now() + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::default();
        let before = clock.now();
        clock.advance(Duration::hours(2));
        let after = clock.now();
        assert!(after - before >= Duration::hours(2));
        assert!(after - before < Duration::hours(2) + Duration::seconds(5));
    }
}
