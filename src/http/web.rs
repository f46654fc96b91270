//! What a browser loads from Parley itself: the web app and moderation
//! console (`/app/`, `/app/admin/`) and the SDK (`/sdk/parley.js` and its
//! type declarations), built into the binary so that nothing is fetched at
//! run time and no CDN is involved; the app's start-up configuration; and
//! the development sign-in that lets two browser windows chat without a
//! host platform.

use axum::{
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    error::{ApiError, ApiJson, ErrorBody},
};
use crate::persistence::users::UserProfile;

/// Everything a browser may load from Parley, by path under `/`: built into
/// the binary, or read from `PARLEY_WEB_DIR` (same layout) when set. Only
/// these paths are served, whichever the source.
const FILES: &[(&str, &str)] = &[
    ("sdk/parley.js", include_str!("../../web/sdk/parley.js")),
    ("sdk/parley.d.ts", include_str!("../../web/sdk/parley.d.ts")),
    ("app/index.html", include_str!("../../web/app/index.html")),
    ("app/app.css", include_str!("../../web/app/app.css")),
    ("app/main.js", include_str!("../../web/app/main.js")),
    ("app/session.js", include_str!("../../web/app/session.js")),
    ("app/dom.js", include_str!("../../web/app/dom.js")),
    ("app/actions.js", include_str!("../../web/app/actions.js")),
    ("app/chat.js", include_str!("../../web/app/chat.js")),
    (
        "app/conversation.js",
        include_str!("../../web/app/conversation.js"),
    ),
    (
        "app/admin/index.html",
        include_str!("../../web/app/admin/index.html"),
    ),
    (
        "app/admin/admin.js",
        include_str!("../../web/app/admin/admin.js"),
    ),
];

/// How long a development token lives.
const DEV_TOKEN_SECONDS: i64 = 8 * 3600;

/// The type a file is served with, by its name.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "ts" => "application/typescript; charset=utf-8",
        _ => "text/javascript; charset=utf-8",
    }
}

/// A page's Content-Security-Policy: its own scripts, styles and API only
/// (and the host platform's token URL, when the app fetches tokens there);
/// nothing inline, nothing from elsewhere, never inside another site's frame.
fn page_policy(token_url: Option<&str>) -> String {
    let token_origin = token_url.map(origin_of).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {token_origin}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// `https://platform.example/parley/token` → `https://platform.example`.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..]
        .find('/')
        .map_or(url, |end| &url[..after_scheme + end])
}

/// `/app/…`: one of [`FILES`] (a directory path means its
/// `index.html`) with its type, revalidation on each load (a new server
/// version is picked up at once), and for a page its Content-Security-Policy
/// (the other security headers are every answer's: `http::security_headers`).
pub async fn app_file(State(state): State<AppState>, path: Option<Path<String>>) -> Response {
    let path = path.map(|Path(p)| p).unwrap_or_default();
    serve(&state, &format!("app/{path}")).await
}

/// `/sdk/…`: the SDK and its type declarations (see [`app_file`]).
pub async fn sdk_file(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    serve(&state, &format!("sdk/{path}")).await
}

async fn serve(state: &AppState, path: &str) -> Response {
    let wanted = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    let Some((name, built_in)) = FILES.iter().find(|(name, _)| *name == wanted) else {
        // `/app/admin` → `/app/admin/`, so that its relative paths resolve.
        if FILES
            .iter()
            .any(|(name, _)| *name == format!("{wanted}/index.html"))
        {
            return Redirect::permanent(&format!("/{wanted}/")).into_response();
        }
        return ApiError::not_found().into_response();
    };
    let body = match &state.settings.server.web_dir {
        Some(dir) => match tokio::fs::read_to_string(dir.join(name)).await {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(file = %name, error = %e, "web file missing from PARLEY_WEB_DIR");
                return ApiError::not_found().into_response();
            }
        },
        None => (*built_in).to_owned(),
    };
    let kind = content_type(name);
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Scripts and styles keep the policy every answer gets (loading nothing).
    if kind.starts_with("text/html") {
        let policy =
            HeaderValue::from_str(&page_policy(state.settings.auth.app_token_url.as_deref()))
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// What the web app needs to know before anyone is signed in.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppConfig {
    /// The development sign-in (`POST /dev/token`) is on.
    pub dev_login: bool,
    /// Where the app fetches tokens from the host platform (null: none).
    pub token_url: Option<String>,
}

/// The web app's start-up configuration.
#[utoipa::path(get, path = "/app/config.json", tag = "development",
    responses((status = 200, body = AppConfig)))]
pub async fn app_config(State(state): State<AppState>) -> ApiJson<AppConfig> {
    ApiJson(AppConfig {
        dev_login: state.settings.dev_login_enabled(),
        token_url: state.settings.auth.app_token_url.clone(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevLogin {
    #[schema(schema_with = crate::domain::ids::user_id_schema)]
    pub user_id: String,
    #[schema(schema_with = crate::persistence::users::name_schema)]
    pub name: String,
    #[schema(schema_with = crate::persistence::users::role_schema)]
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
