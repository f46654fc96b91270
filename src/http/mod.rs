//! The HTTP surface: one axum router per resource, the shared [`AppState`],
//! auth, the JSON error shape, request metrics and the OpenAPI document.
//! REST is the source of truth; the WebSocket (`crate::ws`) only adds speed.

pub mod admin;
pub mod auth;
pub mod blocks;
pub mod conversations;
pub mod error;
pub mod health;
pub mod internal;
pub mod messages;
pub mod openapi;
pub mod reports;
pub mod sync;
pub mod users;

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::StatusCode,
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};
use dashmap::DashMap;
use metrics_exporter_prometheus::PrometheusHandle;

use self::{auth::JwtKeys, error::ApiError};
use crate::{
    actors::ChatCore,
    config::Settings,
    domain::{ChatError, UserId},
    persistence::users::UserProfile,
};

/// Everything a request handler may use; cheap to clone (all handles).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pool: deadpool_postgres::Pool,
    pub chat: ChatCore,
    pub jwt: Arc<JwtKeys>,
    pub metrics: PrometheusHandle,
    /// Claims already upserted by this node, so a user row is written on first
    /// sight (or when the claims change), not on every request. Cleared when it
    /// reaches `known_users_capacity`, which bounds its memory.
    pub known_users: Arc<DashMap<UserId, UserProfile>>,
    pub known_users_capacity: usize,
    /// Flips to true when the server starts shutting down; realtime
    /// connections watch it to say "going away".
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Open realtime connections, so shutdown can wait for their goodbyes.
    pub realtime: RealtimeTracker,
}

/// Counts open realtime connections (WebSocket, SSE, long-poll).
#[derive(Clone, Default)]
pub struct RealtimeTracker {
    open: Arc<std::sync::atomic::AtomicUsize>,
    changed: Arc<tokio::sync::Notify>,
}

/// Held for the life of one realtime connection.
pub struct RealtimeGuard(RealtimeTracker);

impl RealtimeTracker {
    pub fn enter(&self) -> RealtimeGuard {
        self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        RealtimeGuard(self.clone())
    }

    /// Waits until every realtime connection has ended, or `limit` passes.
    pub async fn drained(&self, limit: std::time::Duration) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.open.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

impl Drop for RealtimeGuard {
    fn drop(&mut self) {
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Whether a browser request from its `Origin` may open a realtime connection
/// (cross-site WebSocket hijacking guard). No `Origin` (not a browser) is
/// allowed; otherwise it must be in the allow-list, or match the `Host` the
/// request was sent to when no list is configured. Refused: 403 `origin_not_allowed`.
pub fn check_origin(settings: &Settings, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    if origin_allowed(settings, headers) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not open realtime connections",
        ))
    }
}

fn origin_allowed(settings: &Settings, headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if settings.allowed_origins.is_empty() {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        return host.is_some() && origin_host == host;
    }
    settings
        .allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed == origin)
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    Router::new()
        .route(
            "/chat/conversations",
            post(conversations::create).get(conversations::list),
        )
        .route("/chat/conversations/{id}", get(conversations::get_one))
        .route(
            "/chat/conversations/{id}/messages",
            post(messages::send).get(messages::history),
        )
        .route("/chat/conversations/{id}/read", post(messages::read))
        .route("/chat/conversations/{id}/typing", post(sync::typing))
        .route(
            "/chat/conversations/{id}/accept",
            post(conversations::accept),
        )
        .route(
            "/chat/conversations/{id}/decline",
            post(conversations::decline),
        )
        .route(
            "/chat/conversations/{id}/mute",
            post(conversations::mute).delete(conversations::unmute),
        )
        .route(
            "/chat/conversations/{id}/archive",
            post(conversations::archive).delete(conversations::unarchive),
        )
        .route("/chat/sync", get(sync::sync))
        .route(
            "/users/me/settings",
            get(users::get_settings).patch(users::patch_settings),
        )
        .route(
            "/internal/contexts/{kind}/{id}",
            axum::routing::put(internal::put_context),
        )
        .route(
            "/internal/users/{id}",
            axum::routing::put(internal::put_user),
        )
        .route("/chat/blocks", post(blocks::create).get(blocks::list))
        .route("/chat/reports", post(reports::create))
        .route("/admin/chat/reports", get(admin::list_reports))
        .route("/admin/chat/reports/{id}", get(admin::get_report))
        .route("/admin/chat/reports/{id}/action", post(admin::act))
        .route("/admin/chat/messages/{id}/redact", post(admin::redact))
        .route(
            "/admin/chat/conversations/{id}/messages",
            get(admin::conversation_messages),
        )
        .route("/admin/chat/audit", get(admin::audit_log))
        .route(
            "/chat/blocks/{user_id}",
            axum::routing::delete(blocks::remove),
        )
        .route("/users/me/presence", post(users::heartbeat))
        .route("/users/{id}/presence", get(users::presence))
        .route("/events", get(crate::ws::fallback::sse))
        .route("/events/poll", get(crate::ws::fallback::poll))
        .route("/ws", get(crate::ws::upgrade))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(track_requests))
        .with_state(state)
}

/// Page size from a `limit` parameter: the default when absent, 422 below 1,
/// capped at `max`.
pub fn page_limit(requested: Option<i64>, default: i64, max: i64) -> Result<i64, ChatError> {
    match requested {
        None => Ok(default),
        Some(n) if n >= 1 => Ok(n.min(max)),
        Some(_) => Err(ChatError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and {max}"),
        )),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

/// Counts requests and their latency by route pattern (never the raw URL, so
/// ids do not explode the label space) and status.
async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("parley_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("parley_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed());
    response
}
