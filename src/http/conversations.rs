//! `/chat/conversations`: find-or-create, list (the inbox), and fetch one.

use axum::{extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody},
};
use crate::{
    domain::{
        ChatError, ConversationId,
        model::{Conversation, ConversationContext, Page},
    },
    persistence::{conversations::ParticipantFlag, threads::MemberView},
};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct CreateConversationRequest {
    /// The other user (the host platform's id). Without it, `context` names
    /// a context thread the caller is a member of, which is opened.
    #[serde(default, deserialize_with = "super::error::not_null")]
    #[schema(schema_with = crate::domain::ids::user_id_schema)]
    pub participant_id: Option<String>,
    /// What the conversation is about: a context the platform registered for
    /// both participants (`PUT /internal/contexts/...`); its registered title
    /// and subtitle are used. One conversation per pair and context.
    #[serde(default, deserialize_with = "super::error::not_null")]
    #[schema(nullable = false)]
    pub context: Option<ConversationContext>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListConversationsQuery {
    /// `inbox` (default), `unread`, `requests` (message requests waiting for you) or `archived`.
    #[param(schema_with = crate::chat::conversations::inbox_filter_schema)]
    pub filter: Option<String>,
    #[param(schema_with = crate::persistence::KeysetCursor::schema)]
    pub cursor: Option<String>,
    /// Page size, 1-100 (default 20; larger values are capped at 100).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<i64>,
}

/// Find or create the direct conversation with `participantId` in `context`,
/// or (without `participantId`) open the thread of `context`.
#[utoipa::path(
    post, path = "/chat/conversations", tag = "conversations",
    request_body = CreateConversationRequest,
    responses(
        (status = 201, description = "Created", body = Conversation),
        (status = 200, description = "Already existed (same pair and context, either direction), or the context's thread", body = Conversation),
        (status = 403, description = "Not a member of the context's thread, or the context is not registered for both", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, description = "No such participant", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(request): ApiJson<CreateConversationRequest>,
) -> Result<(StatusCode, ApiJson<Conversation>), ApiError> {
    let (view, created) = match (&request.participant_id, &request.context) {
        (Some(participant), context) => {
            state
                .chat
                .open_direct(&caller.0, participant, context.as_ref())
                .await?
        }
        (None, Some(context)) => (state.chat.open_thread(caller.id(), context).await?, false),
        (None, None) => {
            return Err(ApiError::from(ChatError::invalid(
                "participant_required",
                "name a participantId, or the context of a thread you are a member of",
            )));
        }
    };
    let status = super::created_or_ok(created);
    Ok((status, ApiJson(view)))
}

/// The caller's conversations, most recent activity first.
#[utoipa::path(
    get, path = "/chat/conversations", tag = "conversations",
    params(ListConversationsQuery),
    responses((status = 200, body = Page<Conversation>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<ListConversationsQuery>,
) -> Result<ApiJson<Page<Conversation>>, ApiError> {
    let page = state
        .chat
        .inbox(
            caller.id(),
            query.filter.as_deref(),
            query.cursor.as_deref(),
            query.limit,
        )
        .await?;
    Ok(ApiJson(page))
}

/// One conversation the caller takes part in (404 otherwise).
#[utoipa::path(
    get, path = "/chat/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Conversation>, ApiError> {
    let id = ConversationId::parse(&id)?;
    Ok(ApiJson(state.chat.conversation(caller.id(), id).await?))
}

async fn answer_request(
    state: AppState,
    caller: AuthUser,
    id: String,
    accept: bool,
) -> Result<ApiJson<Conversation>, ApiError> {
    let id = ConversationId::parse(&id)?;
    Ok(ApiJson(
        state.chat.answer_request(caller.id(), id, accept).await?,
    ))
}

/// Accept a message request made to the caller (replying accepts too).
#[utoipa::path(post, path = "/chat/conversations/{id}/accept", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "No request to answer", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn accept(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Conversation>, ApiError> {
    answer_request(state, caller, id, true).await
}

/// Decline a message request made to the caller: the sender can send no more.
#[utoipa::path(post, path = "/chat/conversations/{id}/decline", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "No request to answer", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn decline(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Conversation>, ApiError> {
    answer_request(state, caller, id, false).await
}

async fn flag(
    state: AppState,
    caller: AuthUser,
    id: String,
    flag: ParticipantFlag,
    on: bool,
) -> Result<ApiJson<Conversation>, ApiError> {
    let id = ConversationId::parse(&id)?;
    Ok(ApiJson(
        state.chat.set_flag(caller.id(), id, flag, on).await?,
    ))
}

/// Mute: no notifications for new messages (they still arrive and count as unread).
#[utoipa::path(post, path = "/chat/conversations/{id}/mute", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn mute(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Conversation>, ApiError> {
    flag(state, caller, id, ParticipantFlag::Muted, true).await
}

/// Unmute.
#[utoipa::path(delete, path = "/chat/conversations/{id}/mute", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unmute(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Conversation>, ApiError> {
    flag(state, caller, id, ParticipantFlag::Muted, false).await
}

/// Archive: out of the inbox and the unread badge, and no notifications, until
/// unarchived (new messages do not unarchive it).
#[utoipa::path(post, path = "/chat/conversations/{id}/archive", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn archive(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Conversation>, ApiError> {
    flag(state, caller, id, ParticipantFlag::Archived, true).await
}

/// Unarchive.
#[utoipa::path(delete, path = "/chat/conversations/{id}/archive", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unarchive(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Conversation>, ApiError> {
    flag(state, caller, id, ParticipantFlag::Archived, false).await
}

/// The members of a conversation the caller takes part in: each with their
/// role in the thread and, where read receipts are shared, how far they have
/// read (what "seen by 3 of 5" is counted from).
#[utoipa::path(
    get, path = "/chat/conversations/{id}/members", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Vec<MemberView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn members(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Vec<MemberView>>, ApiError> {
    let id = ConversationId::parse(&id)?;
    Ok(ApiJson(state.chat.members(caller.id(), id).await?))
}
