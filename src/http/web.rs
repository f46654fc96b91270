//! What a browser loads from Parley itself: the SDK (`/sdk/parley.js` and
//! its type declarations, built into the binary, so nothing is fetched at
//! run time and no CDN is involved), and the development sign-in that lets
//! two browser windows chat without a host platform.

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    error::{ApiError, ApiJson, ErrorBody},
};
use crate::persistence::users::UserProfile;

const SDK: &str = include_str!("../../web/sdk/parley.js");
const SDK_TYPES: &str = include_str!("../../web/sdk/parley.d.ts");
/// How long a development token lives.
const DEV_TOKEN_SECONDS: i64 = 8 * 3600;

/// A static file with the headers every one of ours carries: its type,
/// revalidation on each load (a new server version is picked up at once),
/// no type sniffing, and a Content-Security-Policy that lets it load nothing
/// from elsewhere.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    response
}

/// The SDK, an ES module.
pub async fn sdk() -> Response {
    asset("text/javascript; charset=utf-8", SDK)
}

/// The SDK's TypeScript declarations.
pub async fn sdk_types() -> Response {
    asset("application/typescript; charset=utf-8", SDK_TYPES)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevLogin {
    pub user_id: String,
    pub name: String,
    /// recruiter, company, candidate or admin.
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct DevToken {
    pub token: String,
}

/// Development sign-in: a token for any typed user. Only while
/// `PARLEY_DEV_LOGIN` is on, which it is by default exactly when the public
/// development secret signs tokens (404 otherwise).
#[utoipa::path(post, path = "/dev/token", tag = "development",
    request_body = DevLogin,
    responses((status = 201, body = DevToken), (status = 404, description = "Not enabled", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn dev_token(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<DevLogin>,
) -> Result<(StatusCode, ApiJson<DevToken>), ApiError> {
    if !state.settings.dev_login_enabled() {
        return Err(ApiError::not_found());
    }
    let profile = UserProfile::new(&request.user_id, &request.name, request.role, None)?;
    let token = state
        .jwt
        .mint(
            profile.id.as_str(),
            &profile.name,
            &profile.role,
            None,
            DEV_TOKEN_SECONDS,
        )
        .map_err(|_| {
            ApiError::from(crate::domain::ChatError::internal("could not mint a token"))
        })?;
    tracing::info!(user = %profile.id, "development sign-in");
    Ok((StatusCode::CREATED, ApiJson(DevToken { token })))
}
