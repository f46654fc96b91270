//! Per-user rate limits. [`RateLimiter`] is the seam: [`LocalLimiter`] runs
//! GCRA (the `governor` crate) in this process; the cluster issue will back the
//! same trait with Redis so that limits hold across nodes.
//!
//! Every refusal is also remembered as an abuse signal: a user who keeps
//! hitting the limits lands in the moderation queue (see `chat::safety`).

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

use crate::{config::RateLimits, domain::UserId};

/// What is being limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Messages sent.
    Messages,
    /// Conversations started.
    NewConversations,
    /// Reads: lists, history pages, syncs, presence look-ups.
    Reads,
}

impl LimitKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::NewConversations => "new_conversations",
            Self::Reads => "reads",
        }
    }
}

/// Decides whether a user may do one more of something now.
pub trait RateLimiter: Send + Sync + 'static {
    /// `Err(retry_after)` when the user is over the limit.
    fn check(&self, user: &UserId, kind: LimitKind) -> Result<(), Duration>;
}

/// The in-process GCRA limiter: one keyed limiter per kind.
pub struct LocalLimiter {
    limiters: Vec<(LimitKind, DefaultKeyedRateLimiter<UserId>)>,
}

/// The limits from the settings (or none at all when they are switched off
/// for a load test).
pub fn from_config(l: &RateLimits) -> Arc<dyn RateLimiter> {
    if !l.enabled {
        return Arc::new(Unlimited);
    }
    let quota = |n: u32, per: fn(NonZeroU32) -> Quota| NonZeroU32::new(n).map(per);
    let mut limiters = Vec::new();
    for (kind, q) in [
        (
            LimitKind::Messages,
            quota(l.messages_per_hour, Quota::per_hour),
        ),
        (
            LimitKind::NewConversations,
            quota(l.conversations_per_hour, Quota::per_hour),
        ),
        (
            LimitKind::Reads,
            quota(l.reads_per_minute, Quota::per_minute),
        ),
    ] {
        if let Some(q) = q {
            limiters.push((kind, DefaultKeyedRateLimiter::dashmap(q)));
        }
    }
    Arc::new(LocalLimiter { limiters })
}

impl RateLimiter for LocalLimiter {
    fn check(&self, user: &UserId, kind: LimitKind) -> Result<(), Duration> {
        let Some((_, limiter)) = self.limiters.iter().find(|(k, _)| *k == kind) else {
            return Ok(());
        };
        limiter.check_key(user).map_err(|not_until| {
            metrics::counter!("parley_rate_limited_total", "kind" => kind.label()).increment(1);
            not_until.wait_time_from(limiter.clock().now())
        })
    }
}

/// No limits at all (`PARLEY_RATE_LIMITS=off`, for load tests).
struct Unlimited;

impl RateLimiter for Unlimited {
    fn check(&self, _: &UserId, _: LimitKind) -> Result<(), Duration> {
        Ok(())
    }
}

/// Counts how often each user was refused, to raise an abuse signal.
#[derive(Default)]
pub struct ViolationCounter {
    counts: DashMap<UserId, (u32, std::time::Instant)>,
}

impl ViolationCounter {
    /// Records a refusal; returns true exactly when the user reaches
    /// `threshold` refusals within `window`.
    pub fn record(&self, user: &UserId, threshold: u32, window: Duration) -> bool {
        let mut entry = self
            .counts
            .entry(user.clone())
            .or_insert((0, std::time::Instant::now()));
        if entry.1.elapsed() > window {
            *entry = (0, std::time::Instant::now());
        }
        entry.0 += 1;
        entry.0 == threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_allows_the_quota_then_says_when_to_retry() {
        let limits = RateLimits {
            messages_per_hour: 3,
            ..RateLimits::default()
        };
        let limiter = from_config(&limits);
        let user = UserId::parse("u").unwrap();
        for _ in 0..3 {
            assert!(limiter.check(&user, LimitKind::Messages).is_ok());
        }
        let retry = limiter.check(&user, LimitKind::Messages).unwrap_err();
        assert!(
            retry > Duration::from_secs(60) && retry <= Duration::from_secs(1200),
            "{retry:?}"
        );
        let other = UserId::parse("v").unwrap();
        assert!(
            limiter.check(&other, LimitKind::Messages).is_ok(),
            "limits are per user"
        );
    }

    #[test]
    fn limits_can_be_switched_off() {
        let limits = RateLimits {
            enabled: false,
            messages_per_hour: 1,
            ..RateLimits::default()
        };
        let limiter = from_config(&limits);
        let user = UserId::parse("u").unwrap();
        for _ in 0..10 {
            assert!(limiter.check(&user, LimitKind::Messages).is_ok());
        }
    }

    #[test]
    fn violations_signal_once_at_the_threshold() {
        let counter = ViolationCounter::default();
        let user = UserId::parse("u").unwrap();
        let hits: Vec<bool> = (0..6)
            .map(|_| counter.record(&user, 3, Duration::from_secs(60)))
            .collect();
        assert_eq!(hits, vec![false, false, true, false, false, false]);
    }
}
