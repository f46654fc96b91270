//! Presence: who is online, away or offline, and who wants to know.
//!
//! [`PresenceStore`] holds each user's current state: [`LocalPresence`] in
//! this process, [`RedisPresence`] in Redis for a cluster (a user is online
//! if any node holds a fresh connection of theirs). [`PresenceHub`] adds the
//! subscriptions (per connection, at most [`MAX_SUBSCRIPTIONS`] users each)
//! and tells this node's subscribers when a user's state changes — in a
//! cluster every node hears of every change (the Redis store announces it on
//! `{prefix}:presence`) and tells its own subscribers. The state on each
//! node is decided by the user's actor there, which sees every connection
//! and heartbeat (`actors::user`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use redis::Script;

use super::{LocalSink, link::RedisLink};
use crate::domain::{
    UserId,
    event::ServerEvent,
    model::{Presence, PresenceStatus},
};

/// Identifies one realtime connection on this node.
pub type ConnectionId = u64;

/// Most users one connection may watch.
pub const MAX_SUBSCRIPTIONS: usize = 200;

/// A user's presence as stored: status and when they were last seen.
pub type PresenceRecord = (PresenceStatus, DateTime<Utc>);

/// Where presence records live.
pub trait PresenceStore: Send + Sync + 'static {
    /// Records this node's view of `user`. `changed`: the status changed.
    /// Returns whether the store announces the change to every node
    /// (including this one), which then tell their subscribers.
    fn record(
        &self,
        user: &UserId,
        status: PresenceStatus,
        last_seen_at: DateTime<Utc>,
        changed: bool,
    ) -> bool;
    /// The current records of `users`, in order (`None`: never seen).
    fn get<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, Vec<Option<PresenceRecord>>>;
}

/// The single-node store.
#[derive(Default)]
pub struct LocalPresence {
    records: DashMap<UserId, PresenceRecord>,
}

impl PresenceStore for LocalPresence {
    fn record(&self, user: &UserId, status: PresenceStatus, at: DateTime<Utc>, _: bool) -> bool {
        self.records.insert(user.clone(), (status, at));
        false
    }

    fn get<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, Vec<Option<PresenceRecord>>> {
        let found = users
            .iter()
            .map(|user| self.records.get(user).map(|r| *r))
            .collect();
        Box::pin(std::future::ready(found))
    }
}

/// The cluster's store: one Redis hash per user, `{prefix}:presence:{user}`,
/// with a field per node that holds a connection of theirs
/// (`status|lastSeenMs|validUntilMs`, refreshed by heartbeats) and a field
/// `_` with the last time they were seen anywhere. A node that dies leaves
/// its field behind until `validUntil` passes; the next write folds such
/// fields into `_`.
pub struct RedisPresence {
    link: Arc<RedisLink>,
    /// How long a node's view stays valid without a refresh.
    valid_for: Duration,
    /// Records waiting for the writer, which applies them in order (a
    /// connect and a quick disconnect must not land the other way round).
    writes: tokio::sync::mpsc::Sender<PresenceWrite>,
}

/// One record on its way to Redis.
struct PresenceWrite {
    user: UserId,
    status: PresenceStatus,
    last_seen_ms: i64,
    valid_until_ms: i64,
    changed: bool,
}

/// Records waiting before new ones are dropped (a heartbeat refreshes them).
const PRESENCE_QUEUE: usize = 65_536;

/// How long a user's hash is kept after their last change anywhere (their
/// last-seen time is forgotten after that).
const PRESENCE_KEY_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl RedisPresence {
    /// The store and its writer task (which ends when the store is dropped).
    pub fn new(link: Arc<RedisLink>, valid_for: Duration) -> Self {
        let (writes, queued) = tokio::sync::mpsc::channel(PRESENCE_QUEUE);
        tokio::spawn(write_records(link.clone(), queued));
        Self {
            link,
            valid_for,
            writes,
        }
    }

    /// Reads one user's hash: the best live status, and when they were last seen.
    fn combine(fields: &HashMap<String, String>, now_ms: i64) -> Option<PresenceRecord> {
        let mut status = PresenceStatus::Offline;
        let mut last_seen: Option<i64> = fields.get("_").and_then(|v| v.parse().ok());
        for (field, value) in fields {
            if field == "_" {
                continue;
            }
            let mut parts = value.split('|');
            let (Some(state), Some(seen), Some(valid)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(seen), Ok(valid)) = (seen.parse::<i64>(), valid.parse::<i64>()) else {
                continue;
            };
            last_seen = Some(last_seen.map_or(seen, |l| l.max(seen)));
            if valid < now_ms {
                continue;
            }
            match state {
                "online" => status = PresenceStatus::Online,
                "away" if status == PresenceStatus::Offline => status = PresenceStatus::Away,
                _ => {}
            }
        }
        let at = DateTime::<Utc>::from_timestamp_millis(last_seen?)?;
        Some((status, at))
    }
}

impl PresenceStore for RedisPresence {
    fn record(
        &self,
        user: &UserId,
        status: PresenceStatus,
        last_seen_at: DateTime<Utc>,
        changed: bool,
    ) -> bool {
        let valid_for = i64::try_from(self.valid_for.as_millis()).unwrap_or(i64::MAX / 2);
        let write = PresenceWrite {
            user: user.clone(),
            status,
            last_seen_ms: last_seen_at.timestamp_millis(),
            valid_until_ms: Utc::now().timestamp_millis() + valid_for,
            changed,
        };
        if self.writes.try_send(write).is_err() {
            metrics::counter!("parley_presence_writes_dropped_total").increment(1);
        }
        true
    }

    fn get<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, Vec<Option<PresenceRecord>>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for user in users {
                pipe.hgetall(presence_key(&self.link, user));
            }
            let found: Vec<HashMap<String, String>> =
                match pipe.query_async(&mut self.link.commands()).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::debug!(error = %e, "could not read presence");
                        return vec![None; users.len()];
                    }
                };
            let now = Utc::now().timestamp_millis();
            found
                .iter()
                .map(|fields| Self::combine(fields, now))
                .collect()
        })
    }
}

/// Presence records plus who watches whom.
pub struct PresenceHub {
    store: Arc<dyn PresenceStore>,
    /// This node's connections (each node tells its own subscribers).
    sink: Arc<dyn LocalSink>,
    /// Watched user -> watching users, with how many of their connections watch.
    watchers: DashMap<UserId, HashMap<UserId, u32>>,
    /// Connection -> (its user, the users it watches), to replace or drop a subscription.
    subscriptions: DashMap<ConnectionId, (UserId, Vec<UserId>)>,
}

impl PresenceHub {
    pub fn new(store: Arc<dyn PresenceStore>, sink: Arc<dyn LocalSink>) -> Arc<Self> {
        Arc::new(Self {
            store,
            sink,
            watchers: DashMap::new(),
            subscriptions: DashMap::new(),
        })
    }

    /// The current presence of each of `users`, in order.
    pub async fn get(&self, users: &[UserId]) -> Vec<Presence> {
        let records = self.store.get(users).await;
        users
            .iter()
            .zip(records)
            .map(|(user, record)| Presence {
                user_id: user.to_string(),
                status: record.map_or(PresenceStatus::Offline, |(status, _)| status),
                last_seen_at: record.map(|(_, at)| at),
            })
            .collect()
    }

    /// Records a heartbeat without a change of state (no one is told).
    pub fn touch(&self, user: &UserId, status: PresenceStatus) {
        self.store.record(user, status, Utc::now(), false);
    }

    /// Records a change of this node's view of `user` and has every
    /// subscriber told, on every node.
    pub fn changed(self: &Arc<Self>, user: &UserId, status: PresenceStatus) {
        metrics::counter!("parley_presence_changes_total", "status" => status.label()).increment(1);
        if !self.store.record(user, status, Utc::now(), true) {
            self.tell_watchers(user);
        }
    }

    /// Tells this node's subscribers to `user` their current presence (the
    /// store announced a change, from this node or another).
    pub fn tell_watchers(self: &Arc<Self>, user: &UserId) {
        if !self.watchers.contains_key(user) {
            return;
        }
        let hub = self.clone();
        let user = user.clone();
        tokio::spawn(async move {
            let Some(presence) = hub.get(std::slice::from_ref(&user)).await.pop() else {
                return;
            };
            let watchers: Vec<UserId> = hub
                .watchers
                .get(&user)
                .map(|w| w.keys().cloned().collect())
                .unwrap_or_default();
            let frame = ServerEvent::PresenceUpdated(presence.as_shared()).to_frame();
            for watcher in &watchers {
                hub.sink.deliver(watcher, frame.clone());
            }
        });
    }

    /// Makes `connection` (of `subscriber`) watch exactly `watched`, replacing
    /// what it watched before.
    pub fn subscribe(&self, connection: ConnectionId, subscriber: &UserId, watched: Vec<UserId>) {
        self.unsubscribe(connection);
        for user in &watched {
            *self
                .watchers
                .entry(user.clone())
                .or_default()
                .entry(subscriber.clone())
                .or_default() += 1;
        }
        self.subscriptions
            .insert(connection, (subscriber.clone(), watched));
    }

    /// Stops the two users watching each other (one blocked the other). They
    /// may subscribe again once the block is lifted.
    pub fn forget_pair(&self, a: &UserId, b: &UserId) {
        for (watched, watcher) in [(a, b), (b, a)] {
            if let Some(mut entry) = self.watchers.get_mut(watched) {
                entry.remove(watcher);
            }
            self.watchers.remove_if(watched, |_, w| w.is_empty());
        }
    }

    /// Drops everything `connection` watched (it closed or re-subscribed).
    pub fn unsubscribe(&self, connection: ConnectionId) {
        let Some((_, (subscriber, watched))) = self.subscriptions.remove(&connection) else {
            return;
        };
        for user in watched {
            if let Some(mut entry) = self.watchers.get_mut(&user)
                && let Some(count) = entry.get_mut(&subscriber)
            {
                *count -= 1;
                if *count == 0 {
                    entry.remove(&subscriber);
                }
            }
            self.watchers.remove_if(&user, |_, w| w.is_empty());
        }
    }
}

fn presence_key(link: &RedisLink, user: &UserId) -> String {
    link.key(format_args!("presence:{user}"))
}

/// The writer: applies records in order; a change is announced on the
/// presence channel once it is stored, so that every node reads it.
async fn write_records(
    link: Arc<RedisLink>,
    mut queued: tokio::sync::mpsc::Receiver<PresenceWrite>,
) {
    // ARGV: node, status, lastSeenMs, validUntilMs, nowMs, keyTtlMs.
    let script = Script::new(
        r"local key, node, now = KEYS[1], ARGV[1], tonumber(ARGV[5])
          local last = tonumber(redis.call('HGET', key, '_') or '0')
          if ARGV[2] == 'offline' then
            redis.call('HDEL', key, node)
            last = math.max(last, tonumber(ARGV[3]))
          else
            redis.call('HSET', key, node, ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
          end
          local all = redis.call('HGETALL', key)
          for i = 1, #all, 2 do
            local field, value = all[i], all[i + 1]
            if field ~= '_' and field ~= node then
              local seen, valid = string.match(value, '^[^|]+|([^|]+)|([^|]+)$')
              if not valid or tonumber(valid) < now then
                redis.call('HDEL', key, field)
                last = math.max(last, tonumber(seen or '0'))
              end
            end
          end
          if last > 0 then redis.call('HSET', key, '_', last) end
          redis.call('PEXPIRE', key, ARGV[6])
          return 0",
    );
    let key_ttl = u64::try_from(PRESENCE_KEY_TTL.as_millis()).unwrap_or(u64::MAX);
    while let Some(write) = queued.recv().await {
        let mut connection = link.commands();
        let key = presence_key(&link, &write.user);
        let recorded = script
            .key(key)
            .arg(link.node())
            .arg(write.status.label())
            .arg(write.last_seen_ms)
            .arg(write.valid_until_ms)
            .arg(Utc::now().timestamp_millis())
            .arg(key_ttl)
            .invoke_async::<i64>(&mut connection)
            .await;
        if let Err(e) = recorded {
            tracing::debug!(error = %e, "could not record presence");
            continue;
        }
        if write.changed {
            let announced: redis::RedisResult<i64> = redis::AsyncCommands::publish(
                &mut connection,
                link.presence_channel(),
                write.user.as_str(),
            )
            .await;
            if let Err(e) = announced {
                tracing::debug!(error = %e, "could not announce a presence change");
            }
        }
    }
}
