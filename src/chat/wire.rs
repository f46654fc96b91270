//! What nodes of a cluster send each other, as plain data (JSON on Redis):
//! a command forwarded to the node that owns its conversation, and the
//! notices every node must hear. The single-node server never builds them.

use serde::{Deserialize, Serialize};

use crate::{
    actors::conversation::Command,
    domain::{ConversationId, UserId},
};

/// A command on its way to the node that owns its conversation.
#[derive(Serialize, Deserialize)]
pub struct Forwarded {
    pub conversation: ConversationId,
    pub command: Command,
}

/// What one node tells all the others.
#[derive(Serialize, Deserialize)]
pub enum Notice {
    /// A moderator changed the user's sanction: drop any cached copy.
    SanctionChanged(UserId),
    /// The user's account was erased: forget it and close its connections.
    UserErased(UserId),
    /// The user was suspended or banned: close their live connections.
    SessionsClosed(UserId),
}
