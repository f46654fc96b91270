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

use crate::http::{AppState, auth::AuthUser, check_origin};

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
    let realtime = &settings.realtime;
    let context = connection::ConnectionContext {
        chat: state.chat.clone(),
        user: caller.0.id,
        outbound_queue: realtime.outbound_queue,
        ping_interval: realtime.ping_interval,
        shutdown: state.shutdown.clone(),
    };
    ws.read_buffer_size(realtime.buffer_bytes)
        .write_buffer_size(realtime.buffer_bytes)
        .max_message_size(realtime.max_frame_bytes)
        .max_frame_size(realtime.max_frame_bytes)
        .on_upgrade(move |socket| async move {
            let _open = open;
            connection::run(socket, context).await;
        })
}
