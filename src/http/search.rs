//! `GET /chat/search`: full-text search of the caller's messages.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiQuery, ErrorBody},
};
use crate::{
    chat::search::SearchRequest,
    domain::{model::Page, search::SearchHit},
};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct SearchQueryParams {
    /// 1–200 characters: words, "phrases", -excluded, or; the last word
    /// matches as a prefix. Accents do not matter.
    #[param(schema_with = crate::domain::search::query_schema, required = true)]
    pub q: String,
    /// Only this conversation (one of the caller's).
    pub conversation_id: Option<Uuid>,
    /// Also archived conversations and those with someone the caller blocked.
    #[serde(default)]
    pub include_archived: bool,
    #[param(schema_with = crate::persistence::KeysetCursor::schema)]
    pub cursor: Option<String>,
    /// 1–50, default 20.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<i64>,
}

/// Messages of the caller's conversations matching `q`, newest first, each
/// with its conversation's display fields and a snippet with highlights.
/// Redacted messages never match; declined requests are left out.
#[utoipa::path(get, path = "/chat/search", tag = "messages", params(SearchQueryParams),
    responses((status = 200, body = Page<SearchHit>), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(params): ApiQuery<SearchQueryParams>,
) -> Result<ApiJson<Page<SearchHit>>, ApiError> {
    let page = state
        .chat
        .search(
            caller.id(),
            &SearchRequest {
                query: &params.q,
                conversation: params.conversation_id,
                include_archived: params.include_archived,
                cursor: params.cursor.as_deref(),
                limit: params.limit,
            },
        )
        .await?;
    Ok(ApiJson(page))
}
