//! The realtime gateway: `GET /ws?token=JWT` upgrades an authenticated request
//! to a WebSocket with small buffers (a few KiB, not tungstenite's 128 KiB) and
//! bounded frames, then hands the socket to [`connection::run`].

pub mod connection;
pub mod protocol;

use axum::{
    extract::{State, WebSocketUpgrade},
    response::Response,
};
use futures_util::StreamExt;

use crate::http::{AppState, auth::AuthUser};

/// Upgrades to a WebSocket; 401 in the JSON shape when the token is missing or bad.
pub async fn upgrade(
    State(state): State<AppState>,
    caller: AuthUser,
    ws: WebSocketUpgrade,
) -> Response {
    let settings = &state.settings;
    let context = connection::ConnectionContext {
        chat: state.chat.clone(),
        user: caller.0.id,
        outbound_queue: settings.ws_outbound_queue,
        ping_interval: settings.ws_ping_interval,
    };
    ws.read_buffer_size(settings.ws_buffer_bytes)
        .write_buffer_size(settings.ws_buffer_bytes)
        .max_message_size(settings.ws_max_frame_bytes)
        .max_frame_size(settings.ws_max_frame_bytes)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            connection::run(sink, stream, context).await;
        })
}
