//! `UserActor`: one per user with a realtime connection on this node (and for
//! a short grace period after the last one closes). It
//!
//! * holds the user's connections (WebSocket, SSE, long-poll), each a bounded
//!   queue drained by that connection's writer, and fans every event out to
//!   all of them. A connection whose queue is full is a slow consumer: its
//!   sender is dropped, the writer closes it with a "resync" reason, and the
//!   client catches up over REST. Nothing here ever waits on a socket;
//! * numbers every event it fans out and keeps the last few in a ring, so an
//!   SSE or long-poll client that reconnects with the last id it saw resumes
//!   without a gap (or is told to resync when the gap is too old);
//! * decides the user's presence from its connections' heartbeats: online if
//!   any fresh connection is in the foreground, away if all fresh ones are
//!   hidden, offline when none is left after the grace period, when the
//!   actor also retires (stops itself; its supervisor forgets it);
//! * keeps the unread count per conversation to put the badge total
//!   (`totalUnread`) on every `conversation.updated`: loaded from Postgres at
//!   start, then overwritten by the absolute values each [`UnreadUpdate`]
//!   carries (an update that arrives while the load is in flight is newer than
//!   the load, so it wins).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use crate::{
    cluster::{
        LocalSink,
        presence::{ConnectionId, PresenceHub},
    },
    domain::{
        ChatError, UserId,
        event::{ServerEvent, SharedFrame, UnreadUpdate},
        model::PresenceStatus,
    },
    persistence::{batch::Batcher, conversations::UnreadCounts},
};

/// This node's user actors, by user. Written only by the user supervisor
/// (which serialises get-or-spawn); read by the bus on every event.
pub type UserDirectory = Arc<DashMap<UserId, ActorRef<UserMsg>>>;

/// One timer for every user actor on this node: every `presence_timeout / 3`
/// it tells each of them to re-check its connections' heartbeats, so an idle
/// user holds no timer task of its own. Ends when the directory is dropped;
/// the application aborts it on shutdown.
pub fn sweep_presence(
    directory: &UserDirectory,
    presence_timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    let directory = Arc::downgrade(directory);
    let every = (presence_timeout / 3).clamp(Duration::from_millis(20), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(directory) = directory.upgrade() else {
                return;
            };
            for user in directory.iter() {
                let _ = user.value().send_message(UserMsg::PresenceTick);
            }
        }
    })
}

/// The bus delivers to this node's users through their actors.
impl LocalSink for DashMap<UserId, ActorRef<UserMsg>> {
    fn deliver(&self, user: &UserId, frame: SharedFrame) {
        if let Some(actor) = self.get(user) {
            // A send error means the actor is retiring: it has no sockets left.
            let _ = actor.send_message(UserMsg::Deliver(frame));
        }
    }

    fn deliver_unread(&self, user: &UserId, update: UnreadUpdate) {
        if let Some(actor) = self.get(user) {
            let _ = actor.send_message(UserMsg::Unread(update));
        }
    }

    fn holds(&self, user: &UserId) -> bool {
        self.contains_key(user)
    }

    fn deliver_to_all(&self, frame: SharedFrame) {
        for actor in self.iter() {
            let _ = actor.value().send_message(UserMsg::Deliver(frame.clone()));
        }
    }
}

/// Position of an event in a user's stream on this node: the node's epoch
/// (new at every start) and a counter. Text form `<epoch>-<n>` (SSE `id:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventId {
    pub epoch: u64,
    pub n: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.n)
    }
}

impl EventId {
    pub fn parse(raw: &str) -> Option<Self> {
        let (epoch, n) = raw.trim().split_once('-')?;
        Some(Self {
            epoch: epoch.parse().ok()?,
            n: n.parse().ok()?,
        })
    }
}

/// A frame on its way to one connection; `id` is set for events of the
/// user's stream and absent for answers to that connection's own requests.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub id: Option<EventId>,
    pub frame: SharedFrame,
}

/// A connection's registration: the actor to detach from, and the id of the
/// newest event of the user's stream when it attached (where a long-poll
/// client resumes from if nothing arrives).
pub struct Attached {
    pub actor: ActorRef<UserMsg>,
    pub head: EventId,
}

/// The sending half of a connection's bounded outbound queue.
pub type Outbound = flume::Sender<Outgoing>;

/// A sending half that does not keep the queue open (a connection's answers
/// to its own frames: when the user actor drops its sender, the queue closes).
pub type WeakOutbound = flume::WeakSender<Outgoing>;

/// The receiving half, drained by the connection's writer.
pub struct OutboundFrames(flume::Receiver<Outgoing>);

impl OutboundFrames {
    /// The next frame; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        self.0.recv_async().await.ok()
    }

    /// The next frame if one is waiting.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        self.0.try_recv().ok()
    }
}

/// A connection's outbound queue, holding at most `capacity` frames. Its
/// storage grows with use (flume keeps a `VecDeque`), so an idle connection's
/// queue holds no slots — a tokio channel allocates a block of 32 up front.
pub fn outbound_queue(capacity: usize) -> (Outbound, OutboundFrames) {
    let (outbound, frames) = flume::bounded(capacity);
    (outbound, OutboundFrames(frames))
}

pub enum UserMsg {
    /// Fan an event out to every connection.
    Deliver(SharedFrame),
    /// The user's unread state in one conversation changed.
    Unread(UnreadUpdate),
    /// The initial per-conversation unread counts, loaded after start.
    UnreadLoaded(Vec<(Uuid, i64)>),
    /// A new connection of this user; answered with this actor, or refused
    /// when the user already has the maximum number of connections. With
    /// `resume_after`, the events after that id are replayed into it first.
    Attach {
        id: ConnectionId,
        outbound: Outbound,
        resume_after: Option<EventId>,
        reply: RpcReplyPort<Result<Attached, ChatError>>,
    },
    /// A connection closed.
    Detach(ConnectionId),
    /// Close every connection (the user's account was erased).
    DisconnectAll,
    /// A presence heartbeat: of one connection, or (`None`, the REST
    /// fallback) of all of them; `away` when the client's tab is hidden.
    Heartbeat {
        connection: Option<ConnectionId>,
        away: bool,
    },
    /// Periodic, from the node's one presence sweeper ([`sweep_presence`]):
    /// expire connections whose heartbeats stopped.
    PresenceTick,
    /// The grace period after the last connection closed has passed.
    GraceOver,
}

/// What a user actor is started with.
pub struct UserArgs {
    pub user: UserId,
    /// Where the initial unread counts are loaded (batched across users).
    pub unread: Batcher<UnreadCounts>,
    pub presence: Arc<PresenceHub>,
    pub limits: UserLimits,
}

/// The bounds every user actor applies.
#[derive(Clone, Copy, Debug)]
pub struct UserLimits {
    /// Most simultaneous connections of one user on this node.
    pub max_connections: usize,
    /// A connection with no heartbeat for this long no longer counts for presence.
    pub presence_timeout: Duration,
    /// After the last connection closes, the user stays online (and their
    /// recent events stay replayable) this long.
    pub offline_grace: Duration,
    /// How many recent events are kept for replay.
    pub replay_events: usize,
    /// This node's event-id epoch.
    pub epoch: u64,
}

pub struct UserActor;

struct Connection {
    id: ConnectionId,
    outbound: Outbound,
    away: bool,
    last_heartbeat: Instant,
}

pub struct UserState {
    user: UserId,
    limits: UserLimits,
    presence: Arc<PresenceHub>,
    connections: Vec<Connection>,
    /// When the last connection closed (the grace period runs from here).
    empty_since: Option<Instant>,
    status: PresenceStatus,
    /// Recent events, oldest first, for replay.
    recent: VecDeque<(u64, SharedFrame)>,
    next_event: u64,
    /// Unread count per conversation, non-zero entries only.
    unread: HashMap<Uuid, i64>,
    /// Conversations updated before the initial load arrived (`None` once loaded).
    updated_before_load: Option<HashSet<Uuid>>,
}

impl UserState {
    /// Numbers `frame`, keeps it for replay, and sends it to every connection,
    /// dropping those that cannot keep up.
    fn fan_out(&mut self, myself: &ActorRef<UserMsg>, frame: SharedFrame) {
        let n = self.next_event;
        self.next_event += 1;
        if self.recent.len() == self.limits.replay_events {
            self.recent.pop_front();
        }
        self.recent.push_back((n, frame.clone()));
        let outgoing = Outgoing {
            id: Some(EventId {
                epoch: self.limits.epoch,
                n,
            }),
            frame,
        };
        let before = self.connections.len();
        self.connections
            .retain(|c| match c.outbound.try_send(outgoing.clone()) {
                Ok(()) => true,
                Err(flume::TrySendError::Full(_)) => {
                    metrics::counter!("parley_ws_slow_consumer_closes_total").increment(1);
                    false
                }
                Err(flume::TrySendError::Disconnected(_)) => false,
            });
        if self.connections.len() != before {
            self.connections_changed(myself);
        }
    }

    /// Replays the events after `after` into a new connection, or tells it to
    /// resync when they are no longer all here.
    fn replay(&self, outbound: &Outbound, after: EventId) -> bool {
        let oldest = self.recent.front().map_or(self.next_event, |(n, _)| *n);
        let complete =
            after.epoch == self.limits.epoch && after.n + 1 >= oldest && after.n < self.next_event;
        if !complete {
            metrics::counter!("parley_resync_requests_total", "kind" => "replay_gap").increment(1);
            let notice = ServerEvent::resync_required(
                "some events are no longer available; call GET /chat/sync",
            );
            let id = EventId {
                epoch: self.limits.epoch,
                n: self.next_event.saturating_sub(1),
            };
            return outbound
                .try_send(Outgoing {
                    id: Some(id),
                    frame: notice.to_frame(),
                })
                .is_ok();
        }
        self.recent
            .iter()
            .filter(|(n, _)| *n > after.n)
            .all(|(n, frame)| {
                outbound
                    .try_send(Outgoing {
                        id: Some(EventId {
                            epoch: self.limits.epoch,
                            n: *n,
                        }),
                        frame: frame.clone(),
                    })
                    .is_ok()
            })
    }

    fn attached(&self, actor: ActorRef<UserMsg>) -> Attached {
        Attached {
            actor,
            head: EventId {
                epoch: self.limits.epoch,
                n: self.next_event - 1,
            },
        }
    }

    fn apply_unread(&mut self, update: UnreadUpdate) -> SharedFrame {
        if let Some(early) = &mut self.updated_before_load {
            early.insert(update.conversation_id);
        }
        if update.unread_count > 0 && update.in_badge {
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
            removed: update.removed,
        }
        .to_frame()
    }

    /// Presence as the connections say it now.
    fn current_status(&self) -> PresenceStatus {
        let fresh: Vec<&Connection> = self
            .connections
            .iter()
            .filter(|c| c.last_heartbeat.elapsed() <= self.limits.presence_timeout)
            .collect();
        if fresh.iter().any(|c| !c.away) {
            PresenceStatus::Online
        } else if !fresh.is_empty() {
            PresenceStatus::Away
        } else {
            PresenceStatus::Offline
        }
    }

    /// Publishes a change of presence, if there is one. Going offline waits
    /// for the grace period when the last connection just closed.
    fn refresh_presence(&mut self, allow_offline: bool) {
        let status = self.current_status();
        if status == PresenceStatus::Offline && !allow_offline && self.connections.is_empty() {
            return;
        }
        if status != self.status {
            self.status = status;
            self.presence.changed(&self.user, status);
        } else if status != PresenceStatus::Offline {
            self.presence.touch(&self.user, status);
        }
    }

    fn connections_changed(&mut self, myself: &ActorRef<UserMsg>) {
        self.refresh_presence(false);
        if self.connections.is_empty() {
            self.empty_since = Some(Instant::now());
            myself.send_after(self.limits.offline_grace, || UserMsg::GraceOver);
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
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Loaded with other connecting users' counts, off the actor's handler,
        // so neither the start nor the supervisor waits on it.
        let loading_for = args.user.clone();
        args.unread.submit_then(args.user.clone(), move |loaded| match loaded {
            Ok(counts) => {
                let _ = myself.send_message(UserMsg::UnreadLoaded(counts));
            }
            Err(e) => {
                tracing::warn!(user = %loading_for, error = %e.chain(), "could not load unread counts")
            }
        });
        Ok(UserState {
            user: args.user,
            limits: args.limits,
            presence: args.presence,
            connections: Vec::new(),
            empty_since: None,
            status: PresenceStatus::Offline,
            // Grows with use: most users never need the replay ring.
            recent: VecDeque::new(),
            next_event: 1,
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
            UserMsg::Deliver(frame) => state.fan_out(&myself, frame),
            UserMsg::Unread(update) => {
                let frame = state.apply_unread(update);
                state.fan_out(&myself, frame);
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
                resume_after,
                reply,
            } => {
                if state.connections.len() >= state.limits.max_connections {
                    metrics::counter!("parley_ws_disconnects_total", "reason" => "too_many_connections").increment(1);
                    let _ = reply.send(Err(ChatError::too_many_connections(
                        state.limits.max_connections,
                    )));
                    return Ok(());
                }
                if let Some(after) = resume_after
                    && !state.replay(&outbound, after)
                {
                    // The backlog does not fit the queue: dropping it closes the
                    // connection, and the client resyncs.
                    drop(outbound);
                    let _ = reply.send(Ok(state.attached(myself)));
                    return Ok(());
                }
                state.empty_since = None;
                // Most users hold one connection: grow one at a time.
                state.connections.reserve_exact(1);
                state.connections.push(Connection {
                    id,
                    outbound,
                    away: false,
                    last_heartbeat: Instant::now(),
                });
                state.refresh_presence(false);
                let _ = reply.send(Ok(state.attached(myself)));
            }
            UserMsg::Detach(id) => {
                state.connections.retain(|c| c.id != id);
                state.connections_changed(&myself);
            }
            UserMsg::DisconnectAll => {
                // Dropping each queue's sender closes its connection.
                state.connections.clear();
                state.connections_changed(&myself);
            }
            UserMsg::Heartbeat { connection, away } => {
                for c in &mut state.connections {
                    if connection.is_none_or(|id| id == c.id) {
                        c.away = away;
                        c.last_heartbeat = Instant::now();
                    }
                }
                state.refresh_presence(false);
            }
            UserMsg::PresenceTick => state.refresh_presence(false),
            UserMsg::GraceOver => {
                let over = state
                    .empty_since
                    .is_some_and(|since| since.elapsed() >= state.limits.offline_grace);
                if state.connections.is_empty() && over {
                    state.refresh_presence(true);
                    myself.stop(Some("no connections".into()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip() {
        let id = EventId { epoch: 77, n: 12 };
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        assert_eq!(EventId::parse("garbage"), None);
        assert_eq!(EventId::parse("1-x"), None);
    }
}
