//! How events reach users' connections, wherever those are, and the other
//! state that must hold across nodes (presence, rate limits).
//!
//! [`EventBus`] is the seam between the conversation actors that produce events
//! and the user actors that own sockets. [`LocalBus`] delivers within this
//! process; a Redis pub/sub implementation (the cross-node mailbox) will sit
//! behind the same trait, so producers never know how many nodes there are.
//!
//! This module depends on nothing above it: events for users connected to
//! this node are handed to a [`LocalSink`], which the user side implements.

pub mod limits;
pub mod presence;

use std::sync::Arc;

use crate::domain::{
    UserId,
    event::{SharedFrame, UnreadUpdate},
};

/// Delivers serialised events to every open connection of the given users.
pub trait EventBus: Send + Sync + 'static {
    /// Fire-and-forget: events are hints (clients resync over REST on a gap),
    /// so a user with no connection, or a dying one, simply misses the frame.
    fn publish(&self, recipients: &[UserId], frame: SharedFrame);

    /// Tells `user`'s sessions their unread state changed; the user's actor
    /// adds the badge total and pushes `conversation.updated`.
    fn publish_unread(&self, user: &UserId, update: UnreadUpdate);
}

/// The users connected to this node, as the bus sees them: whatever holds
/// their connections. A user with no connection here is skipped silently.
pub trait LocalSink: Send + Sync + 'static {
    fn deliver(&self, user: &UserId, frame: SharedFrame);
    fn deliver_unread(&self, user: &UserId, update: UnreadUpdate);
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

impl EventBus for LocalBus {
    fn publish(&self, recipients: &[UserId], frame: SharedFrame) {
        for user in recipients {
            self.sink.deliver(user, frame.clone());
        }
    }

    fn publish_unread(&self, user: &UserId, update: UnreadUpdate) {
        self.sink.deliver_unread(user, update);
    }
}
