//! Supervisors of the conversation and user actors.
//!
//! Each supervisor is the only writer of its directory (a `DashMap` that
//! request handlers read without any lock held across an await), and performs
//! get-or-spawn inside its own handler, which ractor runs one message at a time:
//! two concurrent first sends to one conversation therefore reach one actor.
//! Supervisors only spawn and supervise: no handler of theirs does I/O or
//! waits on a child (actors load their state in `post_start`, and a user
//! actor retires by itself), so one slow conversation never holds up the node.
//!
//! Both override `handle_supervisor_evt` completely (ractor's default would stop
//! the supervisor when any child ends): a child that stops or fails is removed
//! from the directory and rebuilt from Postgres on its next use; failures are
//! counted in `parley_actor_restarts_total`. (The live-actor gauges are read
//! from the directories when `/metrics` is scraped, not on every spawn.)

use std::sync::Arc;

use dashmap::DashMap;
use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};

use super::{
    conversation::{ConversationActor, ConversationDeps, ConversationMsg},
    user::{Attached, EventId, Outbound, UserActor, UserArgs, UserDirectory, UserLimits, UserMsg},
};
use crate::{
    cluster::{
        Bus,
        presence::{ConnectionId, PresenceHub},
    },
    domain::{ChatError, ConversationId, UserId},
    persistence::{batch::Batcher, conversations::UnreadCounts},
};

/// This node's live conversation actors. Written only by the conversation supervisor.
pub type ConversationDirectory = Arc<DashMap<ConversationId, ActorRef<ConversationMsg>>>;

/// Removes `cell` from `directory` if it is still the registered actor
/// there; returns the key it was registered under.
fn forget<K: Eq + std::hash::Hash + Clone, M>(
    directory: &DashMap<K, ActorRef<M>>,
    cell: &ActorCell,
) -> Option<K> {
    let mut removed = None;
    directory.retain(|key, actor| {
        let keep = actor.get_id() != cell.get_id();
        if !keep {
            removed = Some(key.clone());
        }
        keep
    });
    removed
}

/// A child that could not be started: retrying later may work.
fn spawn_failed(kind: &str, e: SpawnErr) -> ChatError {
    ChatError::Unavailable {
        detail: format!("{kind} actor could not start"),
        cause: Some(Box::new(e)),
    }
}

fn is_alive<M>(actor: &ActorRef<M>) -> bool {
    ractor::ACTIVE_STATES.contains(&actor.get_status())
}

/// The conversation's actor on this node, if it is up.
pub fn live_conversation(
    directory: &ConversationDirectory,
    id: ConversationId,
) -> Option<ActorRef<ConversationMsg>> {
    directory.get(&id).map(|a| a.clone()).filter(is_alive)
}

/// `user`'s actor on this node, if it is up: a new connection of a user who
/// is already connected attaches to it directly, without a trip through the
/// supervisor's mailbox (only spawning needs the supervisor).
pub fn live_user(directory: &UserDirectory, user: &UserId) -> Option<ActorRef<UserMsg>> {
    directory.get(user).map(|a| a.clone()).filter(is_alive)
}

/// Stops a removed or failed child and records why.
fn note_supervision_event(kind: &'static str, event: &SupervisionEvent) -> Option<ActorCell> {
    match event {
        SupervisionEvent::ActorTerminated(cell, _, _) => Some(cell.clone()),
        SupervisionEvent::ActorFailed(cell, err) => {
            tracing::warn!(actor = kind, error = %err, "actor failed; it will be rebuilt on next use");
            metrics::counter!("parley_actor_restarts_total", "actor" => kind).increment(1);
            Some(cell.clone())
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- conversations

pub enum ConversationSupervisorMsg {
    GetOrSpawn(
        ConversationId,
        RpcReplyPort<Result<ActorRef<ConversationMsg>, ChatError>>,
    ),
}

pub struct ConversationSupervisor {
    pub deps: Arc<ConversationDeps>,
    pub directory: ConversationDirectory,
}

impl Actor for ConversationSupervisor {
    type Msg = ConversationSupervisorMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let ConversationSupervisorMsg::GetOrSpawn(id, reply) = message;
        if let Some(existing) = self.directory.get(&id).map(|a| a.clone()) {
            if is_alive(&existing) {
                let _ = reply.send(Ok(existing));
                return Ok(());
            }
            self.directory.remove(&id);
        }
        let actor = ConversationActor {
            deps: self.deps.clone(),
        };
        let result = match Actor::spawn_linked(None, actor, id, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.directory.insert(id, actor.clone());
                Ok(actor)
            }
            Err(e) => Err(spawn_failed("conversation", e)),
        };
        let _ = reply.send(result);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let Some(cell) = note_supervision_event("conversation", &event) {
            forget(&self.directory, &cell);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------- users

pub enum UserSupervisorMsg {
    /// Register a connection of `user`, spawning the user's actor if needed.
    Attach {
        user: UserId,
        id: ConnectionId,
        outbound: Outbound,
        resume_after: Option<EventId>,
        reply: RpcReplyPort<Result<Attached, ChatError>>,
    },
}

pub struct UserSupervisor {
    pub directory: UserDirectory,
    /// Loads each user actor's initial unread counts.
    pub unread: Batcher<UnreadCounts>,
    /// Where user actors record presence.
    pub presence: Arc<PresenceHub>,
    /// The bounds each user actor applies.
    pub limits: UserLimits,
    /// Told when a user has no actor (no connection) here any more.
    pub bus: Arc<dyn Bus>,
}

impl Actor for UserSupervisor {
    type Msg = UserSupervisorMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let UserSupervisorMsg::Attach {
            user,
            id,
            outbound,
            resume_after,
            reply,
        } = message;
        let actor = match live_user(&self.directory, &user) {
            Some(actor) => Ok(actor),
            None => {
                let args = UserArgs {
                    user: user.clone(),
                    unread: self.unread.clone(),
                    presence: self.presence.clone(),
                    limits: self.limits,
                };
                Actor::spawn_linked(None, UserActor, args, myself.get_cell())
                    .await
                    .map(|(actor, _)| {
                        self.directory.insert(user, actor.clone());
                        actor
                    })
                    .map_err(|e| spawn_failed("user", e))
            }
        };
        // The actor answers the caller itself. If it retires before it reads
        // this (its grace period ran out just now), the caller's reply port
        // is dropped and the caller retries against a new actor.
        match actor {
            Ok(actor) => {
                if let Err(ractor::MessagingErr::SendErr(UserMsg::Attach { reply, .. })) = actor
                    .send_message(UserMsg::Attach {
                        id,
                        outbound,
                        resume_after,
                        reply,
                    })
                {
                    let _ = reply.send(Err(ChatError::unavailable("user actor retired")));
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let Some(cell) = note_supervision_event("user", &event)
            && let Some(user) = forget(&self.directory, &cell)
        {
            self.bus.unwatch(&user);
        }
        Ok(())
    }
}
