//! Attachments: `POST /chat/conversations/:id/attachments` (declare a file,
//! get its upload URL), `POST /chat/attachments/:id/complete`, `GET
//! /chat/attachments/:id`, `GET /chat/attachments/:id/download-url`; and the
//! signed URLs of the local blob store, served here (`PUT` / `GET
//! /blobs/*key`). With `PARLEY_ATTACHMENTS=off` all of them answer 404
//! `attachments_disabled`.

use axum::{
    body::Body,
    extract::{FromRequestParts, State},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody},
};
use crate::{
    blobs::{LocalSignature, SignedUrl},
    chat::attachments::AttachmentRequest,
    domain::{ChatError, attachments::Attachment},
};

/// Present when attachments are on; otherwise the request is answered 404
/// `attachments_disabled` before anything else is looked at.
pub struct AttachmentsOn;

impl FromRequestParts<AppState> for AttachmentsOn {
    type Rejection = ApiError;

    async fn from_request_parts(
        _parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.chat.attachments_enabled() {
            Ok(Self)
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "attachments_disabled",
                "attachments are switched off on this server",
            ))
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAttachmentRequest {
    pub filename: String,
    pub content_type: String,
    /// Bytes.
    pub size: u64,
}

/// Where and how to send a file's bytes, or fetch them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedUrlView {
    /// Absolute (S3), or relative to this API's address (the local store).
    pub url: String,
    pub method: &'static str,
    /// Headers the request must carry.
    pub headers: std::collections::BTreeMap<&'static str, String>,
    pub expires_at: DateTime<Utc>,
}

impl From<SignedUrl> for SignedUrlView {
    fn from(signed: SignedUrl) -> Self {
        Self {
            url: signed.url,
            method: signed.method,
            headers: signed.headers.into_iter().collect(),
            expires_at: signed.expires_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedAttachment {
    pub attachment: Attachment,
    pub upload: SignedUrlView,
}

/// Declares a file to send in the conversation; answers the attachment
/// (`awaiting_upload`) and a signed upload URL valid 15 minutes, for one use.
#[utoipa::path(post, path = "/chat/conversations/{id}/attachments", tag = "attachments",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = NewAttachmentRequest,
    responses((status = 201, body = StartedAttachment), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start(
    _on: AttachmentsOn,
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(conversation): ApiPath<Uuid>,
    ApiJson(request): ApiJson<NewAttachmentRequest>,
) -> Result<(StatusCode, ApiJson<StartedAttachment>), ApiError> {
    let (attachment, upload) = state
        .chat
        .start_attachment(
            caller.id(),
            conversation,
            &AttachmentRequest {
                filename: &request.filename,
                content_type: &request.content_type,
                size: request.size,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(StartedAttachment {
            attachment,
            upload: upload.into(),
        }),
    ))
}

/// The upload is done: the stored bytes are checked (size, type sniffed from
/// them) and queued for the virus scan (`pending_scan`), or `blocked`.
#[utoipa::path(post, path = "/chat/attachments/{id}/complete", tag = "attachments",
    params(("id" = String, Path, description = "Attachment id")),
    responses((status = 200, body = Attachment), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    _on: AttachmentsOn,
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Attachment>, ApiError> {
    Ok(ApiJson(
        state.chat.complete_attachment(caller.id(), id).await?,
    ))
}

/// One attachment of a conversation of the caller's.
#[utoipa::path(get, path = "/chat/attachments/{id}", tag = "attachments",
    params(("id" = String, Path, description = "Attachment id")),
    responses((status = 200, body = Attachment), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_one(
    _on: AttachmentsOn,
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Attachment>, ApiError> {
    Ok(ApiJson(state.chat.attachment(caller.id(), id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// `original` (default), `preview` or `thumbnail` (images).
    #[param(schema_with = crate::chat::attachments::variant_schema)]
    pub variant: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A signed download URL, valid 60 s, for an available attachment (409
/// `attachment_not_available` while it is scanned; 410 once blocked or deleted).
#[utoipa::path(get, path = "/chat/attachments/{id}/download-url", tag = "attachments",
    params(("id" = String, Path, description = "Attachment id"), DownloadQuery),
    responses((status = 200, body = DownloadUrl), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn download_url(
    _on: AttachmentsOn,
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<DownloadQuery>,
) -> Result<ApiJson<DownloadUrl>, ApiError> {
    let variant = query.variant.as_deref().unwrap_or("original");
    let signed = state
        .chat
        .attachment_download(caller.id(), id, variant)
        .await?;
    Ok(ApiJson(DownloadUrl {
        url: signed.url,
        expires_at: signed.expires_at,
    }))
}

/// The local store's signed upload URL: the body is the file (204).
pub async fn put_blob(
    _on: AttachmentsOn,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiQuery(signature): ApiQuery<LocalSignature>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let most = signature.size.unwrap_or(0);
    let limit = usize::try_from(most.saturating_add(1)).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::from(ChatError::too_large("more bytes than this upload allows")))?;
    state.chat.receive_upload(&key, &signature, bytes).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The local store's signed download URL.
pub async fn get_blob(
    _on: AttachmentsOn,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiQuery(signature): ApiQuery<LocalSignature>,
) -> Result<Response, ApiError> {
    let (bytes, serving) = state.chat.serve_blob(&key, &signature).await?;
    Ok((
        [
            (header::CONTENT_TYPE, serving.content_type),
            (header::CONTENT_DISPOSITION, serving.disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "private, max-age=60".to_owned()),
        ],
        bytes,
    )
        .into_response())
}
