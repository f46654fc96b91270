//! The server-to-server API the host platform calls, authenticated by an API
//! key (`X-Api-Key`), not a user token: register the business contexts people
//! may talk about, and upsert users.

use axum::{
    extract::{FromRequestParts, State},
    http::{StatusCode, request::Parts},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    AppState,
    error::{ApiError, ApiJson, ApiPath, ErrorBody},
};
use crate::{
    domain::{
        ConversationId,
        model::{ConversationContext, Message},
        thread::ThreadMember,
    },
    persistence::{contexts::RegisteredContext, users::UserProfile},
};

/// Proof that the request carries the configured API key.
pub struct PlatformKey;

impl FromRequestParts<AppState> for PlatformKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.settings.auth.internal_api_key else {
            tracing::info!("refused: the server-to-server API is disabled");
            return Err(ApiError::unauthorized(
                "the server-to-server API is disabled (PARLEY_INTERNAL_API_KEY is not set)",
            ));
        };
        let given = parts
            .headers
            .get("x-api-key")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected.expose().as_bytes()) {
            Ok(Self)
        } else {
            tracing::info!(
                path = parts.uri.path(),
                "refused: missing or wrong X-Api-Key"
            );
            Err(ApiError::unauthorized("missing or wrong X-Api-Key"))
        }
    }
}

/// Compares without an early exit, so timing does not reveal the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `/internal/contexts/{type}/{id}`: which context.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ContextPath {
    /// The kind of object, e.g. `application` (`{type}` in the document).
    #[param(rename = "type", schema_with = crate::domain::model::context_type_schema)]
    pub kind: String,
    /// The platform's id of it.
    #[param(schema_with = crate::domain::model::context_id_schema)]
    pub id: String,
}

/// `/internal/users/{id}`: the platform's id of the user.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    #[param(schema_with = crate::domain::ids::user_id_schema)]
    pub id: String,
}

/// `allowedUserIds` as the OpenAPI document states it.
fn allowed_user_ids_schema() -> utoipa::openapi::Array {
    utoipa::openapi::ArrayBuilder::new()
        .items(crate::domain::ids::user_id_schema())
        .max_items(Some(crate::chat::platform::MAX_ALLOWED_USERS))
        .build()
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContextRegistration {
    #[schema(schema_with = crate::domain::model::context_text_schema)]
    pub title: Option<String>,
    #[schema(schema_with = crate::domain::model::context_text_schema)]
    pub subtitle: Option<String>,
    /// The users who may open direct conversations about this context (at
    /// most 1,000).
    #[serde(default)]
    #[schema(schema_with = allowed_user_ids_schema)]
    pub allowed_user_ids: Vec<String>,
    /// The context's group thread and its members, exactly: members not
    /// listed leave it. Omitted: the thread (if any) is left as it is.
    pub thread: Option<ThreadRegistration>,
    /// The platform already connected these people: their conversation in
    /// this context is never a message request.
    #[serde(default)]
    pub pre_accepted: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThreadRegistration {
    /// Everyone in the thread, with their role (`worker`, `supervisor`,
    /// `borrower_admin`, `party`, …); at most `PARLEY_MAX_THREAD_MEMBERS`.
    pub members: Vec<ThreadMember>,
}

/// A context's thread after the call.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadView {
    pub conversation_id: Uuid,
    pub members: Vec<ThreadMember>,
    /// The system messages this call added (members joining and leaving).
    pub system_messages: Vec<Message>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContextView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub title: Option<String>,
    pub subtitle: Option<String>,
    pub allowed_user_ids: Vec<String>,
    pub pre_accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadView>,
}

/// Register (or replace) a business context, and set its thread's members.
#[utoipa::path(put, path = "/internal/contexts/{type}/{id}", tag = "internal",
    params(ContextPath),
    request_body = ContextRegistration,
    responses((status = 201, body = ContextView), (status = 200, body = ContextView),
              (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("platformKey" = [])))]
pub async fn put_context(
    State(state): State<AppState>,
    _key: PlatformKey,
    ApiPath(ContextPath { kind, id }): ApiPath<ContextPath>,
    ApiJson(request): ApiJson<ContextRegistration>,
) -> Result<(StatusCode, ApiJson<ContextView>), ApiError> {
    let registered = RegisteredContext {
        kind,
        id,
        title: request.title,
        subtitle: request.subtitle,
        pre_accepted: request.pre_accepted,
        allowed_user_ids: request.allowed_user_ids,
    };
    let created = state.chat.register_context(&registered).await?;
    let thread = match request.thread {
        Some(thread) => {
            let context = ConversationContext {
                kind: registered.kind.clone(),
                id: registered.id.clone(),
                title: registered.title.clone(),
                subtitle: registered.subtitle.clone(),
            };
            let (id, system_messages) = state.chat.set_thread(&context, &thread.members).await?;
            Some(ThreadView {
                conversation_id: id.0,
                members: thread.members,
                system_messages,
            })
        }
        None => None,
    };
    let view = ContextView {
        kind: registered.kind,
        id: registered.id,
        title: registered.title,
        subtitle: registered.subtitle,
        allowed_user_ids: registered.allowed_user_ids,
        pre_accepted: registered.pre_accepted,
        thread,
    };
    Ok((super::created_or_ok(created), ApiJson(view)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRegistration {
    #[schema(schema_with = crate::persistence::users::name_schema)]
    pub name: String,
    #[schema(schema_with = crate::persistence::users::role_schema)]
    pub role: String,
    pub email: Option<String>,
    #[serde(default)]
    pub verified: bool,
}

/// Create or update a user (before they ever sign in, so others can reach them).
#[utoipa::path(put, path = "/internal/users/{id}", tag = "internal",
    params(UserPath),
    request_body = UserRegistration,
    responses((status = 204, description = "Stored"), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("platformKey" = [])))]
pub async fn put_user(
    State(state): State<AppState>,
    _key: PlatformKey,
    ApiPath(UserPath { id }): ApiPath<UserPath>,
    ApiJson(request): ApiJson<UserRegistration>,
) -> Result<StatusCode, ApiError> {
    let profile = UserProfile::new(&id, &request.name, request.role, request.email)?;
    state.chat.register_user(&profile, request.verified).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemMessageRequest {
    /// What is said, as plain text (1-5,000 characters).
    #[schema(schema_with = crate::domain::text::body_schema)]
    pub body: String,
    /// What happened, as a key clients may render by (`booking.confirmed`;
    /// 1-64 of a-z, 0-9, `_`, `.`, `-`).
    #[schema(schema_with = crate::domain::thread::name_schema)]
    pub kind: String,
    /// Makes the call idempotent: the same id posts once (200 with the
    /// stored message after the first 201). Unique per platform.
    #[schema(schema_with = crate::domain::text::optional_client_message_id_schema)]
    pub client_message_id: Option<String>,
}

/// Post a system message about the context to its thread.
#[utoipa::path(post, path = "/internal/conversations/{id}/system-messages", tag = "internal",
    params(("id" = String, Path, description = "the thread's conversation id")),
    request_body = SystemMessageRequest,
    responses((status = 201, body = Message), (status = 200, description = "Repeated clientMessageId", body = Message),
              (status = 401, body = ErrorBody), (status = 404, description = "No such thread", body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("platformKey" = [])))]
pub async fn post_system_message(
    State(state): State<AppState>,
    _key: PlatformKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<SystemMessageRequest>,
) -> Result<(StatusCode, ApiJson<Message>), ApiError> {
    let conversation = ConversationId::parse(&id)?;
    let outcome = state
        .chat
        .post_system_message(
            conversation,
            &request.kind,
            &request.body,
            request.client_message_id.as_deref(),
        )
        .await?;
    let status = super::created_or_ok(outcome.created);
    Ok((status, ApiJson(outcome.message)))
}
