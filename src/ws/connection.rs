//! One WebSocket connection: a reader and a writer run concurrently in one
//! task, and the connection ends when either does.
//!
//! * The writer drains the connection's bounded outbound queue (fed by the
//!   user's actor, and by the reader for answers to this connection's own
//!   frames), writing whatever is queued with one flush, sends protocol pings, and reaps a peer that has been silent for
//!   three ping intervals or cannot take a single frame within one interval.
//!   When the user actor drops the queue (the client was too slow, or the
//!   actor is gone) the writer closes with [`CLOSE_RESYNC`]: the client
//!   reconnects and catches up over REST.
//! * The reader parses client frames and answers each one. On shutdown it
//!   stops taking frames (after finishing the one in hand) and the writer,
//!   having flushed what is queued, closes with [`CLOSE_GOING_AWAY`].
//!
//! The loop is generic over `Sink`/`Stream` so it does not depend on axum's
//! socket type. Its task is what every idle connection holds for its whole
//! life, so anything that runs once or per frame is boxed (see
//! `send_bounded`), keeping the idle state small.

use std::{
    collections::HashSet,
    future::Future,
    pin::{Pin, pin},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::oneshot;

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
};

/// Close code (private range) telling the client to reconnect and resync over REST.
pub const CLOSE_RESYNC: u16 = 4000;
/// Close code (private range) refusing a connection over the per-user limit.
pub const CLOSE_TOO_MANY_CONNECTIONS: u16 = 4008;
/// Standard close code sent to every socket when the server shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a server-side failure to set the connection up.
pub const CLOSE_INTERNAL: u16 = 1011;

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
}

/// One attached connection, as the reader sees it.
struct Session<'a> {
    ctx: &'a ConnectionContext,
    attachment: &'a Attachment,
    /// Conversations this connection said it is typing in, so that a
    /// disconnect stops every indicator it started.
    typing: Mutex<HashSet<ConversationId>>,
}

/// Why the reader stopped.
enum ReadEnd {
    /// The client closed, vanished, or broke the protocol.
    ClientGone,
    /// The server is shutting down: say "going away" so the client reconnects elsewhere.
    Shutdown,
}

/// Serves one connection until it closes.
pub async fn run<S, R, E>(mut sink: S, stream: R, ctx: ConnectionContext)
where
    S: Sink<WsMessage> + Unpin + Send,
    R: Stream<Item = Result<WsMessage, E>> + Unpin + Send,
{
    let (outbound, frames) = outbound_queue(ctx.outbound_queue);
    // The reader answers through a weak handle, so that when the user actor
    // drops the only strong sender the writer sees the queue close.
    let answers = outbound.downgrade();
    // Boxed, like every call made once per connection (attach, the typing
    // clean-up): an async fn's state is as large as its largest await, and
    // that size is paid by every idle connection for its whole life.
    let attaching = Box::pin(ctx.chat.attach(&ctx.user, outbound, None, "websocket"));
    let attachment = match attaching.await {
        Ok(attachment) => attachment,
        Err(e) if e.code() == "too_many_connections" => {
            let _ = sink
                .send(close(
                    CLOSE_TOO_MANY_CONNECTIONS,
                    "too many connections for this user",
                ))
                .await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e.chain(), "could not attach connection");
            let _ = sink.send(close(CLOSE_INTERNAL, "server busy, retry")).await;
            return;
        }
    };
    let session = Session {
        ctx: &ctx,
        attachment: &attachment,
        typing: Mutex::new(HashSet::new()),
    };
    let last_heard = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // A oneshot, not a channel: a tokio channel allocates a block of slots
    // up front, for every idle connection.
    let (close_tx, close_rx) = oneshot::channel::<WsMessage>();
    {
        let mut writer = pin!(write_loop(
            sink,
            frames,
            close_rx,
            ctx.ping_interval,
            last_heard.clone(),
            started
        ));
        let mut reader = pin!(read_loop(stream, answers, &session, last_heard, started));
        tokio::select! {
            () = &mut writer => {}
            end = &mut reader => {
                // Let the writer flush what is queued (an in-flight ack) and say goodbye.
                let goodbye = match end {
                    ReadEnd::ClientGone => close(1000, "bye"),
                    ReadEnd::Shutdown => {
                        metrics::counter!("parley_ws_disconnects_total", "reason" => "shutdown").increment(1);
                        close(CLOSE_GOING_AWAY, "server shutting down; reconnect")
                    }
                };
                let _ = close_tx.send(goodbye);
                let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
            }
        }
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

/// An event as a WebSocket text frame, sharing the event's buffer.
fn text(frame: SharedFrame) -> WsMessage {
    // A frame is JSON text, so the UTF-8 check cannot fail.
    WsMessage::Text(Utf8Bytes::try_from(frame.into_bytes()).unwrap_or_default())
}

fn close(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
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

async fn write_loop<S: Sink<WsMessage> + Unpin>(
    mut sink: S,
    mut frames: OutboundFrames,
    mut closing: oneshot::Receiver<WsMessage>,
    ping_interval: Duration,
    last_heard: Arc<AtomicU64>,
    started: Instant,
) {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    let dead_after = u64::try_from((ping_interval * 3).as_millis()).unwrap_or(u64::MAX);
    // A peer that cannot take one frame within a ping interval is stuck or gone.
    let limit = ping_interval;
    loop {
        tokio::select! {
            biased;
            frame = frames.recv() => match frame {
                Some(outgoing) => {
                    if !send_ready(&mut sink, outgoing, &mut frames, limit).await {
                        return;
                    }
                }
                None => {
                    metrics::counter!("parley_ws_disconnects_total", "reason" => "resync").increment(1);
                    send_bounded(&mut sink, close(CLOSE_RESYNC, "resync: connection fell behind"), limit).await;
                    return;
                }
            },
            goodbye = &mut closing => {
                // No goodbye at all: the connection is over.
                let Ok(goodbye) = goodbye else {
                    return;
                };
                while let Some(outgoing) = frames.try_recv() {
                    if !send_bounded(&mut sink, text(outgoing.frame), limit).await {
                        return;
                    }
                }
                send_bounded(&mut sink, goodbye, limit).await;
                return;
            }
            _ = ping.tick() => {
                if millis_since(started).saturating_sub(last_heard.load(Ordering::Relaxed)) > dead_after {
                    metrics::counter!("parley_ws_disconnects_total", "reason" => "dead_peer").increment(1);
                    return;
                }
                if !send_bounded(&mut sink, WsMessage::Ping(Default::default()), limit).await {
                    return;
                }
            }
        }
    }
}

async fn read_loop<R, E>(
    mut stream: R,
    answers: WeakOutbound,
    session: &Session<'_>,
    last_heard: Arc<AtomicU64>,
    started: Instant,
) -> ReadEnd
where
    R: Stream<Item = Result<WsMessage, E>> + Unpin,
{
    let mut shutdown = session.ctx.shutdown.clone();
    loop {
        let message = tokio::select! {
            next = stream.next() => match next {
                Some(Ok(message)) => message,
                _ => break,
            },
            _ = shutdown.wait_for(|stopping| *stopping) => return ReadEnd::Shutdown,
        };
        last_heard.store(millis_since(started), Ordering::Relaxed);
        let replies = match message {
            WsMessage::Text(text) => {
                // Boxed: an idle connection's task is sized for its largest
                // await point, and the send path is much larger than waiting
                // for the next frame. Boxing keeps idle connections small.
                let kind = Box::pin(handle_frame(session, text.as_str())).await;
                metrics::counter!("parley_ws_frames_in_total", "type" => kind.0).increment(1);
                kind.1
            }
            WsMessage::Binary(_) => vec![frame_error(FrameError {
                code: "unsupported_frame_type",
                message: "binary frames are not supported; send JSON text".into(),
                client_message_id: None,
            })],
            WsMessage::Close(_) => {
                metrics::counter!("parley_ws_disconnects_total", "reason" => "client_closed")
                    .increment(1);
                return ReadEnd::ClientGone;
            }
            WsMessage::Ping(_) | WsMessage::Pong(_) => Vec::new(),
        };
        for frame in replies {
            let Some(queue) = answers.upgrade() else {
                return ReadEnd::ClientGone;
            };
            if queue.try_send(Outgoing { id: None, frame }).is_err() {
                // Too slow even for its own answers: same treatment as any slow consumer.
                metrics::counter!("parley_ws_slow_consumer_closes_total").increment(1);
                return ReadEnd::ClientGone;
            }
        }
    }
    metrics::counter!("parley_ws_disconnects_total", "reason" => "client_gone").increment(1);
    ReadEnd::ClientGone
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
                        .send(id, &ctx.user, &send.body, &send.client_message_id)
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
    }
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
