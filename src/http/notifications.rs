//! `/notifications`: the caller's in-app notifications, newest first, and
//! marking them read; `/users/me/notification-settings`: what reaches them how.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiQuery, ErrorBody},
};
use crate::{
    domain::{
        ChatError,
        model::{Notification, NotificationPreferences},
    },
    persistence::id_cursor,
};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// `nextCursor` of the previous page.
    #[param(schema_with = crate::persistence::id_cursor_schema)]
    pub cursor: Option<String>,
    /// Page size, 1-100 (default 50; larger values are capped at 100).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
    /// The caller's unread notifications, all pages together.
    pub unread_count: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct ReadNotificationsRequest {
    /// These notifications (1-100 of them).
    #[schema(min_items = 1, max_items = 100)]
    pub ids: Option<Vec<i64>>,
    /// And every notification with an id up to this one.
    pub up_to: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreadNotifications {
    pub unread_count: i64,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/notifications", tag = "notifications", params(NotificationsQuery),
    responses((status = 200, body = NotificationPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<NotificationsQuery>,
) -> Result<ApiJson<NotificationPage>, ApiError> {
    let before = query.cursor.as_deref().map(id_cursor).transpose()?;
    let (page, unread_count) = state
        .chat
        .notifications(caller.id(), before, query.limit)
        .await?;
    Ok(ApiJson(NotificationPage {
        has_more: page.has_more,
        items: page.items,
        next_cursor: page.next_cursor,
        unread_count,
    }))
}

/// Marks notifications read: `ids`, and everything up to `upTo`.
#[utoipa::path(post, path = "/notifications/read", tag = "notifications",
    request_body = ReadNotificationsRequest,
    responses((status = 200, body = UnreadNotifications), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(request): ApiJson<ReadNotificationsRequest>,
) -> Result<ApiJson<UnreadNotifications>, ApiError> {
    let ids = match request.ids {
        Some(ids) if ids.is_empty() => {
            return Err(
                ChatError::invalid("no_ids", "ids, when given, name 1-100 notifications").into(),
            );
        }
        None if request.up_to.is_none() => {
            return Err(ChatError::invalid("nothing_to_read", "give ids, upTo or both").into());
        }
        ids => ids.unwrap_or_default(),
    };
    let unread_count = state
        .chat
        .read_notifications(caller.id(), &ids, request.up_to)
        .await?;
    Ok(ApiJson(UnreadNotifications { unread_count }))
}

/// The caller's notification preferences: per kind (`newMessage`,
/// `messageRequest`, `requestAccepted`, `moderationNotice`) which channels
/// (`inApp`, `email`, `push`), and quiet hours.
#[utoipa::path(get, path = "/users/me/notification-settings", tag = "notifications",
    responses((status = 200, body = NotificationPreferences), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_preferences(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<ApiJson<NotificationPreferences>, ApiError> {
    Ok(ApiJson(
        state.chat.notification_preferences(caller.id()).await?,
    ))
}

/// Changes some of the caller's notification preferences: send only what
/// changes (`{"newMessage": {"email": false}}`, `{"quietHours": {"start":
/// "22:00", "end": "07:00", "timeZone": "Europe/Berlin"}}`, `{"quietHours":
/// null}`); answers with all of them.
#[utoipa::path(patch, path = "/users/me/notification-settings", tag = "notifications",
    request_body = NotificationPreferences,
    responses((status = 200, body = NotificationPreferences), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch_preferences(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<ApiJson<NotificationPreferences>, ApiError> {
    if !patch.is_object() {
        return Err(ChatError::invalid("invalid_preferences", "send a JSON object").into());
    }
    Ok(ApiJson(
        state
            .chat
            .update_notification_preferences(caller.id(), patch)
            .await?,
    ))
}
