//! The realtime gateway: `GET /ws?ticket=…` (or a bearer header) upgrades an
//! authenticated request from an allowed origin to a WebSocket with small
//! buffers (a few KiB, not tungstenite's 128 KiB) and bounded frames, then
//! hands the socket to [`connection::run`].
//!
//! A refused upgrade is still upgraded, then closed at once with a code and
//! reason a page can read (a browser sees an HTTP refusal only as 1006 with
//! no reason): 4001 no valid token or ticket, 4003 forbidden (origin or
//! account), 4008 rate limited. Nothing else is sent.

pub mod connection;
pub mod fallback;
pub mod protocol;

use axum::{
    extract::{State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    response::{IntoResponse, Response},
};

use crate::http::{AllowedOrigin, AppState, auth::AuthUser, error::ApiError};

/// Upgrades to a WebSocket, or closes it at once with the refusal's code.
/// A request that is no WebSocket handshake gets the JSON error (400, or
/// 426 when the connection cannot be upgraded).
#[utoipa::path(get, path = "/ws", tag = "realtime",
    params(
        ("ticket" = Option<String>, Query, description = "A connect ticket (`POST /realtime/ticket`); or a bearer header"),
    ),
    responses(
        (status = 101, description = "Switching Protocols: a WebSocket whose text frames are `ClientFrame`s from the client and `ServerFrame`s from the server. A refused connection is accepted, then closed at once: 4001 no valid token or ticket, 4002 the token expired (renew with `auth.refresh` before it does), 4003 forbidden (origin or account), 4008 too many connections; 1009 a frame over the size limit, 1001 the server is stopping"),
        (status = 400, description = "Not a WebSocket handshake", body = crate::http::error::ErrorBody),
        (status = 426, description = "The connection cannot be upgraded", body = crate::http::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn upgrade(
    State(state): State<AppState>,
    origin: Result<AllowedOrigin, ApiError>,
    caller: Result<AuthUser, ApiError>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::new(
                rejection.status(),
                "websocket_handshake_required",
                rejection.body_text(),
            )
            .into_response();
        }
    };
    let settings = &state.settings;
    let caller = match origin.and(caller) {
        Ok(caller) => caller,
        Err(refused) => return refuse(ws, &refused),
    };
    let open = state.realtime.enter();
    let realtime = &settings.realtime;
    let context = connection::ConnectionContext {
        chat: state.chat.clone(),
        user: caller.0.id,
        outbound_queue: realtime.outbound_queue,
        ping_interval: realtime.ping_interval,
        shutdown: state.shutdown.clone(),
        good_until: caller.1,
        jwt: state.jwt.clone(),
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

/// Accepts the upgrade only to close it with `refused`'s code and reason.
fn refuse(ws: WebSocketUpgrade, refused: &ApiError) -> Response {
    use axum::http::StatusCode;
    let code = match refused.status() {
        StatusCode::UNAUTHORIZED => connection::CLOSE_UNAUTHORISED,
        StatusCode::TOO_MANY_REQUESTS => connection::CLOSE_TOO_MANY_CONNECTIONS,
        StatusCode::FORBIDDEN => connection::CLOSE_FORBIDDEN,
        _ => connection::CLOSE_INTERNAL,
    };
    let reason = refused.code();
    ws.on_upgrade(move |mut socket| async move {
        let _ = socket.send(connection::close(code, reason)).await;
    })
}
