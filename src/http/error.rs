//! One error type for every HTTP answer that is not a success, rendered as
//! `{"error": {"code": "snake_case", "message": "human text"}}` with the right
//! status. Extractor rejections (malformed JSON, wrong content type, oversized
//! bodies, bad path or query) go through the same shape via the `Api*`
//! extractors. 5xx bodies carry a generic message; the cause goes to the log.

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::ChatError;

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After` (429s, and 1 s for 503s).
    retry_after: Option<u64>,
}

/// The JSON body of every error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code to branch on.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    /// The message the client is shown.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<ChatError> for ApiError {
    fn from(err: ChatError) -> Self {
        let status = match &err {
            ChatError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ChatError::NotFound { .. } => StatusCode::NOT_FOUND,
            ChatError::Conflict { .. } => StatusCode::CONFLICT,
            ChatError::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ChatError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ChatError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ChatError::Gone { .. } => StatusCode::GONE,
            ChatError::Unavailable { .. } => {
                tracing::warn!(error = %err.chain(), "answering 503");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ChatError::Internal { .. } => {
                tracing::error!(error = %err.chain(), "answering 500");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut api = Self::new(status, err.code(), err.public_message());
        if let ChatError::Limited { retry_after, .. } = &err {
            api.retry_after = Some(retry_after.as_secs_f64().ceil().max(1.0) as u64);
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
            }
            JsonRejection::JsonSyntaxError(_) => {
                Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request with Content-Type: application/json",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this server accepts",
            ),
            other => Self::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::not_found()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
            rejection.body_text(),
        )
    }
}

/// `Json` whose rejections are [`ApiError`]s. A number with no fraction
/// is an integer wherever an integer is expected (`3.0` reads as `3`, as
/// JSON Schema reads it); that second reading is tried only when the first
/// fails, so ordinary bodies are parsed once.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request with Content-Type: application/json",
            ));
        }
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "the request body is larger than this server accepts",
                    )
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        rejection.body_text(),
                    )
                }
            })?;
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection @ JsonRejection::JsonDataError(_)) => {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .map(whole_numbers_as_integers)
                    .and_then(|value| serde_json::from_value(value).ok())
                    .map(Self)
                    .ok_or_else(|| rejection.into())
            }
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// For an optional field that may be left out but not sent as `null`
/// (`#[serde(default, deserialize_with = "not_null")]`): the OpenAPI
/// document then says exactly what is accepted.
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `application/json`, or any `application/*+json`, parameters aside.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `value` with every number that has no fraction (within the range where
/// a double is exact) written as an integer.
fn whole_numbers_as_integers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(x) if number.is_f64() && x.fract() == 0.0 && x.abs() <= EXACT => {
                Value::from(x as i64)
            }
            _ => Value::Number(number),
        },
        Value::Array(items) => {
            Value::Array(items.into_iter().map(whole_numbers_as_integers).collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, whole_numbers_as_integers(value)))
                .collect(),
        ),
        other => other,
    }
}

/// `Path` whose rejections are 404s: a malformed id names nothing.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Query` whose rejections are 422s in the shared shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}
