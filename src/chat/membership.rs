//! What this node does for the other nodes of a cluster: runs the commands
//! they forward for conversations it owns, applies the notices they
//! broadcast, and keeps its conversation leases alive.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{
    ChatCore,
    wire::{Forwarded, Notice},
};
use crate::{
    actors::conversation::Reply,
    cluster::node::{Node, NodeHandler},
    domain::{ChatError, UserId, error::WireError},
};

impl NodeHandler for ChatCore {
    fn request(&self, body: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let chat = self.clone();
        Box::pin(async move {
            let result: Result<Reply, ChatError> = match serde_json::from_slice::<Forwarded>(&body)
            {
                Ok(forwarded) => chat.dispatcher.dispatch_forwarded(forwarded).await,
                Err(e) => Err(ChatError::internal(format!(
                    "unreadable forwarded command: {e}"
                ))),
            };
            if let Err(e) = &result
                && e.is_server_failure()
            {
                tracing::warn!(error = %e.chain(), "forwarded command failed");
            }
            let wire: Result<Reply, WireError> = result.map_err(|e| WireError::from(&e));
            serde_json::to_vec(&wire).unwrap_or_default()
        })
    }

    fn notice(&self, body: &[u8]) {
        match serde_json::from_slice::<Notice>(body) {
            Ok(Notice::SanctionChanged(user)) => self.safety.sanction_changed(&user),
            Ok(Notice::UserErased(user)) => self.forget_erased(&user),
            Ok(Notice::SessionsClosed(user)) => self.close_sessions(&user),
            Err(e) => tracing::warn!(error = %e, "unreadable cluster notice"),
        }
    }

    fn presence_changed(&self, user: &UserId) {
        self.presence.tell_watchers(user);
    }
}

/// Renews this node's leases of the conversations live here, every third of
/// their lifetime; an actor whose lease another node took meanwhile (this
/// node was paused, or Redis lost it) is stopped. Ends with the dispatcher's
/// node (aborted on shutdown).
pub fn renew_leases(chat: &ChatCore, node: Arc<Node>) -> tokio::task::JoinHandle<()> {
    let chat = Arc::downgrade(&chat.0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(node.leases.renew_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(core) = chat.upgrade() else {
                return;
            };
            let live = core.dispatcher.live_ids();
            match node.leases.renew(&node.link, &live).await {
                Ok(lost) => {
                    for id in lost {
                        tracing::info!(conversation = %id, "lease taken by another node; stopping here");
                        core.dispatcher.retire(id);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not renew leases"),
            }
        }
    })
}
