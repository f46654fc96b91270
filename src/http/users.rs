//! `/users/me/settings`: the caller's own preferences.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ErrorBody},
};
use crate::persistence::users::{self, UserSettings};

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
    Ok(ApiJson(
        users::settings(&state.pool, caller.id()).await?.into(),
    ))
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
    let updated = users::update_settings(&state.pool, caller.id(), patch.read_receipts).await?;
    Ok(ApiJson(updated.into()))
}
