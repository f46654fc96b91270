//! The actor layer: conversation actors serialise each conversation's writes,
//! user actors own each user's sockets, supervisors spawn and retire both.
//!
//! [`ChatCore`] is the one door into it for HTTP and WebSocket handlers: it
//! validates input, finds or spawns the right actor, bounds every call by the
//! configured timeout (a timeout is a 503, never a hang), and retries once when
//! the actor it reached was retiring (passivated or failed), which is safe
//! because sends are idempotent by `clientMessageId` and reads never move back.

pub mod conversation;
pub mod safety;
pub mod supervisor;
pub mod user;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use ractor::{Actor, ActorRef, RpcReplyPort, rpc::CallResult};

use self::{
    conversation::{ConversationDeps, ConversationMsg, SendCommand, SendOutcome},
    safety::Safety,
    supervisor::{
        ConversationDirectory, ConversationSupervisor, ConversationSupervisorMsg, UserSupervisor,
        UserSupervisorMsg,
    },
    user::{Attached, ConnectionId, EventId, Outbound, UserDirectory, UserLimits, UserMsg},
};
use crate::{
    cluster::{
        EventBus, LocalBus,
        limits::{self, LimitKind},
        presence::{LocalPresence, PresenceHub},
    },
    config::Settings,
    domain::{
        ChatError, ConversationId, UserId,
        clock::Clock,
        event::{ServerEvent, UnreadUpdate},
        model::ReadState,
        text,
    },
    persistence,
};

/// Handle to the actor system; cheap to clone into request handlers.
#[derive(Clone)]
pub struct ChatCore {
    conversations: ConversationDirectory,
    conversation_supervisor: ActorRef<ConversationSupervisorMsg>,
    users: UserDirectory,
    user_supervisor: ActorRef<UserSupervisorMsg>,
    call_timeout: Duration,
    next_connection_id: Arc<AtomicU64>,
    presence: Arc<PresenceHub>,
    /// The bus, for events that come from no conversation (blocks).
    users_bus: Arc<dyn EventBus>,
    safety: Arc<Safety>,
}

/// A number that differs between runs of this node, so event ids from before a
/// restart are recognised as stale.
fn node_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The outcome of one actor call that may be retried.
enum Attempt<T> {
    Done(Result<T, ChatError>),
    /// The actor stopped before answering: retry against a fresh one.
    ActorGone,
}

impl ChatCore {
    /// Starts the supervisors. The bus is in-process for now.
    pub async fn start(
        pool: deadpool_postgres::Pool,
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let call_timeout = settings.actor_call_timeout;
        let users: UserDirectory = Arc::new(DashMap::new());
        let bus: Arc<dyn EventBus> = LocalBus::new(users.clone());
        let presence = PresenceHub::new(Arc::new(LocalPresence::default()), bus.clone());
        let users_bus = bus.clone();
        let safety = Arc::new(Safety::new(
            pool.clone(),
            clock,
            limits::from_settings(settings),
            bus.clone(),
            settings.report_evidence_messages,
        ));
        let conversations: ConversationDirectory = Arc::new(DashMap::new());
        let deps = Arc::new(ConversationDeps {
            pool: pool.clone(),
            bus,
            idle_timeout: settings.actor_idle_timeout,
            typing_timeout: settings.typing_timeout,
            typing_throttle: settings.typing_throttle,
            writer: settings
                .group_commit
                .then(|| persistence::group_commit::GroupCommitter::start(pool.clone())),
        });
        let (conversation_supervisor, _) = Actor::spawn(
            None,
            ConversationSupervisor {
                deps,
                directory: conversations.clone(),
            },
            (),
        )
        .await?;
        let (user_supervisor, _) = Actor::spawn(
            None,
            UserSupervisor {
                directory: users.clone(),
                pool,
                presence: presence.clone(),
                limits: UserLimits {
                    max_connections: settings.max_connections_per_user,
                    presence_timeout: settings.presence_timeout,
                    offline_grace: settings.offline_grace,
                    replay_events: settings.replay_events,
                    epoch: node_epoch(),
                },
                call_timeout,
            },
            (),
        )
        .await?;
        Ok(Self {
            conversations,
            conversation_supervisor,
            users,
            user_supervisor,
            call_timeout,
            next_connection_id: Arc::new(AtomicU64::new(1)),
            presence,
            users_bus,
            safety,
        })
    }

    /// Sends a message: sanitises the body, then lets the conversation's actor
    /// store it. `created` is false for an idempotent repeat.
    pub async fn send(
        &self,
        conversation: ConversationId,
        sender: &UserId,
        body: &str,
        client_message_id: &str,
    ) -> Result<SendOutcome, ChatError> {
        text::validate_client_message_id(client_message_id)?;
        let body = text::sanitize_body(body)?;
        self.safety.check_may_post(sender).await?;
        self.safety.check_limit(sender, LimitKind::Messages)?;
        let outcome = self
            .call_conversation(conversation, |reply| {
                ConversationMsg::Send(
                    SendCommand {
                        sender: sender.clone(),
                        body: body.clone(),
                        client_message_id: client_message_id.to_owned(),
                    },
                    reply,
                )
            })
            .await;
        if let Ok(o) = &outcome
            && o.opened_request
        {
            let links = o.message.links.as_ref().map_or(0, |l| l.urls.len());
            self.safety.request_sent(sender, conversation.0, links);
        }
        match &outcome {
            Ok(o) if o.created => metrics::counter!("parley_messages_sent_total").increment(1),
            Ok(_) => metrics::counter!("parley_messages_deduplicated_total").increment(1),
            Err(e) => {
                metrics::counter!("parley_send_failures_total", "reason" => e.code()).increment(1)
            }
        }
        outcome
    }

    /// Moves `user`'s read pointer forward to `seq` (clamped to the last message).
    pub async fn mark_read(
        &self,
        conversation: ConversationId,
        user: &UserId,
        seq: i64,
    ) -> Result<ReadState, ChatError> {
        if seq < 0 {
            return Err(ChatError::invalid(
                "invalid_seq",
                "seq must be zero or positive",
            ));
        }
        self.call_conversation(conversation, |reply| ConversationMsg::MarkRead {
            user: user.clone(),
            seq,
            reply,
        })
        .await
    }

    /// Relays a typing signal. Fire and forget: a conversation that does not
    /// exist, or that `user` is not part of, swallows it.
    pub async fn typing(&self, conversation: ConversationId, user: &UserId, started: bool) {
        if let Ok(actor) = self.conversation_actor(conversation).await {
            let _ = actor.send_message(ConversationMsg::Typing {
                user: user.clone(),
                started,
            });
        }
    }

    /// `user` accepts (or declines) the message request made to them.
    pub async fn respond(
        &self,
        conversation: ConversationId,
        user: &UserId,
        accept: bool,
    ) -> Result<(), ChatError> {
        let requesters = self
            .call_conversation(conversation, |reply| ConversationMsg::Respond {
                user: user.clone(),
                accept,
                reply,
            })
            .await?;
        if !accept {
            for requester in &requesters {
                self.safety.request_declined(requester, conversation.0);
            }
        }
        Ok(())
    }

    /// Mutes or archives (or the reverse) a conversation for `user`. An
    /// archived conversation leaves the user's unread badge at once.
    pub async fn set_flag(
        &self,
        pool: &deadpool_postgres::Pool,
        conversation: ConversationId,
        user: &UserId,
        flag: persistence::conversations::ParticipantFlag,
        on: bool,
    ) -> Result<(), ChatError> {
        let (unread_count, last_read_seq) =
            persistence::conversations::set_flag(pool, conversation, user, flag, on)
                .await?
                .ok_or(ChatError::NotFound {
                    what: "conversation",
                })?;
        if flag == persistence::conversations::ParticipantFlag::Archived {
            if let Some(actor) = self.conversations.get(&conversation) {
                let _ = actor.send_message(ConversationMsg::SetArchived {
                    user: user.clone(),
                    archived: on,
                });
            }
            let update = UnreadUpdate {
                conversation_id: conversation.0,
                unread_count,
                last_read_seq,
                in_badge: !on,
            };
            self.users_bus.publish_unread(user, update);
        }
        Ok(())
    }

    /// Tells the live actors of the conversations `a` and `b` share whether
    /// a block now stands between them, stops them watching each other's
    /// presence, and tells the blocker's own connections.
    pub async fn block_changed(
        &self,
        blocker: &UserId,
        blocked: &UserId,
        created: bool,
        pool: &deadpool_postgres::Pool,
    ) -> Result<(), ChatError> {
        let still_blocked = persistence::blocks::between(pool, blocker, blocked).await?;
        for conversation in
            persistence::blocks::shared_conversations(pool, blocker, blocked).await?
        {
            if let Some(actor) = self.conversations.get(&ConversationId(conversation)) {
                let _ = actor.send_message(ConversationMsg::SetBlocked(still_blocked));
            }
        }
        if still_blocked {
            self.presence.forget_pair(blocker, blocked);
        }
        let event = if created {
            ServerEvent::BlockCreated {
                user_id: blocked.to_string(),
            }
        } else {
            ServerEvent::BlockRemoved {
                user_id: blocked.to_string(),
            }
        };
        self.users_bus
            .publish(std::slice::from_ref(blocker), event.to_frame());
        Ok(())
    }

    /// Registers a realtime connection of `user`; events for the user go into
    /// `outbound`, starting with those after `resume_after` when given.
    /// Returns the connection's id and the user actor to detach from later.
    pub async fn attach_connection(
        &self,
        user: &UserId,
        outbound: Outbound,
        resume_after: Option<EventId>,
    ) -> Result<(ConnectionId, Attached), ChatError> {
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let actor = self
            .call(&self.user_supervisor, |reply| UserSupervisorMsg::Attach {
                user: user.clone(),
                id,
                outbound,
                resume_after,
                reply,
            })
            .await;
        match actor {
            Attempt::Done(result) => result.map(|attached| (id, attached)),
            Attempt::ActorGone => Err(ChatError::Unavailable("user supervisor stopped".into())),
        }
    }

    /// A presence heartbeat for `user`'s connections on this node (all of
    /// them when `connection` is `None`, as the REST fallback does).
    pub fn heartbeat(&self, user: &UserId, connection: Option<ConnectionId>, away: bool) {
        if let Some(actor) = self.users.get(user) {
            let _ = actor.send_message(UserMsg::Heartbeat { connection, away });
        }
    }

    /// Publishes an event that comes from no conversation actor (moderation).
    pub fn publish(&self, recipients: &[UserId], event: ServerEvent) {
        self.users_bus.publish(recipients, event.to_frame());
    }

    /// Rate limits, sanctions and abuse signals.
    pub fn safety(&self) -> &Safety {
        &self.safety
    }

    /// Presence records and subscriptions.
    pub fn presence(&self) -> &PresenceHub {
        &self.presence
    }

    /// Number of live conversation actors and user actors on this node.
    pub fn live_actor_counts(&self) -> (usize, usize) {
        (self.conversations.len(), self.users.len())
    }

    /// Whether the conversation currently has a live actor on this node.
    pub fn is_live(&self, conversation: ConversationId) -> bool {
        self.conversations.contains_key(&conversation)
    }

    /// Stops every actor on shutdown: conversation actors first process the
    /// commands already in their mailboxes (bounded by `grace`).
    pub async fn stop(&self, grace: Duration) {
        self.conversation_supervisor.drain_children();
        let deadline = tokio::time::Instant::now() + grace;
        while !self.conversations.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.conversation_supervisor.stop(None);
        self.user_supervisor.stop_children(None);
        self.user_supervisor.stop(None);
    }

    async fn call_conversation<T: Send + 'static>(
        &self,
        id: ConversationId,
        build: impl Fn(RpcReplyPort<Result<T, ChatError>>) -> ConversationMsg,
    ) -> Result<T, ChatError> {
        for _ in 0..2 {
            let actor = self.conversation_actor(id).await?;
            if let Attempt::Done(result) = self.call(&actor, &build).await {
                return result;
            }
        }
        Err(ChatError::Unavailable(format!(
            "conversation {id} actor kept stopping"
        )))
    }

    async fn conversation_actor(
        &self,
        id: ConversationId,
    ) -> Result<ActorRef<ConversationMsg>, ChatError> {
        if let Some(actor) = self.conversations.get(&id).map(|a| a.clone()) {
            return Ok(actor);
        }
        match self
            .call(&self.conversation_supervisor, |reply| {
                ConversationSupervisorMsg::GetOrSpawn(id, reply)
            })
            .await
        {
            Attempt::Done(result) => result,
            Attempt::ActorGone => Err(ChatError::Unavailable(
                "conversation supervisor stopped".into(),
            )),
        }
    }

    async fn call<M: Send + 'static, T: Send + 'static>(
        &self,
        actor: &ActorRef<M>,
        build: impl FnOnce(RpcReplyPort<Result<T, ChatError>>) -> M,
    ) -> Attempt<T> {
        match actor.call(build, Some(self.call_timeout)).await {
            Ok(CallResult::Success(result)) => Attempt::Done(result),
            Ok(CallResult::Timeout) => {
                Attempt::Done(Err(ChatError::Unavailable("actor call timed out".into())))
            }
            Ok(CallResult::SenderError) | Err(_) => Attempt::ActorGone,
        }
    }
}
