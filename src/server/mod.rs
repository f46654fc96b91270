//! The whole HTTP surface on one router: the REST handlers of [`crate::http`],
//! the realtime endpoints of [`crate::ws`], operations (health, metrics) and
//! the OpenAPI document; and how connections reach it ([`listener`]: the
//! accept loop and its limits, [`tls`]: TLS 1.3 termination). Sitting above
//! both transports, it is the only place that knows them both.

pub mod listener;
pub mod openapi;
pub mod tls;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{delete, get, post, put},
};

use crate::{
    http::{
        self, AppState, admin, attachments, blocks, conversations, health, internal, messages,
        notifications, push, reports, search, sync, users,
    },
    ws,
};

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.server.max_body_bytes;
    let cors = cors_layer(&state.settings.realtime.allowed_origins);
    Router::new()
        .route(
            "/chat/conversations",
            post(conversations::create).get(conversations::list),
        )
        .route("/chat/conversations/{id}", get(conversations::get_one))
        .route(
            "/chat/conversations/{id}/members",
            get(conversations::members),
        )
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
        .route(
            "/chat/conversations/{id}/attachments",
            post(attachments::start),
        )
        .route("/chat/attachments/{id}", get(attachments::get_one))
        .route(
            "/chat/attachments/{id}/complete",
            post(attachments::complete),
        )
        .route(
            "/chat/attachments/{id}/download-url",
            get(attachments::download_url),
        )
        .route(
            "/blobs/{*key}",
            put(attachments::put_blob).get(attachments::get_blob),
        )
        .route("/chat/search", get(search::search))
        .route("/chat/sync", get(sync::sync))
        .route(
            "/users/me/settings",
            get(users::get_settings).patch(users::patch_settings),
        )
        .route("/internal/contexts/{kind}/{id}", put(internal::put_context))
        .route(
            "/internal/conversations/{id}/system-messages",
            post(internal::post_system_message),
        )
        .route("/internal/users/{id}", put(internal::put_user))
        .route("/chat/blocks", post(blocks::create).get(blocks::list))
        .route("/chat/blocks/{user_id}", delete(blocks::remove))
        .route("/chat/reports", post(reports::create))
        .route("/admin/chat/reports", get(admin::list_reports))
        .route("/admin/chat/reports/{id}", get(admin::get_report))
        .route("/admin/chat/reports/{id}/action", post(admin::act))
        .route("/admin/chat/messages/{id}/redact", post(admin::redact))
        .route(
            "/admin/chat/conversations/{id}/messages",
            get(admin::conversation_messages),
        )
        .route(
            "/admin/chat/conversations/{id}/hold",
            post(admin::hold)
                .get(admin::get_hold)
                .delete(admin::release),
        )
        .route("/admin/chat/audit", get(admin::audit_log))
        .route("/admin/users/{id}", delete(admin::erase_user))
        .route("/admin/users/{id}/export", post(admin::export_user))
        .route(
            "/admin/users/{id}/exports/{export}",
            get(admin::user_export),
        )
        .route("/users/me/export", post(users::export))
        .route("/users/me/exports/{id}", get(users::get_export))
        .route("/admin/jobs", get(admin::jobs))
        .route("/admin/jobs/{name}/run", post(admin::run_job))
        .route("/admin/jobs/dead", get(admin::dead_jobs))
        .route("/admin/jobs/dead/{id}/retry", post(admin::retry_dead_job))
        .route("/notifications", get(notifications::list))
        .route("/notifications/read", post(notifications::read))
        .route(
            "/users/me/push-subscriptions",
            post(push::subscribe).delete(push::unsubscribe),
        )
        .route("/push/vapid-public-key", get(push::vapid_public_key))
        .route(
            "/users/me/notification-settings",
            get(notifications::get_preferences).patch(notifications::patch_preferences),
        )
        .route("/users/me/presence", post(users::heartbeat))
        .route("/users/{id}/presence", get(users::presence))
        .route("/realtime/ticket", post(sync::ticket))
        .route("/sdk/{*path}", get(http::web::sdk_file))
        .route(
            "/app",
            get(|| async { axum::response::Redirect::permanent("/app/") }),
        )
        .route("/app/", get(http::web::app_file))
        .route("/app/{*path}", get(http::web::app_file))
        .route("/app/config.json", get(http::web::app_config))
        .route("/dev/token", post(http::web::dev_token))
        .route("/events", get(ws::fallback::sse))
        .route("/events/poll", get(ws::fallback::poll))
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(http::track_requests))
        .layer(middleware::from_fn(http::security_headers))
        .layer(cors)
        .with_state(state)
}

/// CORS for pages of the allowed origins (`PARLEY_ALLOWED_ORIGINS`, the list
/// that guards the realtime endpoints): the REST API, SSE and long-poll may be
/// called from them with a bearer token (no cookies, so no credentials mode);
/// preflights are answered and cached for 10 minutes, and `Retry-After` is
/// readable by the page. The platform's `X-Api-Key` is not an allowed header:
/// the server-to-server API is never called from a browser. With no list,
/// only the server's own origin is served (no CORS needed).
fn cors_layer(allowed: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = if allowed.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            allowed
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}
