//! `/chat/conversations`: find-or-create, list (the inbox), and fetch one.

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
        ChatError, ConversationId, UserId,
        model::{Conversation, ConversationContext, DirectPair},
    },
    persistence::{
        KeysetCursor, contexts,
        conversations::{self, InboxFilter, ParticipantFlag},
        users,
    },
};

/// Default and largest page of the inbox.
const INBOX_DEFAULT_LIMIT: i64 = 20;
const INBOX_MAX_LIMIT: i64 = 100;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateConversationRequest {
    /// The other user (the host platform's id).
    pub participant_id: String,
    /// What the conversation is about: a context the platform registered for
    /// both participants (`PUT /internal/contexts/...`); its registered title
    /// and subtitle are used. One conversation per pair and context.
    pub context: Option<ConversationContext>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListConversationsQuery {
    /// `inbox` (default), `unread`, `requests` (message requests waiting for you) or `archived`.
    pub filter: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1-100 (default 20; larger values are capped at 100).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// Find or create the direct conversation with `participantId` in `context`.
#[utoipa::path(
    post, path = "/chat/conversations", tag = "conversations",
    request_body = CreateConversationRequest,
    responses(
        (status = 201, description = "Created", body = Conversation),
        (status = 200, description = "Already existed (same pair and context, either direction)", body = Conversation),
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
    let participant = UserId::parse(&request.participant_id)?;
    let pair = DirectPair::new(caller.id().clone(), participant.clone())?;
    let context = match &request.context {
        Some(context) => Some(registered_context(&state, context, &pair).await?),
        None if state.settings.require_context_for.contains(&caller.0.role) => {
            return Err(ChatError::forbidden(
                "context_required",
                "you can start a conversation only about an application or booking (a context)",
            )
            .into());
        }
        None => None,
    };
    if users::find(&state.pool, &participant).await?.is_none() {
        return Err(ChatError::NotFound {
            what: "participant",
        }
        .into());
    }
    // Finding is free; only starting a new conversation is limited and
    // refused to suspended users.
    let (id, created) = match conversations::find_direct(&state.pool, &pair, context.as_ref())
        .await?
    {
        Some(existing) => (existing, false),
        None => {
            state.chat.safety().check_may_post(caller.id()).await?;
            state
                .chat
                .safety()
                .check_limit(caller.id(), LimitKind::NewConversations)?;
            conversations::find_or_create_direct(&state.pool, caller.id(), &pair, context.as_ref())
                .await?
        }
    };
    let view = conversations::view_for_user(&state.pool, id, caller.id())
        .await?
        .ok_or_else(|| ChatError::Internal(format!("conversation {id} vanished after creation")))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(view)))
}

/// The registered context a creation request names, if both participants
/// may talk in it (403 otherwise); its title and subtitle are the banner,
/// whatever the request carried.
async fn registered_context(
    state: &AppState,
    requested: &ConversationContext,
    pair: &DirectPair,
) -> Result<ConversationContext, ApiError> {
    requested.validate()?;
    let registered = contexts::find(&state.pool, &requested.kind, &requested.id).await?;
    let allowed = registered.as_ref().is_some_and(|r| {
        [&pair.low, &pair.high]
            .iter()
            .all(|user| r.allowed_user_ids.iter().any(|id| id == user.as_str()))
    });
    match registered {
        Some(r) if allowed => Ok(ConversationContext {
            kind: r.kind,
            id: r.id,
            title: r.title,
            subtitle: r.subtitle,
        }),
        _ => Err(ChatError::forbidden(
            "context_not_allowed",
            "that context is not registered for both of you",
        )
        .into()),
    }
}

/// The caller's conversations, most recent activity first.
#[utoipa::path(
    get, path = "/chat/conversations", tag = "conversations",
    params(ListConversationsQuery),
    responses((status = 200, body = ConversationPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.id()))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<ListConversationsQuery>,
) -> Result<ApiJson<ConversationPage>, ApiError> {
    state
        .chat
        .safety()
        .check_limit(caller.id(), LimitKind::Reads)?;
    let filter = match query.filter.as_deref() {
        None | Some("inbox") => InboxFilter::Inbox,
        Some("unread") => InboxFilter::Unread,
        Some("requests") => InboxFilter::Requests,
        Some("archived") => InboxFilter::Archived,
        Some(_) => {
            return Err(ChatError::invalid(
                "invalid_filter",
                "filter must be one of: inbox, unread, requests, archived",
            )
            .into());
        }
    };
    let cursor = query
        .cursor
        .as_deref()
        .map(KeysetCursor::decode)
        .transpose()?;
    let limit = page_limit(query.limit, INBOX_DEFAULT_LIMIT, INBOX_MAX_LIMIT)?;
    let page = conversations::inbox(&state.pool, caller.id(), filter, cursor, limit).await?;
    Ok(ApiJson(ConversationPage {
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor.map(|c| c.encode()),
        items: page.items,
    }))
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
    state
        .chat
        .safety()
        .check_limit(caller.id(), LimitKind::Reads)?;
    let id = ConversationId::parse(&id)?;
    conversations::view_for_user(&state.pool, id, caller.id())
        .await?
        .map(ApiJson)
        .ok_or_else(ApiError::not_found)
}

/// The caller's view after a change, or 404.
async fn view(
    state: &AppState,
    id: ConversationId,
    caller: &AuthUser,
) -> Result<ApiJson<Conversation>, ApiError> {
    conversations::view_for_user(&state.pool, id, caller.id())
        .await?
        .map(ApiJson)
        .ok_or_else(ApiError::not_found)
}

async fn answer_request(
    state: AppState,
    caller: AuthUser,
    id: String,
    accept: bool,
) -> Result<ApiJson<Conversation>, ApiError> {
    let id = ConversationId::parse(&id)?;
    state.chat.respond(id, caller.id(), accept).await?;
    view(&state, id, &caller).await
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
    state
        .chat
        .set_flag(&state.pool, id, caller.id(), flag, on)
        .await?;
    view(&state, id, &caller).await
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
