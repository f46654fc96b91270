//! Liveness, readiness and Prometheus metrics.

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, error::ApiJson};

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when a dependency failed.
    pub status: &'static str,
    /// Per-dependency result (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
    /// `ok`, or `degraded` while Redis does not answer or deliver (the node
    /// still serves: messages are stored and acknowledged, realtime delivery
    /// across nodes waits). Absent on a single node without Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<&'static str>,
    /// This node's id in the cluster (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The attachments' blob store: `ok` or `degraded` (uploads and
    /// downloads fail; everything else serves). Absent when attachments are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs: Option<&'static str>,
    /// clamd: `ok` or `degraded` (attachments wait in `pending_scan`).
    /// Absent when attachments are off or no scanner is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanner: Option<&'static str>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> ApiJson<Health> {
    ApiJson(Health {
        status: "ok",
        database: None,
        redis: None,
        node: None,
        blobs: None,
        scanner: None,
    })
}

/// The process can serve: the database answers (Redis, the blob store and
/// the virus scanner are reported, but a node without them still serves).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, ApiJson<Health>) {
    let db_ok = state.chat.database_ready().await;
    let (blobs, scanner) = state.chat.attachments_ready().await;
    let degraded = |ok: bool| if ok { "ok" } else { "degraded" };
    let (status, word) = if db_ok {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        status,
        ApiJson(Health {
            status: word,
            database: Some(word),
            redis: state.chat.cluster_ready().map(degraded),
            node: state.chat.node_id().map(str::to_owned),
            blobs: blobs.map(degraded),
            scanner: scanner.map(degraded),
        }),
    )
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> String {
    let (conversations, users) = state.chat.live_actor_counts();
    metrics::gauge!("parley_conversation_actors_live").set(conversations as f64);
    metrics::gauge!("parley_user_actors_live").set(users as f64);
    if let Ok((rows, oldest)) = state.chat.outbox_backlog().await {
        metrics::gauge!("parley_outbox_backlog").set(rows as f64);
        metrics::gauge!("parley_outbox_oldest_seconds").set(oldest);
    }
    state.metrics.render()
}
