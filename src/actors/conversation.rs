//! `ConversationActor`: one per live conversation on this node. It serialises
//! every send, read and typing signal of its conversation: validates against
//! its state, assigns the next `seq`, writes through to Postgres, replies, and
//! only then publishes events. Typing is relayed, throttled and expired here
//! and never persisted.
//!
//! It owns no truth: it is rebuilt from Postgres whenever it is spawned (in
//! `post_start`, so the supervisor that spawns it never waits on the
//! database; commands that arrive meanwhile wait in its mailbox), passivates
//! itself after an idle period, and a stale view (a `seq` already taken by
//! another writer) makes it fail on purpose so that the supervisor drops it
//! and the next use rebuilds it. An id that names no conversation gets an
//! actor that answers `not_found` and retires after [`MISSING_LINGER`].
//!
//! A context thread (`group`) is served by the same actor: its member list
//! changes here too (with the system messages that say so, at the next
//! `seq`s), it has no message requests, and a block between two members
//! hides the blocked member from the blocker only instead of stopping sends.
//!
//! Commands arrive as [`Command`]s through the application layer's one
//! dispatch (`chat::dispatch`); the timers are the actor's own messages.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::{
    cluster::Bus,
    domain::{
        ChatError, ConversationId, UserId,
        attachments::Attachment,
        event::{ServerEvent, UnreadUpdate},
        model::{Message, MessageKind, MessageLinks, ReadState, RequestChange, RequestState},
        text,
        thread::{MembershipChange, SystemEvent, ThreadMember},
    },
    persistence::{
        conversations::{self, ParticipantSnapshot},
        group_commit::GroupCommitter,
        messages::{self, InsertOutcome, NewMessage},
        threads::{self, SystemMessage, ThreadWrite},
    },
};

/// How long an actor for an id that names no conversation stays, answering
/// `not_found`, before it retires.
pub const MISSING_LINGER: Duration = Duration::from_secs(1);

/// What every conversation actor shares: the pool, the bus and its limits.
pub struct ConversationDeps {
    pub pool: Pool,
    pub bus: Arc<dyn Bus>,
    /// Passivate after this long without a command.
    pub idle_timeout: Duration,
    /// A typist who sends no refresh for this long has stopped.
    pub typing_timeout: Duration,
    /// At most one relayed `typing.started` per user per this interval.
    pub typing_throttle: Duration,
    /// Shares commits between conversations (`None`: each send commits alone).
    pub writer: Option<GroupCommitter>,
}

/// A validated send: the body is already sanitised, the client id checked,
/// the attachments checked to be the sender's own, in this conversation and
/// not sent before.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SendCommand {
    pub sender: UserId,
    pub body: String,
    pub client_message_id: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// The stored message, and whether this call created it (false: an
/// idempotent repeat of an earlier send with the same `clientMessageId`).
#[derive(Debug, Serialize, Deserialize)]
pub struct SendOutcome {
    pub message: Message,
    pub created: bool,
    /// This message opened a message request.
    pub opened_request: bool,
    /// This message (a reply) accepted a request made to its sender.
    pub accepted_request: bool,
}

/// A command for one conversation: what the application layer asks of the
/// conversation's actor, wherever it runs (plain data: it travels to the
/// owner node as JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    Send(SendCommand),
    /// Move `user`'s read pointer forward to `seq`.
    MarkRead {
        user: UserId,
        seq: i64,
    },
    /// A participant started (or refreshed) or stopped typing. Throttled
    /// repeats and signals across a block are dropped silently; a
    /// non-participant gets `not_found`.
    Typing {
        user: UserId,
        started: bool,
    },
    /// `user` accepts (true) or declines a message request.
    Respond {
        user: UserId,
        accept: bool,
    },
    /// `blocker` blocked (or stopped blocking) `blocked`, both participants.
    SetBlock {
        blocker: UserId,
        blocked: UserId,
        blocking: bool,
    },
    /// The platform set a thread's members (with their display names, for
    /// the system messages): who is new joins, who is missing leaves.
    SetMembers {
        members: Vec<ThreadMember>,
        names: HashMap<UserId, String>,
    },
    /// The platform posts a system message about its context (`event`: its
    /// kind, e.g. `booking.confirmed`); idempotent by `client_message_id`.
    PostSystem {
        event: String,
        body: String,
        client_message_id: String,
    },
    /// `user` archived or unarchived the conversation (it leaves or rejoins
    /// their badge); `auto`: archived for being idle, until the next message.
    SetArchived {
        user: UserId,
        archived: bool,
        auto: bool,
    },
}

impl Command {
    /// Whether the command is worth starting an actor for. The others only
    /// update a live actor's view; a new actor reads them from the database.
    pub fn needs_actor(&self) -> bool {
        !matches!(self, Self::SetBlock { .. } | Self::SetArchived { .. })
    }
}

/// The answer to a [`Command`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Sent(SendOutcome),
    Read(ReadState),
    /// The request was answered; with the other participants (the requester).
    Responded(Vec<UserId>),
    /// Typing, block and archive changes: applied (or dropped, for typing).
    Done,
    /// A thread's members were set: the system messages that say what
    /// changed (none when nothing did).
    Members(Vec<Message>),
}

/// Where a command's answer goes (`None`: nobody waits for it).
pub type ReplyTo = Option<RpcReplyPort<Result<Reply, ChatError>>>;

pub enum ConversationMsg {
    Command(Command, ReplyTo),
    /// The typing timeout of `user`'s start number `generation` ran out.
    TypingExpired {
        user: UserId,
        generation: u64,
    },
    /// Periodic tick: stop if idle for longer than the configured timeout.
    IdleCheck,
}

pub struct ConversationActor {
    pub deps: Arc<ConversationDeps>,
}

pub struct ConversationState {
    id: ConversationId,
    last_used: Instant,
    /// The conversation as loaded in `post_start`; `None` when the id names
    /// no conversation.
    live: Option<Live>,
}

/// The live view of an existing conversation.
pub struct Live {
    id: ConversationId,
    /// The owner epoch this actor took when it loaded (see `take_over`).
    owner_epoch: i64,
    last_seq: i64,
    participants: Vec<ParticipantSnapshot>,
    /// Registered as pre-accepted by its context: never a message request.
    pre_accepted: bool,
    /// A context thread: no requests, blocks hide rather than stop.
    group: bool,
    /// Blocks between participants, as (blocker, blocked). In a direct
    /// conversation any block refuses sends (`not_delivered`) and stops
    /// typing both ways; in a thread the blocker stops hearing the blocked
    /// member (receipts and presence are filtered in SQL).
    blocks: Vec<(UserId, UserId)>,
    /// Who is typing now, with the generation of their latest start (so an
    /// expiry timer from an older start does nothing).
    typing: HashMap<UserId, u64>,
    /// When each user's last `typing.started` was relayed (the throttle).
    last_typing_relay: HashMap<UserId, Instant>,
    typing_generation: u64,
}

impl Live {
    fn participant_mut(&mut self, user: &UserId) -> Option<&mut ParticipantSnapshot> {
        self.participants.iter_mut().find(|p| &p.user_id == user)
    }

    fn participant_ids(&self) -> Vec<UserId> {
        self.participants
            .iter()
            .map(|p| p.user_id.clone())
            .collect()
    }

    fn others(&self, user: &UserId) -> Vec<UserId> {
        self.participants
            .iter()
            .filter(|p| &p.user_id != user)
            .map(|p| p.user_id.clone())
            .collect()
    }

    fn blocks(&self, blocker: &UserId, blocked: &UserId) -> bool {
        self.blocks
            .iter()
            .any(|(by, of)| by == blocker && of == blocked)
    }

    /// A new message (the write un-archives what was archived for being
    /// idle) brings idle-archived conversations back to their inboxes.
    fn bring_back_idle_archived(&mut self) {
        for p in &mut self.participants {
            if p.auto_archived {
                p.archived = false;
                p.auto_archived = false;
            }
        }
    }

    /// A direct conversation with a block in either direction.
    fn direct_blocked(&self) -> bool {
        !self.group && !self.blocks.is_empty()
    }

    /// Who hears what `author` says or does: everyone, except in a thread
    /// the members who block the author.
    fn audience_of(&self, author: &UserId) -> Vec<UserId> {
        self.participants
            .iter()
            .filter(|p| !self.blocks(&p.user_id, author))
            .map(|p| p.user_id.clone())
            .collect()
    }

    /// [`Self::audience_of`] without the author.
    fn others_hearing(&self, author: &UserId) -> Vec<UserId> {
        let mut audience = self.audience_of(author);
        audience.retain(|u| u != author);
        audience
    }

    fn unread_update(&self, p: &ParticipantSnapshot) -> UnreadUpdate {
        UnreadUpdate {
            conversation_id: self.id.0,
            unread_count: p.unread_count,
            last_read_seq: p.last_read_seq,
            in_badge: !p.archived,
            removed: false,
        }
    }
}

/// Whether the actor must die after answering: its view of the database is
/// stale, or another actor (here or on another node) took the conversation over.
struct StaleView;

/// The failure that makes the supervisor drop a stale actor.
fn stale_view(state: &Live) -> ActorProcessingErr {
    Box::new(ChatError::internal(format!(
        "conversation {} view is stale; rebuilding from the database",
        state.id
    )))
}

impl ConversationActor {
    async fn send(
        &self,
        state: &mut Live,
        cmd: &SendCommand,
    ) -> (Result<SendOutcome, ChatError>, Option<StaleView>) {
        if state.participant_mut(&cmd.sender).is_none() {
            return (Err(ChatError::conversation_not_found()), None);
        }
        if state.direct_blocked() {
            return (Err(ChatError::not_delivered()), None);
        }
        let others: Vec<&ParticipantSnapshot> = state
            .participants
            .iter()
            .filter(|p| p.user_id != cmd.sender)
            .collect();
        if others
            .iter()
            .any(|p| p.request_state == RequestState::Declined)
        {
            return (
                Err(ChatError::forbidden(
                    "request_declined",
                    "Your message request was declined.",
                )),
                None,
            );
        }
        if others
            .iter()
            .any(|p| p.request_state == RequestState::Pending)
        {
            // (The retry of the one message allowed gets its original from
            // `ChatCore::send`, which looks it up on any refusal.)
            return (
                Err(ChatError::forbidden(
                    "request_pending",
                    "Your message request has not been accepted yet; you can send one message until it is.",
                )),
                None,
            );
        }
        let opens_request = match self.opens_request(state, &cmd.sender, &others).await {
            Ok(opens) => opens,
            Err(e) => return (Err(e), None),
        };
        let sender_state = state
            .participants
            .iter()
            .find(|p| p.user_id == cmd.sender)
            .map_or(RequestState::None, |p| p.request_state);
        let request_change = RequestChange::of_message(sender_state, opens_request);
        let urls = text::find_links(&cmd.body);
        let links = (!urls.is_empty()).then_some(MessageLinks {
            urls,
            live: !opens_request,
        });
        let seq = state.last_seq + 1;
        let new = NewMessage {
            conversation: state.id,
            owner_epoch: state.owner_epoch,
            seq,
            sender: cmd.sender.clone(),
            kind: MessageKind::carrying(&cmd.attachments),
            body: cmd.body.clone(),
            client_message_id: cmd.client_message_id.clone(),
            links,
            request_change,
            attachments: cmd.attachments.clone(),
        };
        let written = match &self.deps.writer {
            Some(writer) => writer.submit(new).await,
            None => messages::insert(&self.deps.pool, new).await,
        };
        match written {
            Ok(InsertOutcome::Inserted(message)) => {
                state.last_seq = seq;
                // Members who block the sender do not count the message (the write agrees).
                let hidden: Vec<UserId> = state
                    .participants
                    .iter()
                    .filter(|p| state.blocks(&p.user_id, &cmd.sender))
                    .map(|p| p.user_id.clone())
                    .collect();
                state.bring_back_idle_archived();
                for p in &mut state.participants {
                    let change = if p.user_id == cmd.sender {
                        p.last_read_seq = seq;
                        p.unread_count = 0;
                        p.last_read_at = Some(message.created_at);
                        request_change.sender
                    } else {
                        if !hidden.contains(&p.user_id) {
                            p.unread_count += 1;
                        }
                        request_change.recipients
                    };
                    p.request_state = change.unwrap_or(p.request_state);
                }
                let outcome = SendOutcome {
                    message: *message,
                    created: true,
                    opened_request: opens_request,
                    accepted_request: request_change.accepts(),
                };
                (Ok(outcome), None)
            }
            Ok(other) => {
                self.not_inserted(state, other, &cmd.sender, &cmd.client_message_id)
                    .await
            }
            Err(e) => (Err(e), None),
        }
    }

    /// The answer to a write that stored nothing: the earlier message for a
    /// repeated `clientMessageId`, or a stale view.
    async fn not_inserted(
        &self,
        state: &Live,
        outcome: InsertOutcome,
        sender: &UserId,
        client_message_id: &str,
    ) -> (Result<SendOutcome, ChatError>, Option<StaleView>) {
        match outcome {
            InsertOutcome::Inserted(message) => (
                Ok(SendOutcome {
                    message: *message,
                    created: true,
                    opened_request: false,
                    accepted_request: false,
                }),
                None,
            ),
            InsertOutcome::DuplicateClientId => {
                let earlier =
                    messages::find_by_client_id(&self.deps.pool, sender, client_message_id).await;
                let outcome = match earlier {
                    Ok(Some(message)) if message.conversation_id == state.id.0 => Ok(SendOutcome {
                        message,
                        created: false,
                        opened_request: false,
                        accepted_request: false,
                    }),
                    Ok(Some(_)) => Err(ChatError::client_message_id_reused()),
                    // Rows are never deleted, so this cannot happen; treat it as transient.
                    Ok(None) => Err(ChatError::unavailable("duplicate client id vanished")),
                    Err(e) => Err(e),
                };
                (outcome, None)
            }
            InsertOutcome::SeqTaken => (
                Err(ChatError::unavailable(format!(
                    "seq {} of {} already taken",
                    state.last_seq + 1,
                    state.id
                ))),
                Some(StaleView),
            ),
            InsertOutcome::FencedOut => {
                metrics::counter!("parley_actor_fenced_out_total").increment(1);
                (Err(ChatError::conversation_moved()), Some(StaleView))
            }
        }
    }

    /// Whether a message from `sender` now opens a message request: it is the
    /// first message, the context did not pre-accept the pair, and the two do
    /// not already talk in another conversation.
    async fn opens_request(
        &self,
        state: &Live,
        sender: &UserId,
        others: &[&ParticipantSnapshot],
    ) -> Result<bool, ChatError> {
        if state.group
            || state.last_seq > 0
            || state.pre_accepted
            || others.iter().any(|p| p.request_state != RequestState::None)
        {
            return Ok(false);
        }
        for other in others {
            if !conversations::connected(&self.deps.pool, sender, &other.user_id, state.id).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Accepts or declines the request made to `user`.
    async fn respond(
        &self,
        state: &mut Live,
        user: &UserId,
        accept: bool,
    ) -> Result<Vec<UserId>, ChatError> {
        let id = state.id;
        let participant = state
            .participant_mut(user)
            .ok_or_else(ChatError::conversation_not_found)?;
        let allowed = match participant.request_state {
            RequestState::Pending => true,
            RequestState::Declined => accept,
            RequestState::None | RequestState::Accepted => false,
        };
        if !allowed {
            return Err(ChatError::Conflict {
                code: "no_pending_request",
                message: "there is no message request to answer here".into(),
            });
        }
        let new_state = if accept {
            RequestState::Accepted
        } else {
            RequestState::Declined
        };
        conversations::set_request_state(&self.deps.pool, id, user, new_state).await?;
        participant.request_state = new_state;
        let event = if accept {
            ServerEvent::ConversationAccepted {
                conversation_id: id.0,
                user_id: user.to_string(),
            }
        } else {
            ServerEvent::ConversationDeclined {
                conversation_id: id.0,
                user_id: user.to_string(),
            }
        };
        self.deps
            .bus
            .publish(&state.participant_ids(), event.to_frame());
        Ok(state.others(user))
    }

    /// Publishes what a stored message changed: the message to everyone, a
    /// request opened or accepted by it, each recipient's new unread state,
    /// and the end of the sender's typing.
    fn publish_sent(
        &self,
        state: &mut Live,
        outcome: &SendOutcome,
        sender: &UserId,
        sender_had_unread: bool,
    ) {
        let bus = &self.deps.bus;
        let everyone = state.participant_ids();
        bus.publish(
            &state.audience_of(sender),
            ServerEvent::MessageCreated(outcome.message.clone()).to_frame(),
        );
        if outcome.opened_request {
            let requested = ServerEvent::ConversationRequested {
                conversation_id: state.id.0,
                from_user_id: sender.to_string(),
            };
            bus.publish(&state.others(sender), requested.to_frame());
        }
        if outcome.accepted_request {
            let accepted = ServerEvent::ConversationAccepted {
                conversation_id: state.id.0,
                user_id: sender.to_string(),
            };
            bus.publish(&everyone, accepted.to_frame());
        }
        for p in &state.participants {
            let changed = if &p.user_id == sender {
                sender_had_unread
            } else {
                !state.blocks(&p.user_id, sender)
            };
            if changed {
                bus.publish_unread(&p.user_id, state.unread_update(p));
            }
        }
        self.stop_typing(state, sender);
    }

    async fn mark_read(
        &self,
        state: &mut Live,
        user: &UserId,
        seq: i64,
    ) -> Result<(ReadState, Option<Vec<UserId>>), ChatError> {
        let conversation_id = state.id;
        let last_seq = state.last_seq;
        let participant = state
            .participant_mut(user)
            .ok_or_else(ChatError::conversation_not_found)?;
        let target = seq.min(last_seq);
        let current = |p: &ParticipantSnapshot| ReadState {
            conversation_id: conversation_id.0,
            user_id: p.user_id.to_string(),
            last_read_seq: p.last_read_seq,
            unread_count: p.unread_count,
            last_read_at: p.last_read_at,
        };
        if target <= participant.last_read_seq {
            return Ok((current(participant), None));
        }
        let pointer = messages::mark_read(&self.deps.pool, conversation_id, user, target).await?;
        participant.last_read_seq = pointer.last_read_seq;
        participant.unread_count = pointer.unread_count;
        participant.last_read_at = pointer.last_read_at;
        Ok((current(participant), Some(pointer.receipt_recipients)))
    }

    fn typing(
        &self,
        myself: &ActorRef<ConversationMsg>,
        state: &mut Live,
        user: UserId,
        started: bool,
    ) -> Result<(), ChatError> {
        if !state.participants.iter().any(|p| p.user_id == user) {
            return Err(ChatError::conversation_not_found());
        }
        if state.direct_blocked() {
            return Ok(());
        }
        if !started {
            self.stop_typing(state, &user);
            return Ok(());
        }
        state.typing_generation += 1;
        let generation = state.typing_generation;
        state.typing.insert(user.clone(), generation);
        let expiring = user.clone();
        myself.send_after(self.deps.typing_timeout, move || {
            ConversationMsg::TypingExpired {
                user: expiring,
                generation,
            }
        });
        let throttled = state
            .last_typing_relay
            .get(&user)
            .is_some_and(|at| at.elapsed() < self.deps.typing_throttle);
        if throttled {
            return Ok(());
        }
        state.last_typing_relay.insert(user.clone(), Instant::now());
        metrics::counter!("parley_typing_relays_total", "state" => "started").increment(1);
        let event = ServerEvent::TypingStarted {
            conversation_id: state.id.0,
            user_id: user.to_string(),
        };
        self.deps
            .bus
            .publish(&state.others_hearing(&user), event.to_frame());
        Ok(())
    }

    fn stop_typing(&self, state: &mut Live, user: &UserId) {
        if state.typing.remove(user).is_none() {
            return;
        }
        // The next start after a stop is news, whatever the throttle says.
        state.last_typing_relay.remove(user);
        metrics::counter!("parley_typing_relays_total", "state" => "stopped").increment(1);
        let event = ServerEvent::TypingStopped {
            conversation_id: state.id.0,
            user_id: user.to_string(),
        };
        self.deps
            .bus
            .publish(&state.others_hearing(user), event.to_frame());
    }
}

impl ConversationActor {
    /// Sets a thread's members: writes who joins and leaves with a system
    /// message each, at the next `seq`s, in one transaction, then updates
    /// this view (and reloads the blocks, which new members may bring).
    async fn set_members(
        &self,
        state: &mut Live,
        members: &[ThreadMember],
        names: &HashMap<UserId, String>,
    ) -> (Result<Vec<Message>, ChatError>, Option<StaleView>) {
        if !state.group {
            return (
                Err(ChatError::invalid(
                    "not_a_thread",
                    "only a context thread has members set by the platform",
                )),
                None,
            );
        }
        let current: Vec<(UserId, Option<String>)> = state
            .participants
            .iter()
            .map(|p| (p.user_id.clone(), p.thread_role.clone()))
            .collect();
        let change = MembershipChange::between(&current, members);
        if change.is_empty() {
            return (Ok(Vec::new()), None);
        }
        let name_of = |user: &UserId| names.get(user).cloned().unwrap_or_else(|| user.to_string());
        let said = change
            .joined
            .iter()
            .map(|m| SystemEvent::joined(m, &name_of(&m.user_id)))
            .chain(
                change
                    .left
                    .iter()
                    .map(|u| SystemEvent::left(u, &name_of(u))),
            );
        let system: Vec<SystemMessage> = said
            .zip(state.last_seq + 1..)
            .map(|((event, body), seq)| SystemMessage {
                seq,
                body,
                client_message_id: format!("{}:{seq}", state.id),
                event,
            })
            .collect();
        let join_seqs: Vec<i64> = system[..change.joined.len()]
            .iter()
            .map(|m| m.seq)
            .collect();
        let write = ThreadWrite {
            conversation: state.id,
            owner_epoch: state.owner_epoch,
            change: &change,
            join_seqs: &join_seqs,
            messages: &system,
        };
        let (outcome, stored) = match threads::write(&self.deps.pool, &write).await {
            Ok(written) => written,
            Err(e) => return (Err(e), None),
        };
        // A change of roles alone says nothing: committed, with no message
        // to show for it (the write reports that as nothing inserted).
        let roles_only = system.is_empty() && matches!(outcome, InsertOutcome::DuplicateClientId);
        if !roles_only && !matches!(outcome, InsertOutcome::Inserted(_)) {
            // Membership messages are named `conversation:seq`: a repeated
            // name means another writer took these `seq`s.
            let outcome = match outcome {
                InsertOutcome::DuplicateClientId => InsertOutcome::SeqTaken,
                other => other,
            };
            let (result, stale) = self
                .not_inserted(state, outcome, &UserId::system(), "")
                .await;
            return (result.map(|_| Vec::new()), stale);
        }
        state.last_seq += stored.len() as i64;
        state
            .participants
            .retain(|p| !change.left.contains(&p.user_id));
        for member in &change.role_changed {
            if let Some(p) = state.participant_mut(&member.user_id) {
                p.thread_role = Some(member.role.clone());
            }
        }
        for (member, seq) in change.joined.iter().zip(&join_seqs) {
            state.participants.push(ParticipantSnapshot {
                user_id: member.user_id.clone(),
                last_read_seq: *seq,
                unread_count: 0,
                last_read_at: Some(stored[0].created_at),
                request_state: RequestState::None,
                archived: false,
                auto_archived: false,
                thread_role: Some(member.role.clone()),
            });
        }
        state.bring_back_idle_archived();
        match conversations::blocks_among(&self.deps.pool, state.id).await {
            Ok(blocks) => state.blocks = blocks,
            // The view would miss a block: rebuild it rather than leak.
            Err(e) => return (Err(e), Some(StaleView)),
        }
        self.publish_members(state, &change, &stored);
        (Ok(stored), None)
    }

    /// Tells the members of a membership change: the system messages to
    /// everyone who is a member now; each new member their place in the
    /// thread (`conversation.updated`); each leaver that it is gone
    /// (`conversation.updated` with `removed`), and nothing after that.
    fn publish_members(&self, state: &mut Live, change: &MembershipChange, stored: &[Message]) {
        for user in &change.left {
            state.typing.remove(user);
            let gone = UnreadUpdate {
                conversation_id: state.id.0,
                unread_count: 0,
                last_read_seq: 0,
                in_badge: false,
                removed: true,
            };
            self.deps.bus.publish_unread(user, gone);
        }
        self.publish_system(state, stored);
        for member in &change.joined {
            if let Some(p) = state
                .participants
                .iter()
                .find(|p| p.user_id == member.user_id)
            {
                self.deps
                    .bus
                    .publish_unread(&member.user_id, state.unread_update(p));
            }
        }
    }

    /// Publishes stored system messages to every member.
    fn publish_system(&self, state: &Live, stored: &[Message]) {
        let everyone = state.participant_ids();
        for message in stored {
            self.deps.bus.publish(
                &everyone,
                ServerEvent::MessageCreated(message.clone()).to_frame(),
            );
        }
    }

    /// Stores the platform's system message at the next `seq`.
    async fn post_system(
        &self,
        state: &mut Live,
        event: String,
        body: String,
        client_message_id: String,
    ) -> (Result<SendOutcome, ChatError>, Option<StaleView>) {
        let seq = state.last_seq + 1;
        let message = SystemMessage {
            seq,
            body,
            client_message_id,
            event: SystemEvent {
                event,
                user_id: None,
                role: None,
            },
        };
        let write = ThreadWrite {
            conversation: state.id,
            owner_epoch: state.owner_epoch,
            change: &MembershipChange::default(),
            join_seqs: &[],
            messages: std::slice::from_ref(&message),
        };
        let outcome = match threads::write(&self.deps.pool, &write).await {
            Ok((outcome, _)) => outcome,
            Err(e) => return (Err(e), None),
        };
        if matches!(outcome, InsertOutcome::Inserted(_)) {
            state.last_seq = seq;
        }
        self.not_inserted(
            state,
            outcome,
            &UserId::system(),
            &message.client_message_id,
        )
        .await
    }
}

impl ConversationActor {
    /// Runs one command against a live conversation and answers it; events
    /// are published only after the answer. `Err` means the actor must die
    /// (its view is stale).
    async fn execute(
        &self,
        myself: &ActorRef<ConversationMsg>,
        state: &mut Live,
        command: Command,
        reply: ReplyTo,
    ) -> Result<(), ActorProcessingErr> {
        let answer = |result: Result<Reply, ChatError>| {
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        };
        match command {
            Command::Send(cmd) => {
                let sender_had_unread = state
                    .participant_mut(&cmd.sender)
                    .is_some_and(|p| p.unread_count > 0);
                let (outcome, stale) = self.send(state, &cmd).await;
                let stored = match &outcome {
                    Ok(o) if o.created => Some(SendOutcome {
                        message: o.message.clone(),
                        created: true,
                        opened_request: o.opened_request,
                        accepted_request: o.accepted_request,
                    }),
                    _ => None,
                };
                answer(outcome.map(Reply::Sent));
                if let Some(stored) = stored {
                    self.publish_sent(state, &stored, &cmd.sender, sender_had_unread);
                }
                if stale.is_some() {
                    return Err(stale_view(state));
                }
            }
            Command::MarkRead { user, seq } => {
                let outcome = self.mark_read(state, &user, seq).await;
                let (result, moved) = match outcome {
                    Ok((read, receipt_recipients)) => (Ok(read), receipt_recipients),
                    Err(e) => (Err(e), None),
                };
                let read = result.as_ref().ok().cloned();
                answer(result.map(Reply::Read));
                if let (Some(read), Some(receipt_recipients)) = (read, moved) {
                    let receipt = ServerEvent::ReadReceipt {
                        conversation_id: read.conversation_id,
                        user_id: read.user_id.clone(),
                        seq: read.last_read_seq,
                        read_at: read.last_read_at,
                    };
                    self.deps
                        .bus
                        .publish(&receipt_recipients, receipt.to_frame());
                    if let Some(p) = state.participants.iter().find(|p| p.user_id == user) {
                        self.deps.bus.publish_unread(&user, state.unread_update(p));
                    }
                }
            }
            Command::Typing { user, started } => {
                answer(
                    self.typing(myself, state, user, started)
                        .map(|()| Reply::Done),
                );
            }
            Command::Respond { user, accept } => {
                answer(
                    self.respond(state, &user, accept)
                        .await
                        .map(Reply::Responded),
                );
            }
            Command::SetArchived {
                user,
                archived,
                auto,
            } => {
                if let Some(p) = state.participant_mut(&user) {
                    p.archived = archived;
                    p.auto_archived = archived && auto;
                }
                answer(Ok(Reply::Done));
            }
            Command::SetBlock {
                blocker,
                blocked,
                blocking,
            } => {
                if blocking {
                    // Whoever types now stops for those who no longer hear them.
                    for user in state.typing.keys().cloned().collect::<Vec<_>>() {
                        self.stop_typing(state, &user);
                    }
                    if !state.blocks(&blocker, &blocked) {
                        state.blocks.push((blocker, blocked));
                    }
                } else {
                    state
                        .blocks
                        .retain(|(by, of)| !(by == &blocker && of == &blocked));
                }
                answer(Ok(Reply::Done));
            }
            Command::SetMembers { members, names } => {
                let (result, stale) = self.set_members(state, &members, &names).await;
                answer(result.map(Reply::Members));
                if stale.is_some() {
                    return Err(stale_view(state));
                }
            }
            Command::PostSystem {
                event,
                body,
                client_message_id,
            } => {
                let (result, stale) = self
                    .post_system(state, event, body, client_message_id)
                    .await;
                let created = result
                    .as_ref()
                    .ok()
                    .filter(|o| o.created)
                    .map(|o| o.message.clone());
                answer(result.map(Reply::Sent));
                if let Some(message) = created {
                    self.publish_system(state, &[message]);
                }
                if stale.is_some() {
                    return Err(stale_view(state));
                }
            }
        }
        Ok(())
    }
}

impl Actor for ConversationActor {
    type Msg = ConversationMsg;
    type State = ConversationState;
    type Arguments = ConversationId;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        id: ConversationId,
    ) -> Result<Self::State, ActorProcessingErr> {
        let tick =
            (self.deps.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
        myself.send_interval(tick, || ConversationMsg::IdleCheck);
        Ok(ConversationState {
            id,
            last_used: Instant::now(),
            live: None,
        })
    }

    /// Loads the conversation. Runs in the actor's own task after the spawn
    /// has returned, so neither the supervisor nor other conversations wait
    /// for it; a failure here fails the actor and the caller's retry
    /// rebuilds it.
    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let id = state.id;
        match conversations::take_over(&self.deps.pool, id).await? {
            Some(snapshot) => {
                state.live = Some(Live {
                    id,
                    owner_epoch: snapshot.owner_epoch,
                    last_seq: snapshot.last_seq,
                    participants: snapshot.participants,
                    pre_accepted: snapshot.pre_accepted,
                    group: snapshot.group,
                    blocks: snapshot.blocks,
                    typing: HashMap::new(),
                    last_typing_relay: HashMap::new(),
                    typing_generation: 0,
                })
            }
            None => {
                myself.send_interval(MISSING_LINGER, || ConversationMsg::IdleCheck);
            }
        }
        Ok(())
    }

    #[tracing::instrument(name = "conversation", skip_all, fields(id = %state.id))]
    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConversationMsg::Command(command, reply) => {
                state.last_used = Instant::now();
                match state.live.as_mut() {
                    Some(live) => self.execute(&myself, live, command, reply).await?,
                    None => {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(ChatError::conversation_not_found()));
                        }
                    }
                }
            }
            ConversationMsg::TypingExpired { user, generation } => {
                if let Some(live) = state.live.as_mut()
                    && live.typing.get(&user) == Some(&generation)
                {
                    self.stop_typing(live, &user);
                }
            }
            ConversationMsg::IdleCheck => {
                let (limit, typing) = match &state.live {
                    Some(live) => (self.deps.idle_timeout, !live.typing.is_empty()),
                    None => (MISSING_LINGER, false),
                };
                if state.last_used.elapsed() >= limit && !typing {
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }
}
