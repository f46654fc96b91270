//! One WebSocket connection: one task, one loop over the socket (not split
//! into a reader and a writer), which `select!`s on
//!
//! * the connection's bounded outbound queue (fed by the user's actor, and by
//!   the loop itself for answers to this connection's own frames), writing
//!   whatever is queued with one flush. When the user actor drops the queue
//!   (the client was too slow, or the actor is gone) it closes with
//!   [`CLOSE_RESYNC`]: the client reconnects and catches up over REST;
//! * the client's next frame — read only once the previous one is answered,
//!   so a client's frames are handled in order, while the frame in hand is
//!   handled as a future of its own and events keep flowing out;
//! * the ping timer: a peer silent for three ping intervals, or unable to
//!   take a frame within one, is reaped;
//! * shutdown: once the frame in hand is answered, what is queued is flushed
//!   and the connection closes with [`CLOSE_GOING_AWAY`].
//!
//! The loop is generic over `Sink + Stream` so it does not depend on axum's
//! socket type. Its task is what every idle connection holds for its whole
//! life, so anything that runs once or per frame is boxed (see
//! `send_bounded`), keeping the idle state small.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};

use super::protocol::{self, ClientFrame, FrameError};
use crate::{
    chat::{
        ChatCore,
        users::{Attachment, OutboundFrames, Outgoing, WeakOutbound, outbound_queue},
    },
    domain::{
        ChatError, ConversationId, UserId,
        event::{ServerEvent, SharedFrame},
    },
    http::auth::JwtKeys,
};

/// Close code (private range) telling the client to reconnect and resync over REST.
pub const CLOSE_RESYNC: u16 = 4000;
/// Close code (private range) refusing a connection over the per-user limit,
/// or over a rate limit.
pub const CLOSE_TOO_MANY_CONNECTIONS: u16 = 4008;
/// Close code (private range) of an upgrade without a valid token or ticket:
/// get a new token (then a new ticket) and connect again.
pub const CLOSE_UNAUTHORISED: u16 = 4001;
/// Close code (private range) of an upgrade that is not allowed: an origin
/// not allowed, or an account that may not connect. Do not retry.
pub const CLOSE_FORBIDDEN: u16 = 4003;
/// Standard close code sent to every socket when the server shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a server-side failure to set the connection up.
pub const CLOSE_INTERNAL: u16 = 1011;
/// A client message over the size limit.
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// Close code (private range) at the end of the connection's token (after
/// the leeway) when no `auth.refresh` renewed it: get a new token, reconnect.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4002;

/// Most conversations one connection can be typing in at once.
const MAX_TYPING_PER_CONNECTION: usize = 32;

/// What the loop needs besides the socket.
pub struct ConnectionContext {
    pub chat: ChatCore,
    pub user: UserId,
    pub outbound_queue: usize,
    pub ping_interval: Duration,
    /// Flips to true when the server starts shutting down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// When the token the connection opened with stops being good (seconds
    /// since the epoch); `auth.refresh` moves it.
    pub good_until: u64,
    /// Verifies the tokens of `auth.refresh`.
    pub jwt: Arc<JwtKeys>,
}

/// One attached connection, as its frame handlers see it.
struct Session<'a> {
    ctx: &'a ConnectionContext,
    attachment: &'a Attachment,
    /// Conversations this connection said it is typing in, so that a
    /// disconnect stops every indicator it started.
    typing: Mutex<HashSet<ConversationId>>,
    /// When the connection's token stops being good (seconds since the epoch).
    good_until: AtomicU64,
}

/// Why the loop stopped.
enum End {
    /// The socket failed, the peer went silent, or the connection was told
    /// to resync: nothing more to say.
    Broken,
    /// The client closed, vanished, or broke the protocol.
    ClientGone,
    /// The server is shutting down: say "going away" so the client reconnects elsewhere.
    Shutdown,
    /// The client sent a message larger than `PARLEY_WS_MAX_FRAME_BYTES`
    /// (in one frame or in fragments): 1009.
    TooBig,
    /// The token expired and no `auth.refresh` renewed it.
    TokenExpired,
}

/// A client frame being handled (boxed: see the module docs).
type InFlight<'a> = Pin<Box<dyn Future<Output = (&'static str, Vec<SharedFrame>)> + Send + 'a>>;

/// Serves one connection until it closes.
pub async fn run<W, E>(mut socket: W, ctx: ConnectionContext)
where
    W: Sink<WsMessage> + Stream<Item = Result<WsMessage, E>> + Unpin + Send,
    E: std::error::Error + 'static,
{
    let (outbound, mut frames) = outbound_queue(ctx.outbound_queue);
    // Answers go through a weak handle, so that when the user actor drops
    // the only strong sender the loop sees the queue close.
    let answers = outbound.downgrade();
    // Boxed, like every call made once per connection (attach, the typing
    // clean-up): an async fn's state is as large as its largest await, and
    // that size is paid by every idle connection for its whole life.
    let attaching = Box::pin(ctx.chat.attach(&ctx.user, outbound, None, "websocket"));
    let attachment = match attaching.await {
        Ok(attachment) => attachment,
        Err(e) if e.code() == "too_many_connections" => {
            let _ = socket
                .send(close(
                    CLOSE_TOO_MANY_CONNECTIONS,
                    "too many connections for this user",
                ))
                .await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e.chain(), "could not attach connection");
            let _ = socket
                .send(close(CLOSE_INTERNAL, "server busy, retry"))
                .await;
            return;
        }
    };
    let session = Session {
        ctx: &ctx,
        attachment: &attachment,
        typing: Mutex::new(HashSet::new()),
        good_until: AtomicU64::new(ctx.good_until),
    };
    let end = serve(&mut socket, &mut frames, &answers, &session).await;
    let goodbye = match end {
        End::Broken => None,
        End::ClientGone => Some(close(1000, "bye")),
        End::TokenExpired => Some(close(
            CLOSE_TOKEN_EXPIRED,
            "token expired: renew it and reconnect",
        )),
        End::TooBig => {
            metrics::counter!("parley_ws_disconnects_total", "reason" => "message_too_big")
                .increment(1);
            Some(close(CLOSE_MESSAGE_TOO_BIG, "message too big"))
        }
        End::Shutdown => {
            metrics::counter!("parley_ws_disconnects_total", "reason" => "shutdown").increment(1);
            Some(close(CLOSE_GOING_AWAY, "server shutting down; reconnect"))
        }
    };
    if let Some(goodbye) = goodbye {
        // Flush what is queued (an answer just given) and say goodbye.
        let limit = ctx.ping_interval;
        let farewell = Box::pin(async {
            while let Some(outgoing) = frames.try_recv() {
                if !send_bounded(&mut socket, text(outgoing.frame), limit).await {
                    return;
                }
            }
            send_bounded(&mut socket, goodbye, limit).await;
        });
        let _ = tokio::time::timeout(Duration::from_secs(2), farewell).await;
    }
    let still_typing: Vec<ConversationId> = session
        .typing
        .lock()
        .map(|mut set| set.drain().collect())
        .unwrap_or_default();
    for conversation in still_typing {
        // Best effort: the conversation may be gone, or the user no longer in it.
        let _ = Box::pin(ctx.chat.typing(conversation, &ctx.user, false)).await;
    }
    drop(attachment);
}

/// The connection's one loop. It writes what the user's actor queues (all
/// that is queued, with one flush), reads the client's frames one at a time
/// — the next is read only once the previous one is answered, so a client's
/// sends keep their order — while events keep flowing out, pings the peer
/// and reaps it when it has been silent for three ping intervals or cannot
/// take a frame within one, and stops on shutdown once the frame in hand is
/// answered.
async fn serve<W, E>(
    socket: &mut W,
    frames: &mut OutboundFrames,
    answers: &WeakOutbound,
    session: &Session<'_>,
) -> End
where
    W: Sink<WsMessage> + Stream<Item = Result<WsMessage, E>> + Unpin + Send,
    E: std::error::Error + 'static,
{
    let ctx = session.ctx;
    let ping_interval = ctx.ping_interval;
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    let dead_after = ping_interval * 3;
    // A peer that cannot take one frame within a ping interval is stuck or gone.
    let limit = ping_interval;
    let mut last_heard = Instant::now();
    let mut shutdown = ctx.shutdown.clone();
    let mut in_flight: Option<InFlight<'_>> = None;
    let mut good_until = session.good_until.load(Ordering::Relaxed);
    let expiry = tokio::time::sleep_until(instant_of(good_until));
    tokio::pin!(expiry);
    loop {
        // An `auth.refresh` moved the end of the session.
        let renewed = session.good_until.load(Ordering::Relaxed);
        if renewed != good_until {
            good_until = renewed;
            expiry.as_mut().reset(instant_of(good_until));
        }
        tokio::select! {
            biased;
            () = &mut expiry, if in_flight.is_none() => {
                metrics::counter!("parley_ws_disconnects_total", "reason" => "token_expired").increment(1);
                return End::TokenExpired;
            }
            queued = frames.recv() => match queued {
                Some(outgoing) => {
                    if !send_ready(socket, outgoing, frames, limit).await {
                        return End::Broken;
                    }
                }
                None => {
                    metrics::counter!("parley_ws_disconnects_total", "reason" => "resync").increment(1);
                    send_bounded(socket, close(CLOSE_RESYNC, "resync: connection fell behind"), limit).await;
                    return End::Broken;
                }
            },
            answered = async {
                match in_flight.as_mut() {
                    Some(handling) => handling.await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_some() => {
                in_flight = None;
                let (kind, replies) = answered;
                metrics::counter!("parley_ws_frames_in_total", "type" => kind).increment(1);
                if !queue_answers(answers, replies) {
                    return End::ClientGone;
                }
            }
            incoming = socket.next(), if in_flight.is_none() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(WsMessage::Text(frame))) => {
                        in_flight = Some(Box::pin(async move { handle_frame(session, frame.as_str()).await }));
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        let refusal = frame_error(FrameError {
                            code: "unsupported_frame_type",
                            message: "binary frames are not supported; send JSON text".into(),
                            client_message_id: None,
                        });
                        if !queue_answers(answers, vec![refusal]) {
                            return End::ClientGone;
                        }
                    }
                    Some(Ok(WsMessage::Close(_))) => {
                        metrics::counter!("parley_ws_disconnects_total", "reason" => "client_closed").increment(1);
                        return End::ClientGone;
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                    Some(Err(e)) if too_big(&e) => return End::TooBig,
                    Some(Err(_)) | None => {
                        metrics::counter!("parley_ws_disconnects_total", "reason" => "client_gone").increment(1);
                        return End::ClientGone;
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > dead_after {
                    metrics::counter!("parley_ws_disconnects_total", "reason" => "dead_peer").increment(1);
                    return End::Broken;
                }
                if !send_bounded(socket, WsMessage::Ping(Default::default()), limit).await {
                    return End::Broken;
                }
            }
            () = stopping(&mut shutdown), if in_flight.is_none() => return End::Shutdown,
        }
    }
}

/// Whether a read failed because the client's message is over the limit.
fn too_big(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Resolves once the server starts shutting down.
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

/// Queues a connection's answers to its own frames; false when the queue is
/// gone, or full (too slow even for its own answers: the same treatment as
/// any slow consumer).
fn queue_answers(answers: &WeakOutbound, replies: Vec<SharedFrame>) -> bool {
    for frame in replies {
        let Some(queue) = answers.upgrade() else {
            return false;
        };
        if queue.try_send(Outgoing { id: None, frame }).is_err() {
            metrics::counter!("parley_ws_slow_consumer_closes_total").increment(1);
            return false;
        }
    }
    true
}

/// An event as a WebSocket text frame, sharing the event's buffer.
fn text(frame: SharedFrame) -> WsMessage {
    // A frame is JSON text, so the UTF-8 check cannot fail.
    WsMessage::Text(Utf8Bytes::try_from(frame.into_bytes()).unwrap_or_default())
}

pub fn close(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Runs a socket write, giving up when the peer cannot take it within `limit`.
async fn bounded<T, E>(limit: Duration, write: impl Future<Output = Result<T, E>>) -> Option<T> {
    match tokio::time::timeout(limit, write).await {
        Ok(result) => result.ok(),
        Err(_) => {
            metrics::counter!("parley_ws_disconnects_total", "reason" => "write_timeout")
                .increment(1);
            None
        }
    }
}

/// Sends one frame, within `limit`.
///
/// Boxed: a send in progress (the frame and its timer) lives on the heap
/// only while it runs, instead of widening every idle connection's task.
fn send_bounded<'a, S: Sink<WsMessage> + Unpin + 'a>(
    sink: &'a mut S,
    message: WsMessage,
    limit: Duration,
) -> Pin<Box<impl Future<Output = bool> + 'a>> {
    Box::pin(async move { bounded(limit, sink.send(message)).await.is_some() })
}

/// Most frames written with one flush (one `send` system call, usually).
const MAX_FRAMES_PER_FLUSH: usize = 32;

/// Writes `first` and whatever else is already queued (up to
/// [`MAX_FRAMES_PER_FLUSH`]) with one flush: the events of one message (the
/// message, the badge update) then leave in one segment instead of one
/// system call each. Bounded by `limit`, and boxed, like [`send_bounded`].
fn send_ready<'a, S: Sink<WsMessage> + Unpin + 'a>(
    sink: &'a mut S,
    first: Outgoing,
    frames: &'a mut OutboundFrames,
    limit: Duration,
) -> Pin<Box<impl Future<Output = bool> + 'a>> {
    Box::pin(async move {
        let write = async {
            sink.feed(text(first.frame)).await?;
            let mut written: u64 = 1;
            while written < MAX_FRAMES_PER_FLUSH as u64 {
                let Some(next) = frames.try_recv() else {
                    break;
                };
                sink.feed(text(next.frame)).await?;
                written += 1;
            }
            sink.flush().await?;
            Ok::<_, S::Error>(written)
        };
        let Some(written) = bounded(limit, write).await else {
            return false;
        };
        metrics::counter!("parley_frames_out_total", "transport" => "websocket").increment(written);
        true
    })
}

/// Handles one text frame; returns its type (for metrics) and the frames to answer with.
async fn handle_frame(session: &Session<'_>, text: &str) -> (&'static str, Vec<SharedFrame>) {
    let ctx = session.ctx;
    let frame = match protocol::parse(text) {
        Ok(frame) => frame,
        Err(e) => return ("invalid", vec![frame_error(e)]),
    };
    match frame {
        ClientFrame::MessageSend(send) => {
            let cmid = send.client_message_id.clone();
            let outcome = match ConversationId::parse(&send.conversation_id) {
                Ok(id) => {
                    ctx.chat
                        .send(
                            id,
                            &ctx.user,
                            &send.body,
                            &send.client_message_id,
                            &send.attachment_ids,
                        )
                        .await
                }
                Err(e) => Err(e),
            };
            let answer = match outcome {
                Ok(o) => ServerEvent::Ack {
                    client_message_id: cmid,
                    message: o.message,
                }
                .to_frame(),
                Err(e) => chat_error(e, Some(cmid)),
            };
            ("message.send", vec![answer])
        }
        ClientFrame::ReadReceipt(read) => {
            let outcome = match ConversationId::parse(&read.conversation_id) {
                Ok(id) => ctx.chat.mark_read(id, &ctx.user, read.seq).await,
                Err(e) => Err(e),
            };
            // Success is visible as `conversation.updated` on every connection of the user.
            (
                "read.receipt",
                outcome
                    .err()
                    .map(|e| chat_error(e, None))
                    .into_iter()
                    .collect(),
            )
        }
        ClientFrame::Typing(signal, started) => {
            let kind = if started {
                "typing.started"
            } else {
                "typing.stopped"
            };
            let id = match ConversationId::parse(&signal.conversation_id) {
                Ok(id) => id,
                Err(e) => return (kind, vec![chat_error(e, None)]),
            };
            let relay = session.typing.lock().is_ok_and(|mut set| {
                if !started {
                    set.remove(&id);
                    true
                } else if set.len() < MAX_TYPING_PER_CONNECTION || set.contains(&id) {
                    set.insert(id);
                    true
                } else {
                    false
                }
            });
            if !relay {
                return (kind, Vec::new());
            }
            // Success is silent; a conversation the user is not in is `not_found`.
            let answer = match ctx.chat.typing(id, &ctx.user, started).await {
                Ok(()) => Vec::new(),
                Err(e) => {
                    if let Ok(mut set) = session.typing.lock() {
                        set.remove(&id);
                    }
                    vec![chat_error(e, None)]
                }
            };
            (kind, answer)
        }
        ClientFrame::PresencePing(ping) => {
            let beat = ctx.chat.heartbeat(
                &ctx.user,
                Some(session.attachment.id),
                ping.status.as_deref(),
            );
            (
                "presence.ping",
                beat.err()
                    .map(|e| chat_error(e, None))
                    .into_iter()
                    .collect(),
            )
        }
        ClientFrame::PresenceSubscribe(subscribe) => (
            "presence.subscribe",
            presence_subscribe(session, subscribe.user_ids).await,
        ),
        ClientFrame::AuthRefresh(refresh) => (
            "auth.refresh",
            vec![auth_refresh(session, &refresh.token).await],
        ),
    }
}

/// Renews the session with a new token of the same user: the connection
/// then lasts until that one's end. Answered with a `system.notice`
/// `token_refreshed`, or an `error` (the session keeps its old end).
async fn auth_refresh(session: &Session<'_>, token: &str) -> SharedFrame {
    let refused = |code: &'static str, message: &str| {
        ServerEvent::Error {
            code: code.into(),
            message: message.into(),
            client_message_id: None,
        }
        .to_frame()
    };
    match session.ctx.jwt.verify(token).await {
        Ok((profile, good_until)) if profile.id == session.ctx.user => {
            session.good_until.store(good_until, Ordering::Relaxed);
            ServerEvent::SystemNotice {
                code: "token_refreshed".into(),
                message: "the session now lasts as long as the new token".into(),
            }
            .to_frame()
        }
        Ok(_) => refused("forbidden", "the token is for another user"),
        Err(e) => refused("unauthorized", e.message()),
    }
}

/// The moment a Unix time (seconds) falls on, on tokio's clock.
pub(super) fn instant_of(unix_secs: u64) -> tokio::time::Instant {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(unix_secs).saturating_sub(now_unix);
    tokio::time::Instant::now() + left
}

/// Replaces this connection's presence subscription with the users in `ids`
/// that share a conversation with the caller (others are silently left out),
/// and answers with their current presence.
async fn presence_subscribe(session: &Session<'_>, ids: Vec<String>) -> Vec<SharedFrame> {
    let ctx = session.ctx;
    match ctx
        .chat
        .subscribe_presence(session.attachment, &ctx.user, &ids)
        .await
    {
        Ok(current) => current
            .into_iter()
            .map(|presence| ServerEvent::PresenceUpdated(presence).to_frame())
            .collect(),
        Err(e) => vec![chat_error(e, None)],
    }
}

fn frame_error(e: FrameError) -> SharedFrame {
    ServerEvent::Error {
        code: e.code.to_owned(),
        message: e.message,
        client_message_id: e.client_message_id,
    }
    .to_frame()
}

fn chat_error(e: ChatError, client_message_id: Option<String>) -> SharedFrame {
    if e.is_server_failure() {
        tracing::warn!(error = %e.chain(), "websocket request failed");
    }
    ServerEvent::Error {
        code: e.code().to_owned(),
        message: e.public_message(),
        client_message_id,
    }
    .to_frame()
}
