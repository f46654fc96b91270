//! `UserActor`: one per user with at least one open socket on this node. It
//! holds that user's connections (each a bounded queue drained by the socket's
//! writer task) and fans every event out to all of them.
//!
//! A connection whose queue is full is a slow consumer: its sender is dropped,
//! which makes the writer close the socket with a "resync" reason, and the
//! client catches up over REST. Nothing here ever waits on a socket.

use std::sync::Arc;

use dashmap::DashMap;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;

use super::supervisor::UserSupervisorMsg;
use crate::domain::{UserId, event::SharedFrame};

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
    /// A new socket of this user.
    Attach {
        id: ConnectionId,
        outbound: Outbound,
    },
    /// A socket closed.
    Detach(ConnectionId),
    /// Asked by the supervisor: stop if no connection is left, and say whether it did.
    StopIfIdle(RpcReplyPort<bool>),
}

pub struct UserActor;

pub struct UserState {
    user: UserId,
    supervisor: ActorRef<UserSupervisorMsg>,
    connections: Vec<(ConnectionId, Outbound)>,
}

impl UserState {
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
    type Arguments = (UserId, ActorRef<UserSupervisorMsg>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (user, supervisor): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(UserState {
            user,
            supervisor,
            connections: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            UserMsg::Deliver(frame) => {
                let before = state.connections.len();
                state
                    .connections
                    .retain(|(_, outbound)| match outbound.try_send(frame.clone()) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            metrics::counter!("parley_ws_slow_consumer_closes_total").increment(1);
                            false
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    });
                if state.connections.len() != before {
                    state.report_if_idle();
                }
            }
            UserMsg::Attach { id, outbound } => state.connections.push((id, outbound)),
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
