//! Per-user rate limits. [`RateLimiter`] is the seam: [`LocalLimiter`] runs
//! GCRA in this process; [`RedisLimiter`] runs the same GCRA as one Lua
//! script in Redis (on Redis's clock), so that a limit holds across every
//! node of a cluster. When Redis does not answer, a node falls back to its
//! own local limiter. A unit that turned out not to be used (the send was
//! the retry of a stored message) is given back with [`RateLimiter::refund`].
//!
//! Every refusal is also remembered as an abuse signal: a user who keeps
//! hitting the limits lands in the moderation queue (see `chat::safety`).

use std::{
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use redis::Script;

use super::link::RedisLink;
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
    /// Attachments started.
    Uploads,
    /// Reports filed.
    Reports,
    /// Blocks made.
    Blocks,
}

impl LimitKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::NewConversations => "new_conversations",
            Self::Reads => "reads",
            Self::Uploads => "uploads",
            Self::Reports => "reports",
            Self::Blocks => "blocks",
        }
    }
}

/// Decides whether a user may do one more of something now.
pub trait RateLimiter: Send + Sync + 'static {
    /// `Err(retry_after)` when the user is over the limit; otherwise one
    /// unit is used.
    fn check<'a>(
        &'a self,
        user: &'a UserId,
        kind: LimitKind,
    ) -> BoxFuture<'a, Result<(), Duration>>;

    /// Gives back the unit of the last successful `check`: what it allowed
    /// turned out to cost nothing.
    fn refund<'a>(&'a self, user: &'a UserId, kind: LimitKind) -> BoxFuture<'a, ()>;
}

/// A GCRA quota: one unit per `interval`, and a burst of `tolerance /
/// interval + 1` units.
#[derive(Clone, Copy)]
struct Gcra {
    interval: Duration,
    tolerance: Duration,
}

/// The in-process GCRA limiter: per kind, each user's "theoretical arrival
/// time" (when their quota is whole again, plus one interval).
pub struct LocalLimiter {
    limits: Vec<(LimitKind, Gcra, DashMap<UserId, Instant>)>,
}

/// Each limit of the settings: what, how many, per how long (a limit of 0
/// is no limit).
fn quotas(l: &RateLimits) -> Vec<(LimitKind, NonZeroU32, Duration)> {
    const HOUR: Duration = Duration::from_secs(3600);
    const MINUTE: Duration = Duration::from_secs(60);
    [
        (LimitKind::Messages, l.messages_per_hour, HOUR),
        (LimitKind::NewConversations, l.conversations_per_hour, HOUR),
        (LimitKind::Reads, l.reads_per_minute, MINUTE),
        (LimitKind::Uploads, l.uploads_per_hour, HOUR),
        (LimitKind::Reports, l.reports_per_hour, HOUR),
        (LimitKind::Blocks, l.blocks_per_hour, HOUR),
    ]
    .into_iter()
    .filter_map(|(kind, n, per)| NonZeroU32::new(n).map(|n| (kind, n, per)))
    .collect()
}

/// The limits from the settings: in Redis when the node is part of a
/// cluster, in process otherwise (or none at all when they are switched off
/// for a load test).
pub fn from_config(l: &RateLimits, redis: Option<Arc<RedisLink>>) -> Arc<dyn RateLimiter> {
    if !l.enabled {
        return Arc::new(Unlimited);
    }
    let local = LocalLimiter::new(l);
    match redis {
        Some(link) => Arc::new(RedisLimiter::new(link, l, local)),
        None => Arc::new(local),
    }
}

impl LocalLimiter {
    fn new(l: &RateLimits) -> Self {
        let limits = quotas(l)
            .into_iter()
            .map(|(kind, n, per)| {
                let interval = per / n.get();
                let gcra = Gcra {
                    interval,
                    tolerance: interval * (n.get() - 1),
                };
                (kind, gcra, DashMap::new())
            })
            .collect();
        Self { limits }
    }

    /// The quota of `kind` and its users' arrival times (none: no limit).
    fn limit(&self, kind: LimitKind) -> Option<(&Gcra, &DashMap<UserId, Instant>)> {
        self.limits
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, gcra, arrivals)| (gcra, arrivals))
    }

    fn check_now(&self, user: &UserId, kind: LimitKind) -> Result<(), Duration> {
        let Some((gcra, arrivals)) = self.limit(kind) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut arrival = match arrivals.get_mut(user) {
            Some(arrival) => arrival,
            None => arrivals.entry(user.clone()).or_insert(now),
        };
        let start = (*arrival).max(now);
        let ahead = start - now;
        if ahead > gcra.tolerance {
            metrics::counter!("parley_rate_limited_total", "kind" => kind.label()).increment(1);
            return Err(ahead - gcra.tolerance);
        }
        *arrival = start + gcra.interval;
        Ok(())
    }

    fn refund_now(&self, user: &UserId, kind: LimitKind) {
        let Some((gcra, arrivals)) = self.limit(kind) else {
            return;
        };
        if let Some(mut arrival) = arrivals.get_mut(user) {
            *arrival = arrival
                .checked_sub(gcra.interval)
                .unwrap_or(*arrival)
                .max(Instant::now());
        }
    }
}

impl RateLimiter for LocalLimiter {
    fn check<'a>(
        &'a self,
        user: &'a UserId,
        kind: LimitKind,
    ) -> BoxFuture<'a, Result<(), Duration>> {
        Box::pin(std::future::ready(self.check_now(user, kind)))
    }

    fn refund<'a>(&'a self, user: &'a UserId, kind: LimitKind) -> BoxFuture<'a, ()> {
        self.refund_now(user, kind);
        Box::pin(std::future::ready(()))
    }
}

/// The cluster's limiter: GCRA state (the "theoretical arrival time") in
/// `{prefix}:rate:{kind}:{userId}`, updated by one script.
pub struct RedisLimiter {
    link: Arc<RedisLink>,
    /// Per kind: the emission interval and the burst tolerance, in ms.
    quotas: Vec<(LimitKind, u64, u64)>,
    gcra: Script,
    refund: Script,
    fallback: LocalLimiter,
}

impl RedisLimiter {
    fn new(link: Arc<RedisLink>, l: &RateLimits, fallback: LocalLimiter) -> Self {
        let quotas = quotas(l)
            .into_iter()
            .map(|(kind, n, per)| {
                let interval = u64::try_from((per / n.get()).as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                (kind, interval, interval * u64::from(n.get() - 1))
            })
            .collect();
        Self {
            link,
            quotas,
            // KEYS[1]: the state. ARGV: interval, tolerance (ms). Returns 0
            // (allowed) or the ms to wait.
            gcra: Script::new(
                r"local t = redis.call('TIME')
                  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
                  local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
                  local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
                  if tat - now > tolerance then return tat - now - tolerance end
                  tat = tat + interval
                  redis.call('SET', KEYS[1], tat, 'PX', tat - now + 1000)
                  return 0",
            ),
            // KEYS[1]: the state. ARGV: interval (ms). One unit back.
            refund: Script::new(
                r"local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
                  if tat == 0 then return 0 end
                  local t = redis.call('TIME')
                  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
                  tat = tat - tonumber(ARGV[1])
                  if tat <= now then redis.call('DEL', KEYS[1])
                  else redis.call('SET', KEYS[1], tat, 'PX', tat - now + 1000) end
                  return 0",
            ),
            fallback,
        }
    }
}

impl RedisLimiter {
    /// The emission interval and burst tolerance (ms) of `kind`, if limited.
    fn quota(&self, kind: LimitKind) -> Option<(u64, u64)> {
        self.quotas
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|&(_, interval, tolerance)| (interval, tolerance))
    }

    /// Where `user`'s GCRA state for `kind` lives.
    fn key(&self, user: &UserId, kind: LimitKind) -> String {
        self.link.key(format_args!("rate:{}:{user}", kind.label()))
    }
}

impl RateLimiter for RedisLimiter {
    fn check<'a>(
        &'a self,
        user: &'a UserId,
        kind: LimitKind,
    ) -> BoxFuture<'a, Result<(), Duration>> {
        Box::pin(async move {
            let Some((interval, tolerance)) = self.quota(kind) else {
                return Ok(());
            };
            let key = self.key(user, kind);
            let waited: redis::RedisResult<u64> = self
                .gcra
                .key(key)
                .arg(interval)
                .arg(tolerance)
                .invoke_async(&mut self.link.commands())
                .await;
            match waited {
                Ok(0) => Ok(()),
                Ok(wait_ms) => {
                    metrics::counter!("parley_rate_limited_total", "kind" => kind.label())
                        .increment(1);
                    Err(Duration::from_millis(wait_ms))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "rate limits in Redis unavailable; limiting locally");
                    self.fallback.check_now(user, kind)
                }
            }
        })
    }

    fn refund<'a>(&'a self, user: &'a UserId, kind: LimitKind) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some((interval, _)) = self.quota(kind) else {
                return;
            };
            let key = self.key(user, kind);
            let refunded: redis::RedisResult<u64> = self
                .refund
                .key(key)
                .arg(interval)
                .invoke_async(&mut self.link.commands())
                .await;
            if refunded.is_err() {
                self.fallback.refund_now(user, kind);
            }
        })
    }
}

/// No limits at all (`PARLEY_RATE_LIMITS=off`, for load tests).
struct Unlimited;

impl RateLimiter for Unlimited {
    fn check<'a>(&'a self, _: &'a UserId, _: LimitKind) -> BoxFuture<'a, Result<(), Duration>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn refund<'a>(&'a self, _: &'a UserId, _: LimitKind) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
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

    /// A local limiter answers at once.
    fn check(limiter: &Arc<dyn RateLimiter>, user: &UserId) -> Result<(), Duration> {
        use futures_util::FutureExt;
        limiter
            .check(user, LimitKind::Messages)
            .now_or_never()
            .unwrap()
    }

    #[test]
    fn the_limit_allows_the_quota_then_says_when_to_retry() {
        let limits = RateLimits {
            messages_per_hour: 3,
            ..RateLimits::default()
        };
        let limiter = from_config(&limits, None);
        let user = UserId::parse("u").unwrap();
        for _ in 0..3 {
            assert!(check(&limiter, &user).is_ok());
        }
        let retry = check(&limiter, &user).unwrap_err();
        assert!(
            retry > Duration::from_secs(60) && retry <= Duration::from_secs(1200),
            "{retry:?}"
        );
        let other = UserId::parse("v").unwrap();
        assert!(check(&limiter, &other).is_ok(), "limits are per user");
    }

    #[test]
    fn a_refunded_unit_can_be_used_again() {
        use futures_util::FutureExt;
        let limits = RateLimits {
            messages_per_hour: 2,
            ..RateLimits::default()
        };
        let limiter = from_config(&limits, None);
        let user = UserId::parse("u").unwrap();
        for _ in 0..5 {
            assert!(check(&limiter, &user).is_ok());
            limiter
                .refund(&user, LimitKind::Messages)
                .now_or_never()
                .unwrap();
        }
        assert!(check(&limiter, &user).is_ok());
        assert!(check(&limiter, &user).is_ok());
        assert!(check(&limiter, &user).is_err(), "two units, no more");
    }

    #[test]
    fn limits_can_be_switched_off() {
        let limits = RateLimits {
            enabled: false,
            messages_per_hour: 1,
            ..RateLimits::default()
        };
        let limiter = from_config(&limits, None);
        let user = UserId::parse("u").unwrap();
        for _ in 0..10 {
            assert!(check(&limiter, &user).is_ok());
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
