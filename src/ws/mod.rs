//! The realtime gateway: `GET /ws?token=JWT` upgrades an authenticated request
//! from an allowed origin to a WebSocket with small buffers (a few KiB, not
//! tungstenite's 128 KiB) and bounded frames, then hands the socket to
//! [`connection::run`].

pub mod connection;
pub mod protocol;

use axum::{
    extract::{State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;

use crate::http::{AppState, auth::AuthUser, error::ApiError, origin_allowed};

/// Upgrades to a WebSocket; 401 in the JSON shape when the token is missing or
/// bad, 403 when the browser origin is not allowed.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: AuthUser,
    ws: WebSocketUpgrade,
) -> Response {
    let settings = &state.settings;
    if !origin_allowed(settings, &headers) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not open realtime connections",
        )
        .into_response();
    }
    let open = state.realtime.enter();
    let context = connection::ConnectionContext {
        chat: state.chat.clone(),
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
            metrics::counter!("parley_connects_total", "transport" => "websocket").increment(1);
            let (sink, stream) = socket.split();
            connection::run(sink, stream, context).await;
        })
}
