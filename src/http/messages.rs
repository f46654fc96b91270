//! `/chat/conversations/:id/messages` and `/read`: send, page, read pointer.
//! Writes go through the conversation's actor; reads come straight from Postgres.

use axum::{extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody},
};
use crate::domain::{
    ConversationId,
    model::{Message, Page, ReadState},
};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessageRequest {
    /// Plain text, 1-5,000 characters as sent, kept as typed (see the
    /// schema's pattern). May be empty when `attachmentIds` are given.
    #[schema(schema_with = crate::domain::text::body_schema)]
    pub body: String,
    /// The client's id for this message: a repeat with the same id returns the
    /// original message instead of storing a new one.
    #[schema(schema_with = crate::domain::text::client_message_id_schema)]
    pub client_message_id: String,
    /// Files to send with it (at most 10): the caller's own completed
    /// uploads in this conversation. The body may then be empty.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub attachment_ids: Vec<uuid::Uuid>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages with a greater `seq`, oldest first (with `before` too: the
    /// messages between the two).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Messages with a smaller `seq` (the page just before it).
    #[param(minimum = 0)]
    pub before: Option<i64>,
    /// Page size, 1-100 (default 50; larger values are capped at 100).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The highest `seq` the caller has seen; clamped to the conversation's last message.
    #[schema(minimum = 0)]
    pub seq: i64,
}

/// Send a message.
#[utoipa::path(
    post, path = "/chat/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = SendMessageRequest,
    responses(
        (status = 201, description = "Stored", body = Message),
        (status = 200, description = "Repeat of an earlier clientMessageId: the original message", body = Message),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "clientMessageId already used in another conversation", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn send(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<SendMessageRequest>,
) -> Result<(StatusCode, ApiJson<Message>), ApiError> {
    let id = ConversationId::parse(&id)?;
    let outcome = state
        .chat
        .send(
            id,
            caller.id(),
            &request.body,
            &request.client_message_id,
            &request.attachment_ids,
        )
        .await?;
    let status = super::created_or_ok(outcome.created);
    Ok((status, ApiJson(outcome.message)))
}

/// A page of messages by `seq`, always in ascending `seq` order. `nextCursor`
/// is the `seq` to pass as the same parameter (`after`, or `before` for the
/// newest page and `before` pages) to continue in that direction.
#[utoipa::path(
    get, path = "/chat/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "Conversation id"), HistoryQuery),
    responses((status = 200, body = Page<Message>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<ApiJson<Page<Message>>, ApiError> {
    let id = ConversationId::parse(&id)?;
    let page = state
        .chat
        .history(caller.id(), id, query.after, query.before, query.limit)
        .await?;
    Ok(ApiJson(page))
}

/// Move the caller's read pointer forward (never back).
#[utoipa::path(
    post, path = "/chat/conversations/{id}/read", tag = "messages",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = ReadRequest,
    responses((status = 200, body = ReadState), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn read(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<ReadRequest>,
) -> Result<ApiJson<ReadState>, ApiError> {
    let id = ConversationId::parse(&id)?;
    Ok(ApiJson(
        state.chat.mark_read(id, caller.id(), request.seq).await?,
    ))
}
