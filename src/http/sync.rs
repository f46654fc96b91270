//! `GET /chat/sync`, `POST .../typing` and `POST /realtime/ticket`: what a
//! reconnecting or HTTP-fallback client needs besides the resources
//! themselves.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody},
};
use crate::domain::{ChatError, ConversationId, model::Conversation};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    #[param(schema_with = crate::persistence::conversations::SyncCursor::schema)]
    pub since: Option<String>,
    /// At most this many conversations (1-500, default 500).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPage {
    /// Conversations that changed since the cursor (new messages, read state, …), oldest change first.
    pub items: Vec<Conversation>,
    /// Context threads the caller was removed from since the cursor: drop them.
    pub removed: Vec<uuid::Uuid>,
    /// Pass as `since` next time.
    pub cursor: String,
    /// More changes are waiting: sync again right away with `cursor`.
    pub has_more: bool,
}

/// Every conversation of the caller that changed since `since`, in one round trip.
#[utoipa::path(get, path = "/chat/sync", tag = "realtime",
    params(SyncQuery),
    responses((status = 200, body = SyncPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn sync(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<SyncQuery>,
) -> Result<ApiJson<SyncPage>, ApiError> {
    let page = state
        .chat
        .sync(caller.id(), query.since.as_deref(), query.limit)
        .await?;
    Ok(ApiJson(SyncPage {
        items: page.items,
        removed: page.removed,
        cursor: page.cursor.encode(),
        has_more: page.has_more,
    }))
}

/// What `POST .../typing` may say: started, then stopped.
const TYPING_STATES: [&str; 2] = ["started", "stopped"];

fn typing_state_schema() -> utoipa::openapi::Object {
    crate::domain::schema::one_of(&TYPING_STATES, "`started` or `stopped`")
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypingRequest {
    /// `started` (send again every few seconds while typing) or `stopped`.
    #[schema(schema_with = typing_state_schema)]
    pub state: String,
}

/// The REST twin of the `typing.started` / `typing.stopped` frames.
#[utoipa::path(post, path = "/chat/conversations/{id}/typing", tag = "realtime",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = TypingRequest,
    responses((status = 204, description = "Relayed (or throttled)"), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn typing(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<TypingRequest>,
) -> Result<StatusCode, ApiError> {
    let id = ConversationId::parse(&id)?;
    let started = match request.state.as_str() {
        state if state == TYPING_STATES[0] => true,
        state if state == TYPING_STATES[1] => false,
        _ => {
            return Err(
                ChatError::invalid("invalid_state", "state must be started or stopped").into(),
            );
        }
    };
    state.chat.typing(id, caller.id(), started).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A connect ticket: put it in the realtime URL instead of a token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectTicket {
    /// `GET /ws?ticket=…` (or `/events`, `/events/poll`); spent by its first use.
    pub ticket: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A single-use connect ticket for the realtime endpoints, valid 30 s, so
/// that the bearer token never rides in a URL (browsers cannot send headers
/// with `EventSource` or a WebSocket upgrade).
#[utoipa::path(post, path = "/realtime/ticket", tag = "realtime",
    responses((status = 201, body = ConnectTicket), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn ticket(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<(StatusCode, ApiJson<ConnectTicket>), ApiError> {
    let (ticket, expires_at) = state.chat.issue_ticket(&caller.0, caller.1).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(ConnectTicket { ticket, expires_at }),
    ))
}
