//! Presence: who is online, away or offline, and who wants to know.
//!
//! [`PresenceStore`] holds each user's current state; [`LocalPresence`] keeps
//! it in this process, and the cluster issue will back the same trait with
//! Redis keys with a TTL. [`PresenceHub`] adds the subscriptions (per
//! connection, at most [`MAX_SUBSCRIPTIONS`] users each) and tells subscribers
//! when a user's state changes. The state itself is decided by the user's
//! actor, which sees every connection and heartbeat (`actors::user`).

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use super::Bus;
use crate::domain::{
    UserId,
    event::ServerEvent,
    model::{Presence, PresenceStatus},
};

/// Identifies one realtime connection on this node.
pub type ConnectionId = u64;

/// Most users one connection may watch.
pub const MAX_SUBSCRIPTIONS: usize = 200;

/// Where presence records live.
pub trait PresenceStore: Send + Sync + 'static {
    fn set(&self, user: &UserId, status: PresenceStatus, last_seen_at: DateTime<Utc>);
    fn get(&self, user: &UserId) -> Option<(PresenceStatus, DateTime<Utc>)>;
}

/// The single-node store.
#[derive(Default)]
pub struct LocalPresence {
    records: DashMap<UserId, (PresenceStatus, DateTime<Utc>)>,
}

impl PresenceStore for LocalPresence {
    fn set(&self, user: &UserId, status: PresenceStatus, last_seen_at: DateTime<Utc>) {
        self.records.insert(user.clone(), (status, last_seen_at));
    }

    fn get(&self, user: &UserId) -> Option<(PresenceStatus, DateTime<Utc>)> {
        self.records.get(user).map(|r| *r)
    }
}

/// Presence records plus who watches whom.
pub struct PresenceHub {
    store: Arc<dyn PresenceStore>,
    bus: Arc<dyn Bus>,
    /// Watched user -> watching users, with how many of their connections watch.
    watchers: DashMap<UserId, HashMap<UserId, u32>>,
    /// Connection -> (its user, the users it watches), to replace or drop a subscription.
    subscriptions: DashMap<ConnectionId, (UserId, Vec<UserId>)>,
}

impl PresenceHub {
    pub fn new(store: Arc<dyn PresenceStore>, bus: Arc<dyn Bus>) -> Arc<Self> {
        Arc::new(Self {
            store,
            bus,
            watchers: DashMap::new(),
            subscriptions: DashMap::new(),
        })
    }

    /// The current presence of `user`.
    pub fn get(&self, user: &UserId) -> Presence {
        let (status, last_seen_at) = match self.store.get(user) {
            Some((status, at)) => (status, Some(at)),
            None => (PresenceStatus::Offline, None),
        };
        Presence {
            user_id: user.to_string(),
            status,
            last_seen_at,
        }
    }

    /// Records a heartbeat without a change of state (no one is told).
    pub fn touch(&self, user: &UserId, status: PresenceStatus) {
        self.store.set(user, status, Utc::now());
    }

    /// Records a change of state and tells every watcher.
    pub fn changed(&self, user: &UserId, status: PresenceStatus) {
        self.store.set(user, status, Utc::now());
        metrics::counter!("parley_presence_changes_total", "status" => status.label()).increment(1);
        let watchers: Vec<UserId> = self
            .watchers
            .get(user)
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default();
        if !watchers.is_empty() {
            self.bus.publish(
                &watchers,
                ServerEvent::PresenceUpdated(self.get(user)).to_frame(),
            );
        }
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
