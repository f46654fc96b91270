//! The application layer: every use case of Parley and every policy
//! decision, each written once. Transports (`http`, `ws`, and later the job
//! consumers) translate their input, call a method of [`ChatCore`], and
//! translate the answer; they hold no rules and no SQL.
//!
//! * [`conversations`] — open, list, read one, answer requests, mute/archive, sync.
//! * [`messages`] — send, history, read pointer, typing.
//! * [`users`] — sign-in from token claims, settings, presence, heartbeats,
//!   realtime connections and presence subscriptions.
//! * [`safety`] — rate limits, sanctions, automated abuse signals.
//! * [`moderation`] — blocks, reports, the admin queue, redaction, audit.
//! * [`attachments`] — files: signed uploads and downloads, the scan, clean copies.
//! * [`search`] — full-text search of the messages a user can see.
//! * [`housekeeping`] — the daily jobs: retention, auto-archive, clean-ups.
//! * [`platform`] — the host platform's server-to-server calls.
//! * [`threads`] — context threads: their members, system messages, opening one.
//! * [`privacy`] — erasure of a person's data (and, with it, their account).
//! * [`dispatch`] — the one route of every command to a conversation's actor,
//!   here or on the node that owns it.
//! * [`notifications`] — follow-up jobs and in-app notifications;
//!   [`email`] — notification emails for people who are away;
//!   [`push`] — web push for people whose app is not in the foreground.
//! * [`membership`] — what this node does for the others in a cluster;
//!   [`wire`] — what nodes send each other.

pub mod attachments;
pub mod conversations;
pub mod dispatch;
pub mod email;
pub mod housekeeping;
pub mod membership;
pub mod messages;
pub mod moderation;
pub mod notifications;
pub mod platform;
pub mod privacy;
pub mod push;
pub mod safety;
pub mod search;
pub mod threads;
pub mod users;
pub mod wire;

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use dashmap::DashMap;
use deadpool_postgres::Pool;
use ractor::{Actor, ActorRef};

use self::{dispatch::Dispatcher, safety::Safety};
use crate::{
    actors::{
        conversation::{ConversationDeps, Reply},
        supervisor::{
            ConversationDirectory, ConversationSupervisor, UserSupervisor, UserSupervisorMsg,
        },
        user::{UserDirectory, UserLimits, sweep_presence},
    },
    cluster::{
        Bus, LocalBus, limits,
        node::Node,
        presence::{LocalPresence, PresenceHub, PresenceStore, RedisPresence},
    },
    config::{MailSettings, RetentionSettings, Settings},
    domain::{ChatError, UserId, clock::Clock, event::ServerEvent},
    mail::Mailer,
    persistence::{
        self, batch::Batcher, conversations::UnreadCounts, group_commit::MessageWrites,
        users::Upserts,
    },
    push::Pusher,
};

/// How many users' claims each node remembers as already upserted.
const KNOWN_USERS_CAPACITY: usize = 100_000;

/// Handle to the application: one `Arc`, so the clone every request handler
/// and every realtime connection holds is a pointer, not a copy of each part.
#[derive(Clone)]
pub struct ChatCore(Arc<Core>);

/// What a [`ChatCore`] points to (its fields are the application's parts).
pub struct Core {
    pool: Pool,
    dispatcher: Dispatcher,
    users: UserDirectory,
    user_supervisor: ActorRef<UserSupervisorMsg>,
    call_timeout: Duration,
    next_connection_id: AtomicU64,
    presence: Arc<PresenceHub>,
    /// The bus, for events that come from no conversation (blocks, moderation).
    bus: Arc<dyn Bus>,
    safety: Safety,
    /// Roles that may only start conversations inside a registered context.
    require_context_for: Vec<String>,
    /// Most members of a context thread.
    max_thread_members: usize,
    /// Claims already upserted by this node (a fingerprint of each user's
    /// name, role and email, not a copy: it is kept for every connected user),
    /// so a user row is written on first sight or when the claims change, not
    /// on every request. Cleared when it reaches [`KNOWN_USERS_CAPACITY`],
    /// which bounds its memory.
    known_users: DashMap<UserId, u64>,
    /// Upserts users seen for the first time, batched across a burst of sign-ins.
    user_upserts: Batcher<Upserts>,
    /// The node's one presence timer (see `actors::user::sweep_presence`).
    presence_sweeper: tokio::task::AbortHandle,
    /// This node's membership of a cluster (`None`: a single node).
    cluster: Option<Arc<Node>>,
    /// Connect tickets waiting for their realtime connection.
    tickets: Arc<dyn crate::cluster::tickets::TicketStore>,
    /// Realtime connections one user may hold (across the cluster too).
    max_connections: usize,
    /// Where notification emails go, and the rules they follow.
    mailer: Mailer,
    mail_settings: MailSettings,
    /// Sends web push, signed with this server's VAPID key.
    pusher: Pusher,
    /// Slots of the batches whose pushes are going out (`chat::push`).
    push_batches: Arc<tokio::sync::Semaphore>,
    /// The blob store and scanner of attachments (`None`: attachments are off).
    attachments: Option<attachments::AttachmentParts>,
    /// How long records are kept, and when the daily jobs run.
    retention: RetentionSettings,
    /// Who this node is when it takes a daily job's lease.
    runner_id: String,
    /// The cluster's loops owned here (lease renewal).
    cluster_tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl std::ops::Deref for ChatCore {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.0
    }
}

/// A number that differs between runs of this node, so event ids from before a
/// restart are recognised as stale.
fn node_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// An actor answered a command with a reply of another kind: a bug.
fn unexpected(reply: Reply) -> ChatError {
    ChatError::internal(format!("unexpected actor reply {reply:?}"))
}

impl ChatCore {
    /// Starts the supervisors, and joins the cluster when Redis is
    /// configured (otherwise the bus is in-process).
    pub async fn start(
        pool: Pool,
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let call_timeout = settings.chat.actor_call_timeout;
        let users: UserDirectory = Arc::new(DashMap::new());
        let (cluster, pushes) = match &settings.cluster.redis_url {
            Some(url) => {
                let id = settings
                    .cluster
                    .node_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
                let (node, pushes) =
                    Node::join(&settings.cluster, url.expose(), &id, users.clone()).await?;
                tracing::info!(node = %id, prefix = %settings.cluster.redis_prefix, "joined the cluster");
                (Some(node), Some(pushes))
            }
            None => (None, None),
        };
        let bus: Arc<dyn Bus> = match &cluster {
            Some(node) => node.bus.clone(),
            None => LocalBus::new(users.clone()),
        };
        let store: Arc<dyn PresenceStore> = match &cluster {
            Some(node) => Arc::new(RedisPresence::new(
                node.link.clone(),
                settings.realtime.presence_timeout,
            )),
            None => Arc::new(LocalPresence::default()),
        };
        let presence = PresenceHub::new(store, users.clone());
        let safety = Safety::new(
            pool.clone(),
            clock,
            limits::from_config(&settings.limits, cluster.as_ref().map(|n| n.link.clone())),
            settings.chat.report_evidence_messages,
        );
        let conversations: ConversationDirectory = Arc::new(DashMap::new());
        let realtime = &settings.realtime;
        let deps = Arc::new(ConversationDeps {
            pool: pool.clone(),
            bus: bus.clone(),
            idle_timeout: settings.chat.actor_idle_timeout,
            typing_timeout: realtime.typing_timeout,
            typing_throttle: realtime.typing_throttle,
            writer: settings
                .chat
                .group_commit
                .then(|| Batcher::start(pool.clone(), MessageWrites)),
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
                unread: Batcher::start(pool.clone(), UnreadCounts),
                presence: presence.clone(),
                limits: UserLimits {
                    max_connections: realtime.max_connections_per_user,
                    presence_timeout: realtime.presence_timeout,
                    offline_grace: realtime.offline_grace,
                    replay_events: realtime.replay_events,
                    epoch: node_epoch(),
                },
                bus: bus.clone(),
            },
            (),
        )
        .await?;
        let presence_sweeper = sweep_presence(&users, realtime.presence_timeout).abort_handle();
        let chat = Self(Arc::new(Core {
            pool: pool.clone(),
            dispatcher: Dispatcher::new(
                conversations,
                conversation_supervisor,
                call_timeout,
                cluster.clone(),
            ),
            users,
            user_supervisor,
            call_timeout,
            next_connection_id: AtomicU64::new(1),
            presence,
            bus,
            safety,
            require_context_for: settings.chat.require_context_for.clone(),
            max_thread_members: settings.chat.max_thread_members,
            known_users: DashMap::new(),
            presence_sweeper,
            user_upserts: Batcher::start(pool, Upserts),
            tickets: crate::cluster::tickets::store(cluster.as_ref().map(|n| n.link.clone())),
            cluster: cluster.clone(),
            max_connections: realtime.max_connections_per_user,
            mailer: Mailer::from_settings(&settings.mail)?,
            mail_settings: settings.mail.clone(),
            pusher: Pusher::from_settings(&settings.push)?,
            push_batches: Arc::new(tokio::sync::Semaphore::new(push::BATCHES_IN_FLIGHT)),
            attachments: attachments::AttachmentParts::from_settings(settings)?,
            retention: settings.retention.clone(),
            runner_id: cluster.as_deref().map_or_else(
                || uuid::Uuid::now_v7().simple().to_string(),
                |node| node.id().to_owned(),
            ),
            cluster_tasks: std::sync::Mutex::new(Vec::new()),
        }));
        if let (Some(node), Some(pushes)) = (cluster, pushes) {
            node.start(pushes, Arc::new(chat.clone()));
            let renewal = membership::renew_leases(&chat, node).abort_handle();
            if let Ok(mut tasks) = chat.cluster_tasks.lock() {
                tasks.push(renewal);
            }
        }
        Ok(chat)
    }

    /// This node's id in the cluster (`None`: a single node).
    pub fn node_id(&self) -> Option<&str> {
        self.cluster.as_deref().map(Node::id)
    }

    /// Whether Redis answers and delivers (`None`: no Redis configured).
    pub fn cluster_ready(&self) -> Option<bool> {
        self.cluster.as_deref().map(Node::is_healthy)
    }

    /// Tells the other nodes of the cluster (nothing to do on a single node).
    async fn tell_cluster(&self, notice: &wire::Notice) {
        if let Some(node) = &self.cluster {
            match serde_json::to_vec(notice) {
                Ok(body) => node.broadcast(&body).await,
                Err(e) => tracing::warn!(error = %e, "could not encode a cluster notice"),
            }
        }
    }

    /// Number of live conversation actors and user actors on this node.
    pub fn live_actor_counts(&self) -> (usize, usize) {
        (self.dispatcher.live(), self.users.len())
    }

    /// Whether the conversation currently has a live actor on this node.
    pub fn is_live(&self, conversation: crate::domain::ConversationId) -> bool {
        self.dispatcher.is_live(conversation)
    }

    /// The database pool, for the job runners' outbox (`jobs`).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether the database answers (readiness).
    pub async fn database_ready(&self) -> bool {
        persistence::ping(&self.pool).await
    }

    /// Publishes an event that comes from no conversation actor.
    /// Who takes part in `conversation` (who hears of what changes in it).
    async fn participants_of(&self, conversation: uuid::Uuid) -> Result<Vec<UserId>, ChatError> {
        persistence::conversations::participant_ids(
            &persistence::client(&self.pool).await?,
            conversation,
        )
        .await
    }

    fn publish(&self, recipients: &[UserId], event: ServerEvent) {
        self.bus.publish(recipients, event.to_frame());
    }

    /// Stops every actor on shutdown: conversation actors first process the
    /// commands already in their mailboxes (bounded by `grace`).
    pub async fn stop(&self, grace: Duration) {
        self.dispatcher.stop(grace).await;
        if let Ok(mut tasks) = self.cluster_tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
        if let Some(node) = &self.cluster {
            node.stop().await;
        }
        self.presence_sweeper.abort();
        self.user_supervisor.stop_children(None);
        self.user_supervisor.stop(None);
    }
}

/// Page size from a `limit` parameter: the default when absent, 422 below 1,
/// capped at `max`.
fn page_limit(requested: Option<i64>, default: i64, max: i64) -> Result<i64, ChatError> {
    match requested {
        None => Ok(default),
        Some(n) if n >= 1 => Ok(n.min(max)),
        Some(_) => Err(ChatError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and {max}"),
        )),
    }
}
