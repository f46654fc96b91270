//! How events reach users' connections, wherever those are, and the other
//! state that must hold across nodes (presence, rate limits, who owns which
//! conversation).
//!
//! [`Bus`] is the seam between the conversation actors that produce events
//! and the user actors that own sockets. [`LocalBus`] delivers within this
//! process (a single node, no Redis); [`redis_bus::RedisBus`] is the
//! cross-node mailbox, so producers never know how many nodes there are.
//! With Redis configured, [`node::Node`] is this node's membership of the
//! cluster: its connections ([`link`]), conversation leases
//! ([`ownership`]), commands forwarded to other nodes ([`forward`]), the
//! cluster-wide connection cap ([`slots`]), and the probe that notices a
//! subscription which silently stopped delivering. Connect tickets
//! ([`tickets`]) are kept where any node can redeem them.
//!
//! This module depends on nothing above it: events for users connected to
//! this node are handed to a [`LocalSink`], which the user side implements;
//! forwarded commands and cluster notices are handed to a
//! [`node::NodeHandler`], which the application layer implements.

pub mod forward;
pub mod limits;
pub mod link;
pub mod node;
pub mod ownership;
pub mod presence;
pub mod redis_bus;
pub mod slots;
pub mod tickets;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::domain::{
    UserId,
    event::{SharedFrame, UnreadUpdate},
};

/// Delivers serialised events to every open connection of the given users.
pub trait Bus: Send + Sync + 'static {
    /// Fire-and-forget: events are hints (clients resync over REST on a gap),
    /// so a user with no connection, or a dying one, simply misses the frame.
    fn publish(&self, recipients: &[UserId], frame: SharedFrame);

    /// Tells `user`'s sessions their unread state changed; the user's actor
    /// adds the badge total and pushes `conversation.updated`.
    fn publish_unread(&self, user: &UserId, update: UnreadUpdate);

    /// Makes sure events published for `user` anywhere reach this node; done
    /// when they will (called before a connection of theirs is served).
    fn watch<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, ()>;

    /// `user` has no connection on this node any more (their actor retired).
    fn unwatch(&self, user: &UserId);
}

/// The users connected to this node, as the bus sees them: whatever holds
/// their connections. A user with no connection here is skipped silently.
pub trait LocalSink: Send + Sync + 'static {
    fn deliver(&self, user: &UserId, frame: SharedFrame);
    fn deliver_unread(&self, user: &UserId, update: UnreadUpdate);
    /// Whether `user` has connections (a live actor) on this node.
    fn holds(&self, user: &UserId) -> bool;
    /// Sends `frame` to every user connected to this node.
    fn deliver_to_all(&self, frame: SharedFrame);
}

/// The single-node bus: hands every event to this node's sink.
pub struct LocalBus {
    sink: Arc<dyn LocalSink>,
}

impl LocalBus {
    pub fn new(sink: Arc<dyn LocalSink>) -> Arc<Self> {
        Arc::new(Self { sink })
    }
}

impl Bus for LocalBus {
    fn publish(&self, recipients: &[UserId], frame: SharedFrame) {
        for user in recipients {
            self.sink.deliver(user, frame.clone());
        }
    }

    fn publish_unread(&self, user: &UserId, update: UnreadUpdate) {
        self.sink.deliver_unread(user, update);
    }

    fn watch<'a>(&'a self, _: &'a UserId) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    fn unwatch(&self, _: &UserId) {}
}
