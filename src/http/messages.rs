//! `/chat/conversations/:id/messages` and `/read`: send, page, read pointer.
//! Writes go through the conversation's actor; reads come straight from Postgres.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody},
    page_limit,
};
use crate::{
    cluster::limits::LimitKind,
    domain::{
        ChatError, ConversationId,
        model::{Message, ReadState},
    },
    persistence::{
        conversations,
        messages::{self, PageDirection},
    },
};

/// Default and largest page of history.
const HISTORY_DEFAULT_LIMIT: i64 = 50;
const HISTORY_MAX_LIMIT: i64 = 100;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessageRequest {
    /// 1-5,000 characters after trimming; HTML is stripped to text.
    pub body: String,
    /// The client's id for this message: a repeat with the same id returns the
    /// original message instead of storing a new one.
    pub client_message_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages with a greater `seq`, oldest first.
    pub after: Option<i64>,
    /// Messages with a smaller `seq` (the page just before it).
    pub before: Option<i64>,
    /// Page size, 1-100 (default 50; larger values are capped at 100).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    /// Always in ascending `seq` order.
    pub items: Vec<Message>,
    /// The `seq` to pass as the same parameter (`after`, or `before` for the
    /// newest page and `before` pages) to continue in this direction.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The highest `seq` the caller has seen; clamped to the conversation's last message.
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
        .send(id, caller.id(), &request.body, &request.client_message_id)
        .await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(outcome.message)))
}

/// A page of messages by `seq`.
#[utoipa::path(
    get, path = "/chat/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "Conversation id"), HistoryQuery),
    responses((status = 200, body = MessagePage), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<ApiJson<MessagePage>, ApiError> {
    state
        .chat
        .safety()
        .check_limit(caller.id(), LimitKind::Reads)?;
    let id = ConversationId::parse(&id)?;
    let direction = match (query.after, query.before) {
        (None, None) => PageDirection::Latest,
        (Some(after), None) if after >= 0 => PageDirection::After(after),
        (None, Some(before)) if before >= 0 => PageDirection::Before(before),
        (Some(_), Some(_)) => {
            return Err(ChatError::invalid(
                "invalid_query",
                "use either after or before, not both",
            )
            .into());
        }
        _ => {
            return Err(ChatError::invalid(
                "invalid_query",
                "after and before must be zero or positive",
            )
            .into());
        }
    };
    let limit = page_limit(query.limit, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)?;
    if matches!(direction, PageDirection::After(_)) {
        // Catching up after a gap or a reconnect (the client algorithm in the README).
        metrics::counter!("parley_resync_requests_total", "kind" => "history_after").increment(1);
    }
    if !conversations::is_participant(&state.pool, id, caller.id()).await? {
        return Err(ApiError::not_found());
    }
    let page = messages::page(&state.pool, id, direction, limit).await?;
    let edge = match direction {
        PageDirection::After(_) => page.items.last(),
        _ => page.items.first(),
    };
    let next_cursor = page
        .has_more
        .then(|| edge.map(|m| m.seq.to_string()))
        .flatten();
    Ok(ApiJson(MessagePage {
        has_more: page.has_more,
        next_cursor,
        items: page.items,
    }))
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
