//! The HTTP fallback for clients that cannot hold a WebSocket: Server-Sent
//! Events (`GET /events`) and long-polling (`GET /events/poll`). Both carry the
//! same envelopes as the WebSocket, each numbered in the user's event stream,
//! so a client that reconnects with the last id it saw (`Last-Event-ID`, or the
//! poll `cursor`) gets exactly what it missed — or a `system.notice` with code
//! `resync_required` when that is no longer held, after which it calls
//! `GET /chat/sync`. Client-to-server signals use REST (`POST .../messages`,
//! `.../read`, `.../typing`, `/users/me/presence`).

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    chat::users::{Attachment, EventId, OutboundFrames, outbound_queue},
    domain::ChatError,
    http::{
        AllowedOrigin, AppState, RealtimeGuard,
        auth::AuthUser,
        error::{ApiError, ApiQuery},
    },
};

/// Longest and default long-poll wait, and most events in one poll answer.
const POLL_MAX_WAIT: Duration = Duration::from_secs(30);
const POLL_DEFAULT_WAIT: Duration = Duration::from_secs(25);
const POLL_MAX_EVENTS: usize = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct SseQuery {
    /// Same as the `Last-Event-ID` header, for clients that cannot set it.
    pub last_event_id: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// The `cursor` of the previous answer; absent on the first poll.
    pub cursor: Option<String>,
    /// Seconds to wait for an event (1-30, default 25).
    #[param(minimum = 1, maximum = 30)]
    pub timeout: Option<u64>,
}

/// An id the client sent back; an unreadable one is treated as too old (resync).
fn resume_point(raw: Option<&str>) -> Option<EventId> {
    raw.map(|r| EventId::parse(r).unwrap_or(EventId { epoch: 0, n: 0 }))
}

/// Attaches a fallback connection, answering 429 over the per-user limit.
async fn attach(
    state: &AppState,
    caller: &AuthUser,
    resume: Option<EventId>,
    transport: &'static str,
) -> Result<(Attachment, OutboundFrames, RealtimeGuard), ApiError> {
    let guard = state.realtime.enter();
    let (outbound, frames) = outbound_queue(state.settings.realtime.outbound_queue);
    let attachment = state
        .chat
        .attach(caller.id(), outbound, resume, transport)
        .await?;
    Ok((attachment, frames, guard))
}

/// The user's events as Server-Sent Events; each has an `id:` to resume from.
#[utoipa::path(get, path = "/events", tag = "realtime", params(SseQuery),
    responses((status = 200, description = "text/event-stream: each event's data is a `ServerFrame`, with an `id:` to resume from (`Last-Event-ID`)", content_type = "text/event-stream"),
              (status = 401, body = crate::http::error::ErrorBody), (status = 429, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn sse(
    State(state): State<AppState>,
    headers: HeaderMap,
    _origin: AllowedOrigin,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<SseQuery>,
) -> Result<Response, ApiError> {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id);
    if last_seen.is_some() {
        metrics::counter!("parley_resync_requests_total", "kind" => "sse_resume").increment(1);
    }
    let (registration, frames, guard) =
        attach(&state, &caller, resume_point(last_seen.as_deref()), "sse").await?;
    let shutdown = state.shutdown.clone();
    // The registration and guard live as long as the stream; when the user
    // actor drops the queue (too slow) or the server stops, the stream ends
    // and the browser's EventSource reconnects with its last id.
    // The stream also ends when the token does: with a `system.notice`
    // `token_expired`, after which the client reconnects with a new one.
    let expires = super::connection::instant_of(caller.1);
    let events = stream::unfold(
        (frames, registration, guard),
        |(mut frames, registration, guard)| async move {
            let outgoing = frames.recv().await?;
            metrics::counter!("parley_frames_out_total", "transport" => "sse").increment(1);
            let mut event = Event::default().data(outgoing.frame.as_str());
            if let Some(id) = outgoing.id {
                event = event.id(id.to_string());
            }
            Some((Ok::<_, Infallible>(event), (frames, registration, guard)))
        },
    )
    .take_until(async move {
        let mut shutdown = shutdown;
        tokio::select! {
            _ = shutdown.wait_for(|stopping| *stopping) => {}
            () = tokio::time::sleep_until(expires) => {}
        }
    })
    .chain(
        stream::once(async {
            let notice = crate::domain::event::ServerEvent::SystemNotice {
                code: "token_expired".into(),
                message: "the token expired: renew it and reconnect".into(),
            };
            Ok::<_, Infallible>(Event::default().data(notice.to_frame().as_str()))
        })
        .filter(move |_| std::future::ready(tokio::time::Instant::now() >= expires)),
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Waits up to `timeout` seconds for the user's next events and answers
/// `{"events": [envelopes], "cursor": "..."}`; poll again with that cursor.
#[utoipa::path(get, path = "/events/poll", tag = "realtime", params(PollQuery),
    responses((status = 200, description = "`{\"events\": [ServerFrame], \"cursor\": \"...\"}`: poll again with that cursor"),
              (status = 401, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody),
              (status = 429, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn poll(
    State(state): State<AppState>,
    _origin: AllowedOrigin,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<PollQuery>,
) -> Result<Response, ApiError> {
    let wait = match query.timeout {
        None => POLL_DEFAULT_WAIT,
        Some(secs) if (1..=POLL_MAX_WAIT.as_secs()).contains(&secs) => Duration::from_secs(secs),
        Some(_) => {
            return Err(
                ChatError::invalid("invalid_timeout", "timeout must be 1-30 seconds").into(),
            );
        }
    };
    let resume = resume_point(query.cursor.as_deref());
    let (registration, mut frames, _guard) = attach(&state, &caller, resume, "poll").await?;
    let head = registration.head;
    let mut shutdown = state.shutdown.clone();
    let mut events = Vec::new();
    tokio::select! {
        first = frames.recv() => events.extend(first),
        () = tokio::time::sleep(wait) => {}
        _ = shutdown.wait_for(|stopping| *stopping) => {}
    }
    while events.len() < POLL_MAX_EVENTS {
        match frames.try_recv() {
            Some(outgoing) => events.push(outgoing),
            None => break,
        }
    }
    drop(registration);
    metrics::counter!("parley_frames_out_total", "transport" => "poll")
        .increment(events.len() as u64);
    let cursor = events
        .iter()
        .rev()
        .find_map(|e| e.id)
        .or(resume.filter(|r| r.epoch == head.epoch && r.n >= head.n))
        .unwrap_or(head);
    // The envelopes are already JSON text: splice them instead of re-parsing.
    let mut body = String::from("{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(event.frame.as_str());
    }
    body.push_str(&format!("],\"cursor\":\"{cursor}\"}}"));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
