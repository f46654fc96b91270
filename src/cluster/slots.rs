//! The per-user connection cap across a cluster: one Redis sorted set per
//! user, `{prefix}:connections:{userId}`, with a member `{node}|{connection}`
//! for each realtime connection. Taking a slot is one script that first
//! drops the members of nodes that are no longer alive (the caller passes
//! `node::Node::alive_nodes`: a killed node's connections stop counting
//! within seconds), then counts and adds. Each node also keeps its own cap in the
//! user's actor; this one holds across nodes.

use std::sync::Arc;

use redis::Script;

use super::link::RedisLink;
use crate::domain::UserId;

/// How long a user's set is kept after their last connection attempt.
const SET_TTL_MS: u64 = 24 * 3600 * 1000;

/// The answer to a request for a slot.
pub enum Admission {
    /// Granted: hold the slot for as long as the connection lives.
    Granted(Slot),
    /// Redis did not answer: let the connection in (each node's own cap
    /// still holds).
    Unchecked,
    /// The user already holds the most connections allowed.
    Full,
}

/// Takes and gives back connection slots.
pub struct ConnectionSlots {
    take: Script,
}

/// A slot held by one connection; given back when dropped.
pub struct Slot {
    link: Arc<RedisLink>,
    key: String,
    member: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let link = self.link.clone();
        let key = std::mem::take(&mut self.key);
        let member = std::mem::take(&mut self.member);
        tokio::spawn(async move {
            let removed: redis::RedisResult<i64> =
                redis::AsyncCommands::zrem(&mut link.commands(), key, member).await;
            if let Err(e) = removed {
                tracing::debug!(error = %e, "could not give a connection slot back");
            }
        });
    }
}

impl Default for ConnectionSlots {
    fn default() -> Self {
        Self {
            // KEYS[1]: the set. ARGV: member, max, set TTL, alive nodes...
            take: Script::new(
                r"local members = redis.call('ZRANGE', KEYS[1], 0, -1)
                  local alive = {}
                  for i = 4, #ARGV do alive[ARGV[i]] = true end
                  for _, member in ipairs(members) do
                    local node = string.match(member, '^(.*)|[^|]*$')
                    if not alive[node] then redis.call('ZREM', KEYS[1], member) end
                  end
                  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
                  redis.call('ZADD', KEYS[1], 0, ARGV[1])
                  redis.call('PEXPIRE', KEYS[1], ARGV[3])
                  return 1",
            ),
        }
    }
}

impl ConnectionSlots {
    /// A slot for connection `connection` of `user` on this node, unless the
    /// user already holds `max` on the nodes in `alive`.
    pub async fn take(
        &self,
        link: &Arc<RedisLink>,
        alive: &[String],
        user: &UserId,
        connection: u64,
        max: usize,
    ) -> Admission {
        let key = link.key(format_args!("connections:{user}"));
        let member = format!("{}|{connection}", link.node());
        let mut call = self.take.prepare_invoke();
        call.key(&key).arg(&member).arg(max).arg(SET_TTL_MS);
        for node in alive {
            call.arg(node);
        }
        match call.invoke_async::<i64>(&mut link.commands()).await {
            Ok(1) => Admission::Granted(Slot {
                link: link.clone(),
                key,
                member,
            }),
            Ok(_) => Admission::Full,
            Err(e) => {
                tracing::debug!(error = %e, "connection slots unavailable; letting the connection in");
                Admission::Unchecked
            }
        }
    }
}
