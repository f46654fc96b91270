//! `UserActor`: one per user with at least one open socket on this node. It
//! holds that user's connections (each a bounded queue drained by the socket's
//! writer task) and fans every event out to all of them.
//!
//! A connection whose queue is full is a slow consumer: its sender is dropped,
//! which makes the writer close the socket with a "resync" reason, and the
//! client catches up over REST. Nothing here ever waits on a socket.
//!
//! It also keeps the user's unread count per conversation, to put the badge
//! total (`totalUnread`) on every `conversation.updated`: loaded from Postgres
//! when the actor starts, then overwritten by the absolute values each
//! [`UnreadUpdate`] carries (an update that arrives while the load is in
//! flight is newer than the load, so it wins).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use dashmap::DashMap;
use deadpool_postgres::Pool;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::supervisor::UserSupervisorMsg;
use crate::{
    domain::{
        ChatError, UserId,
        event::{ServerEvent, SharedFrame, UnreadUpdate},
    },
    persistence::conversations,
};

/// This node's user actors, by user. Written only by the user supervisor
/// (which serialises get-or-spawn); read by the bus on every event.
pub type UserDirectory = Arc<DashMap<UserId, ActorRef<UserMsg>>>;

/// Identifies one socket of a user on this node.
pub type ConnectionId = u64;

/// The sending half of a connection's bounded outbound queue.
pub type Outbound = mpsc::Sender<SharedFrame>;

pub enum UserMsg {
    /// Fan an event out to every connection.
    Deliver(SharedFrame),
    /// The user's unread state in one conversation changed.
    Unread(UnreadUpdate),
    /// The initial per-conversation unread counts, loaded after start.
    UnreadLoaded(Vec<(Uuid, i64)>),
    /// A new socket of this user; answered with this actor, or refused when
    /// the user already has the maximum number of connections.
    Attach {
        id: ConnectionId,
        outbound: Outbound,
        reply: RpcReplyPort<Result<ActorRef<UserMsg>, ChatError>>,
    },
    /// A socket closed.
    Detach(ConnectionId),
    /// Asked by the supervisor: stop if no connection is left, and say whether it did.
    StopIfIdle(RpcReplyPort<bool>),
}

pub struct UserActor;

/// What a user actor is started with.
pub struct UserArgs {
    pub user: UserId,
    pub supervisor: ActorRef<UserSupervisorMsg>,
    pub pool: Pool,
    /// Most simultaneous connections of one user on this node.
    pub max_connections: usize,
}

pub struct UserState {
    user: UserId,
    max_connections: usize,
    supervisor: ActorRef<UserSupervisorMsg>,
    connections: Vec<(ConnectionId, Outbound)>,
    /// Unread count per conversation, non-zero entries only.
    unread: HashMap<Uuid, i64>,
    /// Conversations updated before the initial load arrived (`None` once loaded).
    updated_before_load: Option<HashSet<Uuid>>,
}

impl UserState {
    /// Sends `frame` to every connection, dropping those that cannot keep up.
    fn fan_out(&mut self, frame: &SharedFrame) {
        let before = self.connections.len();
        self.connections
            .retain(|(_, outbound)| match outbound.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("parley_ws_slow_consumer_closes_total").increment(1);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        if self.connections.len() != before {
            self.report_if_idle();
        }
    }

    fn apply_unread(&mut self, update: UnreadUpdate) -> SharedFrame {
        if let Some(early) = &mut self.updated_before_load {
            early.insert(update.conversation_id);
        }
        if update.unread_count > 0 {
            self.unread
                .insert(update.conversation_id, update.unread_count);
        } else {
            self.unread.remove(&update.conversation_id);
        }
        ServerEvent::ConversationUpdated {
            conversation_id: update.conversation_id,
            last_read_seq: update.last_read_seq,
            unread_count: update.unread_count,
            total_unread: self.unread.values().sum(),
        }
        .to_frame()
    }

    /// Tells the supervisor when the last connection is gone, so it can retire us.
    fn report_if_idle(&self) {
        if self.connections.is_empty() {
            let _ = self
                .supervisor
                .send_message(UserSupervisorMsg::Idle(self.user.clone()));
        }
    }
}

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = UserState;
    type Arguments = UserArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        UserArgs {
            user,
            supervisor,
            pool,
            max_connections,
        }: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Loaded off the actor's handler, so the start (and the supervisor) never waits on it.
        let loading_for = user.clone();
        tokio::spawn(async move {
            match conversations::unread_counts(&pool, &loading_for).await {
                Ok(counts) => {
                    let _ = myself.send_message(UserMsg::UnreadLoaded(counts));
                }
                Err(e) => {
                    tracing::warn!(user = %loading_for, error = %e, "could not load unread counts")
                }
            }
        });
        Ok(UserState {
            user,
            max_connections,
            supervisor,
            connections: Vec::new(),
            unread: HashMap::new(),
            updated_before_load: Some(HashSet::new()),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            UserMsg::Deliver(frame) => state.fan_out(&frame),
            UserMsg::Unread(update) => {
                let frame = state.apply_unread(update);
                state.fan_out(&frame);
            }
            UserMsg::UnreadLoaded(counts) => {
                let early = state.updated_before_load.take().unwrap_or_default();
                for (conversation, count) in counts {
                    if !early.contains(&conversation) {
                        state.unread.insert(conversation, count);
                    }
                }
            }
            UserMsg::Attach {
                id,
                outbound,
                reply,
            } => {
                if state.connections.len() >= state.max_connections {
                    metrics::counter!("parley_ws_disconnects_total", "reason" => "too_many_connections").increment(1);
                    let _ = reply.send(Err(ChatError::Limited {
                        code: "too_many_connections",
                        message: format!("at most {} connections per user", state.max_connections),
                    }));
                } else {
                    state.connections.push((id, outbound));
                    let _ = reply.send(Ok(myself));
                }
            }
            UserMsg::Detach(id) => {
                state.connections.retain(|(conn, _)| *conn != id);
                state.report_if_idle();
            }
            UserMsg::StopIfIdle(reply) => {
                let idle = state.connections.is_empty();
                let _ = reply.send(idle);
                if idle {
                    myself.stop(Some("no connections".into()));
                }
            }
        }
        Ok(())
    }
}
