//! How events reach users' connections, wherever those are.
//!
//! [`EventBus`] is the seam between the conversation actors that produce events
//! and the user actors that own sockets. [`LocalBus`] delivers within this
//! process; a Redis pub/sub implementation (the cross-node mailbox) will sit
//! behind the same trait, so producers never know how many nodes there are.

pub mod limits;
pub mod presence;

use std::sync::Arc;

use crate::{
    actors::user::{UserDirectory, UserMsg},
    domain::{
        UserId,
        event::{SharedFrame, UnreadUpdate},
    },
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

/// The single-node bus: looks each recipient's user actor up in the directory
/// of this node and hands it the frame.
pub struct LocalBus {
    users: UserDirectory,
}

impl LocalBus {
    pub fn new(users: UserDirectory) -> Arc<Self> {
        Arc::new(Self { users })
    }
}

impl EventBus for LocalBus {
    fn publish(&self, recipients: &[UserId], frame: SharedFrame) {
        for user in recipients {
            if let Some(actor) = self.users.get(user) {
                // A send error means the actor is stopping: it has no sockets left.
                let _ = actor.send_message(UserMsg::Deliver(frame.clone()));
            }
        }
    }

    fn publish_unread(&self, user: &UserId, update: UnreadUpdate) {
        if let Some(actor) = self.users.get(user) {
            let _ = actor.send_message(UserMsg::Unread(update));
        }
    }
}
