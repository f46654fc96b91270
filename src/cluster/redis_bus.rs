//! The cross-node mailbox: events for users travel on Redis channels
//! `{prefix}:user:{userId}`.
//!
//! Publishing needs no knowledge of where users are: an event is delivered
//! at once to the recipients connected to this node, and published once per
//! recipient for the other nodes (serialised once; publishes are pipelined by
//! one writer task, so a burst costs a few round trips, not one each). A node
//! subscribes to a user's channel while it holds a connection of theirs and
//! skips the copies of its own publishes that come back.
//!
//! A payload is `{originNode}\n{kind}{body}`: kind `F` is an event frame (the
//! JSON the client receives), `U` an unread update (JSON), which the
//! receiving node's user actor turns into `conversation.updated` with its
//! own badge total.
//!
//! Events are hints (clients resync over REST on a gap), so a publish that
//! fails while Redis is away is dropped and counted; the node tells its
//! clients to resync once Redis is back (`cluster::node`).

use std::sync::{Arc, Weak};

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::{Bus, LocalSink, link::RedisLink};
use crate::domain::{
    UserId,
    event::{SharedFrame, UnreadUpdate},
};

/// Publishes waiting for the writer before new ones are dropped.
const PUBLISH_QUEUE: usize = 65_536;
/// Most publishes in one pipeline.
const MAX_PIPELINE: usize = 512;

/// One publish waiting for the writer: a channel and a payload shared by
/// every recipient of the event.
type Publish = (String, Arc<[u8]>);

/// The Redis implementation of [`Bus`].
pub struct RedisBus {
    link: Arc<RedisLink>,
    sink: Arc<dyn LocalSink>,
    publishes: mpsc::Sender<Publish>,
    /// Users whose channel this node subscribes to: a lock per user so that a
    /// subscribe and an unsubscribe of one user never cross, and whether the
    /// subscription is in place.
    subscriptions: DashMap<UserId, Arc<tokio::sync::Mutex<bool>>>,
    /// Itself, for the tasks it spawns.
    me: Weak<Self>,
}

impl RedisBus {
    /// The bus, and its writer task (ends when the bus is dropped).
    pub fn start(link: Arc<RedisLink>, sink: Arc<dyn LocalSink>) -> Arc<Self> {
        let (publishes, queued) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(write_publishes(link.clone(), queued));
        Arc::new_cyclic(|me| Self {
            link,
            sink,
            publishes,
            subscriptions: DashMap::new(),
            me: me.clone(),
        })
    }

    /// The channels of every user this node subscribes to (to subscribe a
    /// fresh connection to all of them).
    pub fn user_channels(&self) -> Vec<String> {
        self.subscriptions
            .iter()
            .map(|entry| self.link.user_channel(entry.key().as_str()))
            .collect()
    }

    /// Records that every user's channel is subscribed (a fresh subscriber
    /// connection was opened with all of them).
    pub fn mark_all_subscribed(&self) {
        for entry in &self.subscriptions {
            if let Ok(mut subscribed) = entry.value().try_lock() {
                *subscribed = true;
            }
        }
    }

    /// A message that arrived on `user`'s channel.
    pub fn received(&self, user: &str, payload: &[u8]) {
        let Some((origin, rest)) = split_once(payload, b'\n') else {
            return;
        };
        if origin == self.link.node().as_bytes() {
            return; // Delivered locally when it was published.
        }
        let Ok(user) = UserId::parse(user) else {
            return;
        };
        match rest.split_first() {
            Some((b'F', frame)) => {
                if let Ok(text) = std::str::from_utf8(frame) {
                    self.sink.deliver(&user, SharedFrame::from(text.to_owned()));
                }
            }
            Some((b'U', update)) => match serde_json::from_slice::<UnreadUpdate>(update) {
                Ok(update) => self.sink.deliver_unread(&user, update),
                Err(e) => tracing::warn!(error = %e, "unreadable unread update from the bus"),
            },
            _ => tracing::warn!("unknown payload on a user channel"),
        }
    }

    fn publish_payload(&self, recipients: &[UserId], kind: u8, body: &[u8]) {
        let node = self.link.node().as_bytes();
        let mut payload = Vec::with_capacity(node.len() + 2 + body.len());
        payload.extend_from_slice(node);
        payload.push(b'\n');
        payload.push(kind);
        payload.extend_from_slice(body);
        let payload: Arc<[u8]> = payload.into();
        for user in recipients {
            let publish = (self.link.user_channel(user.as_str()), payload.clone());
            if self.publishes.try_send(publish).is_err() {
                metrics::counter!("parley_bus_publishes_dropped_total").increment(1);
            }
        }
    }

    async fn subscribe(&self, user: &UserId) {
        let lock = self
            .subscriptions
            .entry(user.clone())
            .or_default()
            .value()
            .clone();
        let mut subscribed = lock.lock().await;
        if *subscribed {
            return;
        }
        let channel = self.link.user_channel(user.as_str());
        match self.link.subscriber().subscribe(&channel).await {
            Ok(()) => *subscribed = true,
            // Local delivery still works; once Redis is back the node
            // re-subscribes every user it holds and tells them to resync.
            Err(e) => tracing::warn!(error = %e, "could not subscribe to a user's channel"),
        }
    }

    async fn unsubscribe(self: Arc<Self>, user: UserId) {
        let Some(lock) = self.subscriptions.get(&user).map(|l| l.value().clone()) else {
            return;
        };
        let mut subscribed = lock.lock().await;
        if self.sink.holds(&user) {
            return; // Connected again meanwhile.
        }
        if *subscribed {
            let channel = self.link.user_channel(user.as_str());
            if let Err(e) = self.link.subscriber().unsubscribe(&channel).await {
                tracing::warn!(error = %e, "could not unsubscribe from a user's channel");
            }
            *subscribed = false;
        }
        drop(subscribed);
        // Forget the entry unless a subscribe is holding (or waiting for) it.
        self.subscriptions
            .remove_if(&user, |_, l| Arc::strong_count(l) <= 2);
    }
}

impl Bus for RedisBus {
    fn publish(&self, recipients: &[UserId], frame: SharedFrame) {
        for user in recipients {
            self.sink.deliver(user, frame.clone());
        }
        self.publish_payload(recipients, b'F', frame.as_str().as_bytes());
    }

    fn publish_unread(&self, user: &UserId, update: UnreadUpdate) {
        self.sink.deliver_unread(user, update);
        match serde_json::to_vec(&update) {
            Ok(body) => self.publish_payload(std::slice::from_ref(user), b'U', &body),
            Err(e) => tracing::warn!(error = %e, "could not encode an unread update"),
        }
    }

    fn watch<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, ()> {
        Box::pin(self.subscribe(user))
    }

    fn unwatch(&self, user: &UserId) {
        if let Some(bus) = self.me.upgrade() {
            tokio::spawn(bus.unsubscribe(user.clone()));
        }
    }
}

/// The writer: drains queued publishes into pipelines.
async fn write_publishes(link: Arc<RedisLink>, mut queued: mpsc::Receiver<Publish>) {
    let mut batch = Vec::with_capacity(MAX_PIPELINE);
    while queued.recv_many(&mut batch, MAX_PIPELINE).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, payload) in &batch {
            pipe.publish(channel, payload.as_ref()).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut link.commands()).await {
            metrics::counter!("parley_bus_publishes_dropped_total").increment(batch.len() as u64);
            tracing::debug!(error = %e, "publishing to Redis failed");
        }
        batch.clear();
    }
}

fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|b| *b == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}
