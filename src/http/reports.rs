//! `POST /chat/reports`: report a user (and a conversation or message). The
//! evidence is frozen server-side at once; the reporter may block in the same
//! request.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    AppState,
    auth::AuthUser,
    blocks,
    error::{ApiError, ApiJson, ErrorBody},
};
use crate::{
    domain::{ChatError, ConversationId, UserId},
    persistence::{conversations, reports, users},
};

/// Report categories users may choose.
pub const CATEGORIES: [&str; 5] = ["spam", "harassment", "scam", "inappropriate", "other"];
/// Longest report description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 2_000;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportRequest {
    pub reported_user_id: String,
    /// A conversation of the caller's with the reported user.
    pub conversation_id: Option<Uuid>,
    /// A message in that conversation (needs `conversationId`).
    pub message_id: Option<Uuid>,
    /// spam, harassment, scam, inappropriate or other.
    pub category: String,
    #[serde(default)]
    pub description: String,
    /// Also block the reported user.
    #[serde(default)]
    pub block: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportReceipt {
    pub id: Uuid,
    pub status: &'static str,
    pub blocked: bool,
}

/// Report a user; the evidence (the messages around the reported one, the
/// participants and the context) is frozen now.
#[utoipa::path(post, path = "/chat/reports", tag = "safety", request_body = ReportRequest,
    responses((status = 201, body = ReportReceipt), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(request): ApiJson<ReportRequest>,
) -> Result<(StatusCode, ApiJson<ReportReceipt>), ApiError> {
    let reported = UserId::parse(&request.reported_user_id)?;
    if &reported == caller.id() {
        return Err(ChatError::invalid("self_report", "you cannot report yourself").into());
    }
    if !CATEGORIES.contains(&request.category.as_str()) {
        return Err(ChatError::invalid(
            "invalid_category",
            "category must be spam, harassment, scam, inappropriate or other",
        )
        .into());
    }
    let description = request.description.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS
        || description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ChatError::invalid(
            "invalid_description",
            "the description is at most 2,000 printable characters",
        )
        .into());
    }
    if users::find(&state.pool, &reported).await?.is_none() {
        return Err(ChatError::NotFound { what: "user" }.into());
    }
    if request.message_id.is_some() && request.conversation_id.is_none() {
        return Err(ChatError::invalid(
            "conversation_required",
            "a reported message needs its conversationId",
        )
        .into());
    }
    if let Some(conversation) = request.conversation_id.map(ConversationId) {
        if !conversations::is_participant(&state.pool, conversation, caller.id()).await? {
            return Err(ApiError::not_found());
        }
        if !conversations::is_participant(&state.pool, conversation, &reported).await? {
            return Err(ChatError::invalid(
                "not_in_conversation",
                "the reported user is not in that conversation",
            )
            .into());
        }
        if let Some(message) = request.message_id
            && !conversations::has_message(&state.pool, conversation, message).await?
        {
            return Err(ApiError::not_found());
        }
    }
    let id = reports::create(
        &state.pool,
        &reports::NewReport {
            reporter: caller.id(),
            reported: &reported,
            conversation: request.conversation_id,
            message: request.message_id,
            category: &request.category,
            description,
            evidence_messages: state.chat.safety().evidence_messages(),
        },
    )
    .await?;
    state.chat.safety().reported(&reported);
    if request.block {
        blocks::block(&state, caller.id(), &reported).await?;
    }
    Ok((
        StatusCode::CREATED,
        ApiJson(ReportReceipt {
            id,
            status: "open",
            blocked: request.block,
        }),
    ))
}
