//! Server-side policy that is not tied to one conversation: rate limits,
//! sanctions (suspensions and bans, checked before anything is stored), and
//! the automated abuse signals that put a user in the moderation queue
//! without a human report:
//!
//! * repeated rate-limit violations ([`VIOLATIONS_THRESHOLD`] within an hour),
//! * many message requests declined or ignored ([`UNWELCOME_REQUESTS_THRESHOLD`]),
//! * link-heavy first messages ([`LINK_HEAVY_THRESHOLD`] links in a request),
//! * several reports within a day ([`REPORTS_THRESHOLD`]).
//!
//! Signals are filed in background tasks, so the request that raised one
//! never waits for it.

use std::{sync::Arc, time::Duration};

use dashmap::DashMap;
use deadpool_postgres::Pool;
use serde_json::json;
use uuid::Uuid;

use crate::{
    cluster::{
        EventBus,
        limits::{LimitKind, RateLimiter, ViolationCounter},
    },
    domain::{ChatError, UserId, clock::Clock, event::ServerEvent},
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

pub struct Safety {
    pool: Pool,
    clock: Arc<dyn Clock>,
    limiter: Arc<dyn RateLimiter>,
    violations: ViolationCounter,
    /// Sanctions by user, loaded on first use and dropped when a moderator
    /// acts, so sends do not query them every time.
    sanctions: DashMap<UserId, Sanction>,
    bus: Arc<dyn EventBus>,
    /// Messages kept in an evidence bundle.
    evidence_messages: i64,
}

impl Safety {
    pub fn new(
        pool: Pool,
        clock: Arc<dyn Clock>,
        limiter: Arc<dyn RateLimiter>,
        bus: Arc<dyn EventBus>,
        evidence_messages: i64,
    ) -> Self {
        Self {
            pool,
            clock,
            limiter,
            violations: ViolationCounter::default(),
            sanctions: DashMap::new(),
            bus,
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
    pub fn check_limit(&self, user: &UserId, kind: LimitKind) -> Result<(), ChatError> {
        self.limiter.check(user, kind).map_err(|retry_after| {
            if self
                .violations
                .record(user, VIOLATIONS_THRESHOLD, Duration::from_secs(3600))
            {
                self.signal(
                    user,
                    "rate_limit_violations",
                    None,
                    json!({ "limit": kind.label() }),
                );
            }
            ChatError::rate_limited(kind.label().replace('_', " ").as_str(), retry_after)
        })
    }

    /// Refuses a suspended or banned user (403 `messaging_suspended`).
    pub async fn check_may_post(&self, user: &UserId) -> Result<(), ChatError> {
        let sanction = match self.sanctions.get(user).map(|s| *s) {
            Some(sanction) => sanction,
            None => {
                let loaded = users::sanction(&self.pool, user).await?;
                self.sanctions.insert(user.clone(), loaded);
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

    /// Tells `user` (all their connections) about a moderator's warning.
    pub fn warn(&self, user: &UserId, note: &str) {
        let notice = ServerEvent::SystemNotice {
            code: "warning".into(),
            message: if note.is_empty() {
                "A moderator warned you about your messages.".into()
            } else {
                note.to_owned()
            },
        };
        self.bus
            .publish(std::slice::from_ref(user), notice.to_frame());
    }

    /// A message request was declined: check whether its sender keeps making unwelcome ones.
    pub fn request_declined(&self, sender: &UserId, conversation: Uuid) {
        let (pool, sender, evidence) = (self.pool.clone(), sender.clone(), self.evidence_messages);
        tokio::spawn(async move {
            match reports::unwelcome_requests(&pool, &sender).await {
                Ok(n) if n >= UNWELCOME_REQUESTS_THRESHOLD => {
                    let details = json!({ "declinedOrIgnored": n });
                    file(
                        &pool,
                        &sender,
                        "unwelcome_requests",
                        Some(conversation),
                        details,
                        evidence,
                    )
                    .await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not count unwelcome requests"),
            }
        });
    }

    /// A message request went out: link-heavy ones are suspicious.
    pub fn request_sent(&self, sender: &UserId, conversation: Uuid, links: usize) {
        if links >= LINK_HEAVY_THRESHOLD {
            self.signal(
                sender,
                "link_heavy_request",
                Some(conversation),
                json!({ "links": links }),
            );
        }
    }

    /// A user report was filed: several in a day raise a signal.
    pub fn reported(&self, user: &UserId) {
        let (pool, user, evidence) = (self.pool.clone(), user.clone(), self.evidence_messages);
        tokio::spawn(async move {
            match reports::recent_reports_against(&pool, &user, 24).await {
                Ok(n) if n >= REPORTS_THRESHOLD => {
                    file(
                        &pool,
                        &user,
                        "report_volume",
                        None,
                        json!({ "reportsIn24h": n }),
                        evidence,
                    )
                    .await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not count reports"),
            }
        });
    }

    fn signal(
        &self,
        user: &UserId,
        signal: &'static str,
        conversation: Option<Uuid>,
        details: serde_json::Value,
    ) {
        let (pool, user, evidence) = (self.pool.clone(), user.clone(), self.evidence_messages);
        tokio::spawn(
            async move { file(&pool, &user, signal, conversation, details, evidence).await },
        );
    }
}

async fn file(
    pool: &Pool,
    user: &UserId,
    signal: &str,
    conversation: Option<Uuid>,
    details: serde_json::Value,
    evidence: i64,
) {
    if let Err(e) =
        reports::file_automated(pool, user, signal, conversation, details, evidence).await
    {
        tracing::warn!(error = %e, signal, "could not file an automated report");
    }
}
