//! Server-side policy that is not tied to one conversation: rate limits,
//! sanctions (suspensions and bans, checked before anything is stored), and
//! the automated abuse signals that put a user in the moderation queue
//! without a human report:
//!
//! * repeated rate-limit violations ([`VIOLATIONS_THRESHOLD`] within an hour),
//! * many message requests declined or ignored ([`UNWELCOME_REQUESTS_THRESHOLD`]),
//! * link-heavy first messages ([`LINK_HEAVY_THRESHOLD`] links in a request),
//! * reports from several people within a day ([`REPORTS_THRESHOLD`]).
//!
//! A signal is filed by the request that raised it, after the request's own
//! work is stored (no detached task that a crash would lose); a failure to
//! file it is logged and never fails the request.
//!
//! Sanctions are cached per node for [`SANCTION_CACHE_TTL`], so a moderator's
//! decision reaches every node within that time (the node that acted drops
//! its copy at once).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use deadpool_postgres::Pool;
use serde_json::json;
use uuid::Uuid;

use crate::{
    cluster::limits::{LimitKind, RateLimiter, ViolationCounter},
    domain::{ChatError, UserId, clock::Clock},
    persistence::{
        reports,
        users::{self, Sanction},
    },
};

/// Rate-limit refusals within an hour that raise a signal.
pub const VIOLATIONS_THRESHOLD: u32 = 5;
/// Declined (or ignored for 3 days) message requests within 30 days that raise a signal.
pub const UNWELCOME_REQUESTS_THRESHOLD: i64 = 3;
/// Links in a message request that make it "link-heavy".
pub const LINK_HEAVY_THRESHOLD: usize = 3;
/// User reports within 24 hours that raise a signal.
pub const REPORTS_THRESHOLD: i64 = 3;
/// How long a node trusts its cached copy of a user's sanction.
pub const SANCTION_CACHE_TTL: Duration = Duration::from_secs(30);

pub struct Safety {
    pool: Pool,
    clock: Arc<dyn Clock>,
    limiter: Arc<dyn RateLimiter>,
    violations: ViolationCounter,
    /// Sanctions by user with when they were loaded: loaded on first use,
    /// trusted for [`SANCTION_CACHE_TTL`] and dropped when a moderator acts
    /// here, so sends do not query them every time.
    sanctions: DashMap<UserId, (Sanction, Instant)>,
    /// Messages kept in an evidence bundle.
    evidence_messages: i64,
}

impl Safety {
    pub fn new(
        pool: Pool,
        clock: Arc<dyn Clock>,
        limiter: Arc<dyn RateLimiter>,
        evidence_messages: i64,
    ) -> Self {
        Self {
            pool,
            clock,
            limiter,
            violations: ViolationCounter::default(),
            sanctions: DashMap::new(),
            evidence_messages,
        }
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub fn evidence_messages(&self) -> i64 {
        self.evidence_messages
    }

    /// One more `kind` for `user`, or 429; repeated refusals raise a signal.
    pub async fn check_limit(&self, user: &UserId, kind: LimitKind) -> Result<(), ChatError> {
        match self.try_limit(user, kind).await {
            Ok(()) => Ok(()),
            Err(retry_after) => Err(self.refused(user, kind, retry_after).await),
        }
    }

    /// One more `kind` for `user`, or how long to wait; nothing is recorded
    /// (see [`Safety::refused`]).
    pub async fn try_limit(&self, user: &UserId, kind: LimitKind) -> Result<(), Duration> {
        self.limiter.check(user, kind).await
    }

    /// Gives back the unit a [`Safety::try_limit`] used for something that
    /// turned out to cost nothing (a retry answered with its original).
    pub async fn refund_limit(&self, user: &UserId, kind: LimitKind) {
        self.limiter.refund(user, kind).await;
    }

    /// A refusal over the limit: logged, counted towards the
    /// `rate_limit_violations` signal, answered 429.
    pub async fn refused(
        &self,
        user: &UserId,
        kind: LimitKind,
        retry_after: Duration,
    ) -> ChatError {
        tracing::info!(%user, limit = kind.label(), "refused: rate limit");
        if self
            .violations
            .record(user, VIOLATIONS_THRESHOLD, Duration::from_secs(3600))
        {
            self.file(
                user,
                "rate_limit_violations",
                None,
                json!({ "limit": kind.label() }),
            )
            .await;
        }
        ChatError::rate_limited(kind.label().replace('_', " ").as_str(), retry_after)
    }

    /// Refuses a suspended or banned user (403 `messaging_suspended`).
    pub async fn check_may_post(&self, user: &UserId) -> Result<(), ChatError> {
        let cached = self
            .sanctions
            .get(user)
            .map(|s| *s)
            .filter(|(_, loaded_at)| loaded_at.elapsed() < SANCTION_CACHE_TTL);
        let sanction = match cached {
            Some((sanction, _)) => sanction,
            None => {
                let loaded = users::sanction(&self.pool, user).await?;
                self.sanctions
                    .insert(user.clone(), (loaded, Instant::now()));
                loaded
            }
        };
        let suspended = sanction
            .suspended_until
            .filter(|until| *until > self.clock.now());
        if sanction.banned {
            return Err(ChatError::forbidden(
                "messaging_suspended",
                "Your account can no longer send messages.",
            ));
        }
        if let Some(until) = suspended {
            return Err(ChatError::forbidden(
                "messaging_suspended",
                format!(
                    "Your account cannot send messages until {}.",
                    until.to_rfc3339()
                ),
            ));
        }
        Ok(())
    }

    /// A moderator changed `user`'s sanction: reload it on next use.
    pub fn sanction_changed(&self, user: &UserId) {
        self.sanctions.remove(user);
    }

    /// A message request was declined: check whether its sender keeps making unwelcome ones.
    pub async fn request_declined(&self, sender: &UserId, conversation: Uuid) {
        match reports::unwelcome_requests(&self.pool, sender).await {
            Ok(n) if n >= UNWELCOME_REQUESTS_THRESHOLD => {
                let details = json!({ "declinedOrIgnored": n });
                self.file(sender, "unwelcome_requests", Some(conversation), details)
                    .await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.chain(), "could not count unwelcome requests"),
        }
    }

    /// A message request went out: link-heavy ones are suspicious.
    pub async fn request_sent(&self, sender: &UserId, conversation: Uuid, links: usize) {
        if links >= LINK_HEAVY_THRESHOLD {
            let details = json!({ "links": links });
            self.file(sender, "link_heavy_request", Some(conversation), details)
                .await;
        }
    }

    /// A user report was filed: several people reporting one user within a
    /// day raise a signal (one person reporting again and again does not).
    pub async fn reported(&self, user: &UserId) {
        match reports::recent_reporters_of(&self.pool, user, 24).await {
            Ok(n) if n >= REPORTS_THRESHOLD => {
                self.file(user, "report_volume", None, json!({ "reportersIn24h": n }))
                    .await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.chain(), "could not count reports"),
        }
    }

    /// Puts `user` in the moderation queue for `signal` (once per open signal).
    async fn file(
        &self,
        user: &UserId,
        signal: &'static str,
        conversation: Option<Uuid>,
        details: serde_json::Value,
    ) {
        let filed = reports::file_automated(
            &self.pool,
            user,
            signal,
            conversation,
            details,
            self.evidence_messages,
        )
        .await;
        if let Err(e) = filed {
            tracing::warn!(error = %e.chain(), signal, "could not file an automated report");
        }
    }
}
