//! The realtime gateway: `GET /ws?token=JWT` upgrades an authenticated request
//! from an allowed origin to a WebSocket with small buffers (a few KiB, not
//! tungstenite's 128 KiB) and bounded frames, then hands the socket to
//! [`connection::run`].

pub mod connection;
pub mod fallback;
pub mod protocol;

use axum::{
    extract::{State, WebSocketUpgrade},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;

use crate::{
    actors::{
        ChatCore,
        user::{Attached, ConnectionId, UserMsg},
    },
    http::{AppState, auth::AuthUser, check_origin},
};

/// A realtime connection's registration with its user actor. Dropping it
/// detaches the connection, drops its presence subscriptions and keeps the
/// `parley_connections_open` gauge right, however the connection ends.
pub struct Registration {
    chat: ChatCore,
    pub id: ConnectionId,
    actor: ractor::ActorRef<UserMsg>,
    transport: &'static str,
}

impl Registration {
    pub fn new(
        chat: &ChatCore,
        id: ConnectionId,
        attached: Attached,
        transport: &'static str,
    ) -> Self {
        metrics::gauge!("parley_connections_open", "transport" => transport).increment(1.0);
        metrics::counter!("parley_connects_total", "transport" => transport).increment(1);
        Self {
            chat: chat.clone(),
            id,
            actor: attached.actor,
            transport,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = self.actor.send_message(UserMsg::Detach(self.id));
        self.chat.presence().unsubscribe(self.id);
        metrics::gauge!("parley_connections_open", "transport" => self.transport).decrement(1.0);
    }
}

/// Upgrades to a WebSocket; 401 in the JSON shape when the token is missing or
/// bad, 403 when the browser origin is not allowed.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: AuthUser,
    ws: WebSocketUpgrade,
) -> Response {
    let settings = &state.settings;
    if let Err(refused) = check_origin(settings, &headers) {
        return refused.into_response();
    }
    let open = state.realtime.enter();
    let context = connection::ConnectionContext {
        chat: state.chat.clone(),
        pool: state.pool.clone(),
        user: caller.0.id,
        outbound_queue: settings.ws_outbound_queue,
        ping_interval: settings.ws_ping_interval,
        shutdown: state.shutdown.clone(),
    };
    ws.read_buffer_size(settings.ws_buffer_bytes)
        .write_buffer_size(settings.ws_buffer_bytes)
        .max_message_size(settings.ws_max_frame_bytes)
        .max_frame_size(settings.ws_max_frame_bytes)
        .on_upgrade(move |socket| async move {
            let _open = open;
            let (sink, stream) = socket.split();
            connection::run(sink, stream, context).await;
        })
}
