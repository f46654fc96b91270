//! Which node runs a conversation's actor: a lease in Redis,
//! `{prefix}:owner:{conversationId}` = node id, set with a TTL, renewed well
//! before it runs out by the node that holds it, released when that node
//! stops gracefully; a dead node's leases simply expire.
//!
//! A lease is a routing hint, not a lock: Redis cannot fence (a failover can
//! grant one lease twice, a paused node outlives its lease). Postgres is the
//! fence: every actor takes a new owner epoch when it starts and every
//! message write checks it (`persistence::conversations::take_ownership`), so
//! of two nodes that both believe they own a conversation the older one
//! finds out on its first write.

use std::time::Duration;

use redis::Script;

use super::link::RedisLink;
use crate::domain::ConversationId;

/// Who holds a conversation's lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// This node (it holds the lease now, newly taken or renewed).
    Here,
    /// Another node, by id.
    There(String),
}

/// Leases of conversations, as one node takes, renews and releases them.
pub struct Leases {
    ttl: Duration,
    claim: Script,
    renew: Script,
    release: Script,
}

/// Most leases renewed or released by one script call.
const KEYS_PER_CALL: usize = 1000;

impl Leases {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            // The holder, taking the lease when nobody holds it (and
            // extending it when this node does).
            claim: Script::new(
                r"local holder = redis.call('GET', KEYS[1])
                  if not holder then
                    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                    return ARGV[1]
                  end
                  if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
                  return holder",
            ),
            // 1 for each lease still (or again, if Redis lost it) this node's, 0 for lost.
            renew: Script::new(
                r"local kept = {}
                  for i, key in ipairs(KEYS) do
                    local holder = redis.call('GET', key)
                    if not holder then
                      redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
                      kept[i] = 1
                    elseif holder == ARGV[1] then
                      redis.call('PEXPIRE', key, ARGV[2])
                      kept[i] = 1
                    else
                      kept[i] = 0
                    end
                  end
                  return kept",
            ),
            release: Script::new(
                r"for _, key in ipairs(KEYS) do
                    if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
                  end
                  return 0",
            ),
        }
    }

    /// How often a holder renews its leases: a third of their lifetime.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Who owns `id`, taking the lease for this node when nobody does.
    pub async fn claim(&self, link: &RedisLink, id: ConversationId) -> redis::RedisResult<Owner> {
        let holder: String = self
            .claim
            .key(key(link, id))
            .arg(link.node())
            .arg(self.ttl_ms())
            .invoke_async(&mut link.commands())
            .await?;
        Ok(if holder == link.node() {
            Owner::Here
        } else {
            Owner::There(holder)
        })
    }

    /// Who holds the lease of `id`, if anybody (taking nothing).
    pub async fn holder(
        &self,
        link: &RedisLink,
        id: ConversationId,
    ) -> redis::RedisResult<Option<String>> {
        redis::AsyncCommands::get(&mut link.commands(), key(link, id)).await
    }

    /// Renews this node's leases of `ids`; returns those another node holds now.
    pub async fn renew(
        &self,
        link: &RedisLink,
        ids: &[ConversationId],
    ) -> redis::RedisResult<Vec<ConversationId>> {
        let mut lost = Vec::new();
        for chunk in ids.chunks(KEYS_PER_CALL) {
            let mut call = self.renew.prepare_invoke();
            for id in chunk {
                call.key(key(link, *id));
            }
            let kept: Vec<i64> = call
                .arg(link.node())
                .arg(self.ttl_ms())
                .invoke_async(&mut link.commands())
                .await?;
            lost.extend(
                chunk
                    .iter()
                    .zip(kept)
                    .filter(|(_, kept)| *kept == 0)
                    .map(|(id, _)| *id),
            );
        }
        Ok(lost)
    }

    /// Ends `holder`'s leases of `ids`: this node's own on graceful
    /// shutdown, or a node's that is gone (it no longer listens on its
    /// channel). Another node takes each conversation over on its next
    /// command.
    pub async fn release(
        &self,
        link: &RedisLink,
        holder: &str,
        ids: &[ConversationId],
    ) -> redis::RedisResult<()> {
        for chunk in ids.chunks(KEYS_PER_CALL) {
            let mut call = self.release.prepare_invoke();
            for id in chunk {
                call.key(key(link, *id));
            }
            call.arg(holder)
                .invoke_async::<i64>(&mut link.commands())
                .await?;
        }
        Ok(())
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

fn key(link: &RedisLink, id: ConversationId) -> String {
    link.key(format_args!("owner:{id}"))
}
