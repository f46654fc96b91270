//! `/chat/blocks`: global blocks. A block is checked before any message is
//! stored, and stops typing, presence and read receipts in both directions.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiPath, ErrorBody},
};
use crate::domain::model::UserSummary;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockRequest {
    #[schema(schema_with = crate::domain::ids::user_id_schema)]
    pub user_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockView {
    pub user: UserSummary,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct BlockList {
    pub items: Vec<BlockView>,
}

/// Block a user everywhere: 201 when new, 200 when already blocked.
#[utoipa::path(post, path = "/chat/blocks", tag = "safety", request_body = BlockRequest,
    responses((status = 201, description = "Blocked"), (status = 200, description = "Already blocked"),
              (status = 401, body = ErrorBody), (status = 403, description = "The caller named themselves", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, description = "Too many blocks for now (see Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(request): ApiJson<BlockRequest>,
) -> Result<StatusCode, ApiError> {
    let created = state.chat.block(caller.id(), &request.user_id).await?;
    Ok(super::created_or_ok(created))
}

/// Lift a block (204 whether or not there was one).
#[utoipa::path(delete, path = "/chat/blocks/{userId}", tag = "safety",
    params(("userId" = String, Path, description = "The blocked user")),
    responses((status = 204, description = "Not blocked (any more)"), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.chat.unblock(caller.id(), &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The users the caller blocks, newest first.
#[utoipa::path(get, path = "/chat/blocks", tag = "safety",
    responses((status = 200, body = BlockList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<ApiJson<BlockList>, ApiError> {
    let items = state
        .chat
        .blocked_users(caller.id())
        .await?
        .into_iter()
        .map(|(user, created_at)| BlockView { user, created_at })
        .collect();
    Ok(ApiJson(BlockList { items }))
}
