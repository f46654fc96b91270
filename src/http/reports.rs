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
    error::{ApiError, ApiJson, ErrorBody},
};
use crate::chat::moderation::ReportInput;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportRequest {
    #[schema(schema_with = crate::domain::ids::user_id_schema)]
    pub reported_user_id: String,
    /// A conversation of the caller's with the reported user.
    #[serde(default, deserialize_with = "super::error::not_null")]
    #[schema(nullable = false)]
    pub conversation_id: Option<Uuid>,
    /// A message in that conversation (needs `conversationId`).
    #[serde(default, deserialize_with = "super::error::not_null")]
    #[schema(nullable = false)]
    pub message_id: Option<Uuid>,
    #[schema(schema_with = crate::chat::moderation::category_schema)]
    pub category: String,
    #[serde(default)]
    #[schema(schema_with = crate::chat::moderation::description_schema)]
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
    responses((status = 201, body = ReportReceipt), (status = 401, body = ErrorBody),
              (status = 403, description = "The caller named themselves, or shares no conversation with the reported user", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, description = "Too many reports for now (see Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(request): ApiJson<ReportRequest>,
) -> Result<(StatusCode, ApiJson<ReportReceipt>), ApiError> {
    let input = ReportInput {
        reported_user_id: &request.reported_user_id,
        conversation_id: request.conversation_id,
        message_id: request.message_id,
        category: &request.category,
        description: &request.description,
        block: request.block,
    };
    let id = state.chat.report(caller.id(), input).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(ReportReceipt {
            id,
            status: "open",
            blocked: request.block,
        }),
    ))
}
