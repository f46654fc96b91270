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
pub mod jwks;
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
pub fn check_origin(
    settings: &Settings,
    headers: &axum::http::HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    if origin_allowed(&settings.realtime, headers, peer) {
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

/// Whether a browser's `Origin` may open a realtime connection: one of the
/// allowed origins; without a list, the same origin — the public origin, or
/// the host the request was sent to (as a trusted proxy forwarded it, else
/// the `Host` header). No `Origin`: not a browser, allowed.
fn origin_allowed(
    realtime: &crate::config::RealtimeSettings,
    headers: &axum::http::HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if !realtime.allowed_origins.is_empty() {
        return realtime
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed == origin);
    }
    if realtime.public_origin.as_deref() == Some(origin) {
        return true;
    }
    let forwarded = peer
        .filter(|ip| realtime.trusted_proxies.contains(ip))
        .and_then(|_| forwarded_host(headers));
    let host = forwarded.or_else(|| {
        headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    host.is_some() && origin_host == host.as_deref()
}

/// The host a proxy says the request was sent to: `X-Forwarded-Host`, else
/// `Forwarded: host=` (the first hop's, the one nearest the browser).
fn forwarded_host(headers: &axum::http::HeaderMap) -> Option<String> {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    first("x-forwarded-host").or_else(|| {
        first("forwarded")?.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            key.eq_ignore_ascii_case("host")
                .then(|| value.trim_matches('"').to_owned())
        })
    })
}

/// Proof that a realtime request comes from an allowed origin (or from no
/// browser at all), checked with the TCP peer's address for trusted proxies.
pub struct AllowedOrigin;

impl axum::extract::FromRequestParts<AppState> for AllowedOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        check_origin(&state.settings, &parts.headers, peer).map(|()| Self)
    }
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

/// The headers every answer carries unless its handler set its own: no
/// type sniffing, no referrer, never inside another site's frame, and a
/// Content-Security-Policy that lets a response load nothing (pages of the
/// web app set their own, see [`web`]).
pub async fn security_headers(request: Request, next: Next) -> Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn the_same_origin_is_the_public_one_or_the_host_a_trusted_proxy_names() {
        let mut realtime = crate::config::RealtimeSettings::default();
        let proxy: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let page = [
            ("origin", "https://chat.example.com"),
            ("host", "parley:8080"),
        ];
        assert!(!origin_allowed(&realtime, &headers(&page), Some(proxy)));
        realtime.public_origin = Some("https://chat.example.com".into());
        assert!(origin_allowed(&realtime, &headers(&page), Some(proxy)));

        realtime.public_origin = None;
        realtime.trusted_proxies = vec![proxy];
        let forwarded = [
            ("origin", "https://chat.example.com"),
            ("host", "parley:8080"),
            (
                "forwarded",
                "for=1.2.3.4;host=\"chat.example.com\";proto=https, for=10.0.0.2",
            ),
        ];
        assert!(origin_allowed(&realtime, &headers(&forwarded), Some(proxy)));
        let stranger: std::net::IpAddr = "10.0.0.9".parse().unwrap();
        assert!(
            !origin_allowed(&realtime, &headers(&forwarded), Some(stranger)),
            "only a trusted proxy is believed"
        );
        let x_forwarded = [
            ("origin", "https://chat.example.com"),
            ("host", "parley:8080"),
            ("x-forwarded-host", "chat.example.com, inner.example"),
        ];
        assert!(origin_allowed(
            &realtime,
            &headers(&x_forwarded),
            Some(proxy)
        ));
        assert!(
            origin_allowed(&realtime, &headers(&[("host", "x")]), None),
            "no Origin: not a browser"
        );
    }
}
