//! `/users/me/settings` (the caller's own preferences), `/users/me/export`
//! (a copy of everything Parley holds about the caller) and presence:
//! `GET /users/:id/presence` for people the caller shares a conversation with,
//! and `POST /users/me/presence`, the heartbeat of HTTP-fallback clients.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiPath, ErrorBody},
};
use crate::{
    domain::model::Presence,
    persistence::{exports::DataExport, users::UserSettings},
};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    /// Share read receipts (default off). Receipts are reciprocal: with this
    /// off you neither send yours nor see anyone else's.
    pub read_receipts: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsPatch {
    pub read_receipts: Option<bool>,
}

impl From<UserSettings> for SettingsView {
    fn from(s: UserSettings) -> Self {
        Self {
            read_receipts: s.read_receipts,
        }
    }
}

/// The caller's settings.
#[utoipa::path(get, path = "/users/me/settings", tag = "users",
    responses((status = 200, body = SettingsView), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<ApiJson<SettingsView>, ApiError> {
    Ok(ApiJson(state.chat.settings(caller.id()).await?.into()))
}

/// Change some of the caller's settings.
#[utoipa::path(patch, path = "/users/me/settings", tag = "users",
    request_body = SettingsPatch,
    responses((status = 200, body = SettingsView), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch_settings(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<ApiJson<SettingsView>, ApiError> {
    let updated = state
        .chat
        .update_settings(caller.id(), patch.read_receipts)
        .await?;
    Ok(ApiJson(updated.into()))
}

/// A user's presence: online, away or offline, and when they were last seen.
/// A malformed id names nobody: 404.
#[utoipa::path(get, path = "/users/{id}/presence", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = Presence), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn presence(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Presence>, ApiError> {
    Ok(ApiJson(state.chat.presence_of(caller.id(), &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresencePing {
    /// `online` or `away` (the tab is hidden).
    #[schema(schema_with = crate::domain::model::heartbeat_status_schema)]
    pub status: String,
}

/// Presence heartbeat of an HTTP-fallback client (every 25 s, like `presence.ping`).
#[utoipa::path(post, path = "/users/me/presence", tag = "users",
    request_body = PresencePing,
    responses((status = 204, description = "Recorded"), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(ping): ApiJson<PresencePing>,
) -> Result<StatusCode, ApiError> {
    state
        .chat
        .heartbeat(caller.id(), None, Some(&ping.status))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts an export of everything Parley holds about the caller: profile
/// and settings, conversations with the messages they can see, the reports
/// they filed and the blocks they made. Asking again while one is under way
/// answers that one.
#[utoipa::path(post, path = "/users/me/export", tag = "users",
    responses((status = 202, body = DataExport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<(StatusCode, ApiJson<DataExport>), ApiError> {
    let export = state
        .chat
        .request_export(user.id(), user.id().as_str())
        .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(export)))
}

/// One of the caller's exports: its status and, once `ready`, a
/// short-lived `downloadUrl` of the JSON document.
#[utoipa::path(get, path = "/users/me/exports/{id}", tag = "users",
    params(("id" = String, Path, description = "Export id")),
    responses((status = 200, body = DataExport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_export(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<ApiJson<DataExport>, ApiError> {
    Ok(ApiJson(state.chat.export_of(user.id().as_str(), id).await?))
}
