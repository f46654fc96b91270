//! The REST transport: one module of handlers per resource, and what every
//! transport over HTTP shares — the [`AppState`], auth, the JSON error
//! shape, the browser origin check and request metrics. Handlers translate
//! a request into a call of the application layer (`crate::chat`) and its
//! answer into JSON; they hold no rules and no SQL. REST is the source of
//! truth; the WebSocket (`crate::ws`) only adds speed. Both are mounted on
//! one router by `crate::server`; this module never imports `ws`.

pub mod admin;
pub mod attachments;
pub mod auth;
pub mod blocks;
pub mod conversations;
pub mod error;
pub mod health;
pub mod internal;
pub mod messages;
pub mod notifications;
pub mod push;
pub mod reports;
pub mod search;
pub mod sync;
pub mod users;
pub mod web;

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::StatusCode,
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::PrometheusHandle;

use self::{auth::JwtKeys, error::ApiError};
use crate::{chat::ChatCore, config::Settings};

/// Everything a request handler may use; cheap to clone (all handles).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub chat: ChatCore,
    pub jwt: Arc<JwtKeys>,
    pub metrics: PrometheusHandle,
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

/// 201 for something this call created, 200 for what already existed (an
/// idempotent repeat).
pub fn created_or_ok(created: bool) -> axum::http::StatusCode {
    if created {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    }
}

/// Whether a browser request from its `Origin` may open a realtime connection
/// (cross-site WebSocket hijacking guard). No `Origin` (not a browser) is
/// allowed; otherwise it must be in the allow-list, or match the `Host` the
/// request was sent to when no list is configured. Refused: 403 `origin_not_allowed`.
pub fn check_origin(settings: &Settings, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    if origin_allowed(&settings.realtime.allowed_origins, headers) {
        Ok(())
    } else {
        let origin = headers
            .get(axum::http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or_default();
        tracing::info!(
            origin,
            "refused: origin not allowed for realtime connections"
        );
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not open realtime connections",
        ))
    }
}

fn origin_allowed(allowed_origins: &[String], headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed_origins.is_empty() {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        return host.is_some() && origin_host == host;
    }
    allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed == origin)
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

/// Counts requests and their latency by route pattern (never the raw URL, so
/// ids do not explode the label space) and status.
pub async fn track_requests(request: Request, next: Next) -> Response {
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
