//! `/admin/...`: moderation (`/admin/chat/...`), the daily jobs
//! (`/admin/jobs`) and the jobs that kept failing (`/admin/jobs/dead`), for users whose token has role `admin`
//! (everyone else gets 403). Every action and every read of a conversation
//! or of a report's evidence is written to the audit log.

use axum::{
    extract::{FromRequestParts, State},
    http::request::Parts,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody},
};
use crate::{
    chat::{
        housekeeping::{JobStatus, StartedRun},
        moderation::ActionInput,
        privacy::Erasure,
    },
    domain::{
        ChatError, ConversationId, UserId,
        model::{Message, Page},
    },
    persistence::{
        audit::{AuditFilter, AuditRow},
        conversations::Hold,
        exports::DataExport,
        outbox::DeadJob,
        reports::ReportView,
    },
};

/// The authenticated caller, who must be an admin.
pub struct AdminUser(pub AuthUser);

impl AdminUser {
    fn id(&self) -> &UserId {
        self.0.id()
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if let Err(refused) = state.chat.ensure_admin(&user.0) {
            tracing::info!(user = %user.id(), path = parts.uri.path(), "refused: not an admin");
            return Err(refused.into());
        }
        Ok(Self(user))
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    #[param(schema_with = crate::chat::moderation::report_status_schema)]
    pub status: Option<String>,
    #[param(schema_with = crate::persistence::KeysetCursor::schema)]
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<i64>,
}

/// The moderation queue, newest first.
#[utoipa::path(get, path = "/admin/chat/reports", tag = "moderation", params(ReportsQuery),
    responses((status = 200, body = Page<ReportView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_reports(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(query): ApiQuery<ReportsQuery>,
) -> Result<ApiJson<Page<ReportView>>, ApiError> {
    let page = state
        .chat
        .report_queue(
            query.status.as_deref(),
            query.cursor.as_deref(),
            query.limit,
        )
        .await?;
    Ok(ApiJson(page))
}

/// One report with its frozen evidence (this read is audited).
#[utoipa::path(get, path = "/admin/chat/reports/{id}", tag = "moderation",
    params(("id" = String, Path, description = "Report id")),
    responses((status = 200, body = ReportView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_report(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<ReportView>, ApiError> {
    Ok(ApiJson(
        state.chat.report_for_moderator(admin.id(), id).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionRequest {
    #[schema(schema_with = crate::chat::moderation::action_schema)]
    pub action: String,
    /// For suspend: 1-8760 hours.
    #[schema(minimum = 1, maximum = 8760)]
    pub duration_hours: Option<i32>,
    #[serde(default)]
    #[schema(schema_with = crate::chat::moderation::note_schema)]
    pub note: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionResult {
    pub report_id: Uuid,
    pub action: &'static str,
    pub user_id: String,
}

/// Act on a report: warn (a `system.notice` to the user), suspend (no sending
/// or starting conversations until then), ban, or dismiss.
#[utoipa::path(post, path = "/admin/chat/reports/{id}/action", tag = "moderation",
    params(("id" = String, Path, description = "Report id")), request_body = ActionRequest,
    responses((status = 200, body = ActionResult), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn act(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ActionRequest>,
) -> Result<ApiJson<ActionResult>, ApiError> {
    let input = ActionInput {
        action: &request.action,
        duration_hours: request.duration_hours,
        note: &request.note,
    };
    let (action, target) = state.chat.act_on_report(admin.id(), id, input).await?;
    Ok(ApiJson(ActionResult {
        report_id: id,
        action: action.name(),
        user_id: target.to_string(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactRequest {
    #[schema(schema_with = crate::chat::moderation::note_schema)]
    pub reason: String,
}

/// Hide a message's content from participants (`message.updated` with a
/// placeholder body); the original stays for moderators and evidence.
#[utoipa::path(post, path = "/admin/chat/messages/{id}/redact", tag = "moderation",
    params(("id" = String, Path, description = "Message id")), request_body = RedactRequest,
    responses((status = 200, body = Message), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn redact(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<RedactRequest>,
) -> Result<ApiJson<Message>, ApiError> {
    Ok(ApiJson(
        state.chat.redact(admin.id(), id, &request.reason).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminHistoryQuery {
    /// The newest this many messages (1-200, default 50).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminMessages {
    /// Original bodies, redacted ones included, in `seq` order.
    pub items: Vec<Message>,
    /// The conversation's legal hold, when it is held.
    pub hold: Option<Hold>,
}

/// A conversation's messages as they were written (this read is audited).
#[utoipa::path(get, path = "/admin/chat/conversations/{id}/messages", tag = "moderation",
    params(("id" = String, Path, description = "Conversation id"), AdminHistoryQuery),
    responses((status = 200, body = AdminMessages), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn conversation_messages(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<AdminHistoryQuery>,
) -> Result<ApiJson<AdminMessages>, ApiError> {
    let items = state
        .chat
        .conversation_for_moderator(admin.id(), ConversationId(id), query.limit)
        .await?;
    let hold = match state.chat.conversation_hold(ConversationId(id)).await {
        Ok(hold) => Some(hold),
        Err(ChatError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(ApiJson(AdminMessages { items, hold }))
}

/// Starts an export of any user's data (audited); see `POST /users/me/export`.
#[utoipa::path(post, path = "/admin/users/{id}/export", tag = "moderation",
    params(("id" = String, Path, description = "User id")),
    responses((status = 202, body = DataExport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export_user(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(id): ApiPath<String>,
) -> Result<(axum::http::StatusCode, ApiJson<DataExport>), ApiError> {
    let export = state.chat.request_export(admin.id(), &id).await?;
    Ok((axum::http::StatusCode::ACCEPTED, ApiJson(export)))
}

/// One export of a user's data, with its download link once ready.
#[utoipa::path(get, path = "/admin/users/{id}/exports/{exportId}", tag = "moderation",
    params(("id" = String, Path, description = "User id"), ("exportId" = String, Path, description = "Export id")),
    responses((status = 200, body = DataExport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn user_export(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiPath((id, export)): ApiPath<(String, Uuid)>,
) -> Result<ApiJson<DataExport>, ApiError> {
    Ok(ApiJson(state.chat.export_of(&id, export).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// Why (1-2,000 characters), for the audit log.
    #[schema(schema_with = crate::chat::moderation::reason_schema)]
    pub reason: String,
}

/// Erases a user (GDPR): the profile anonymised ("Deleted user"), the
/// account banned and disconnected, push subscriptions and settings removed,
/// message bodies purged except in held conversations (kept until the hold
/// ends). Other people's messages are untouched; the audit log keeps the
/// fact and the reason.
#[utoipa::path(delete, path = "/admin/users/{id}", tag = "moderation",
    params(("id" = String, Path, description = "User id")), request_body = EraseRequest,
    responses((status = 200, body = Erasure), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn erase_user(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<EraseRequest>,
) -> Result<ApiJson<Erasure>, ApiError> {
    Ok(ApiJson(
        state
            .chat
            .erase_user(admin.id(), &id, &request.reason)
            .await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
    #[param(schema_with = crate::persistence::id_cursor_schema)]
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<i64>,
}

/// The audit log, newest first, filtered by actor, target and action.
#[utoipa::path(get, path = "/admin/chat/audit", tag = "moderation", params(AuditQuery),
    responses((status = 200, body = Page<AuditRow>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_log(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<ApiJson<Page<AuditRow>>, ApiError> {
    let filter = AuditFilter {
        actor: query.actor.as_deref(),
        target: query.target.as_deref(),
        action: query.action.as_deref(),
    };
    let page = state
        .chat
        .audit_log(&filter, query.cursor.as_deref(), query.limit)
        .await?;
    Ok(ApiJson(page))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadJobsQuery {
    #[param(schema_with = crate::persistence::id_cursor_schema)]
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<i64>,
}

/// Follow-up jobs (notifications, emails…) that failed every attempt, newest
/// first, with their last error.
#[utoipa::path(get, path = "/admin/jobs/dead", tag = "operations", params(DeadJobsQuery),
    responses((status = 200, body = Page<DeadJob>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn dead_jobs(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(query): ApiQuery<DeadJobsQuery>,
) -> Result<ApiJson<Page<DeadJob>>, ApiError> {
    let page = state
        .chat
        .dead_jobs(query.cursor.as_deref(), query.limit)
        .await?;
    Ok(ApiJson(page))
}

/// Runs a dead job again (it goes back into the outbox; audited).
#[utoipa::path(post, path = "/admin/jobs/dead/{jobId}/retry", tag = "operations",
    params(("jobId" = String, Path, description = "Job id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_dead_job(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(job_id): ApiPath<Uuid>,
) -> Result<axum::http::StatusCode, ApiError> {
    state.chat.retry_dead_job(admin.id(), job_id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The daily jobs (retention, auto-archive, clean-ups): each with its
/// schedule and its latest runs (started, finished, status, rows touched,
/// error).
#[utoipa::path(get, path = "/admin/jobs", tag = "operations",
    responses((status = 200, body = Vec<JobStatus>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn jobs(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<ApiJson<Vec<JobStatus>>, ApiError> {
    Ok(ApiJson(state.chat.jobs().await?))
}

/// Runs a daily job now, in the background (audited); its run shows in
/// `GET /admin/jobs`. 409 `job_running` while a run of it is under way.
#[utoipa::path(post, path = "/admin/jobs/{name}/run", tag = "operations",
    params(("name" = String, Path, description = "message_retention, audit_retention, auto_archive, attachment_retention or export_cleanup")),
    responses((status = 202, body = StartedRun), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn run_job(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(name): ApiPath<String>,
) -> Result<(axum::http::StatusCode, ApiJson<StartedRun>), ApiError> {
    let started = state.chat.run_job_now(admin.id(), &name).await?;
    Ok((axum::http::StatusCode::ACCEPTED, ApiJson(started)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// Why (1-2,000 characters), for the audit log.
    #[schema(schema_with = crate::chat::moderation::reason_schema)]
    pub reason: String,
}

/// Puts a conversation on legal hold: exempt from retention until released
/// (audited; again changes the reason).
#[utoipa::path(post, path = "/admin/chat/conversations/{id}/hold", tag = "moderation",
    params(("id" = String, Path, description = "Conversation id")), request_body = HoldRequest,
    responses((status = 200, body = Hold), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn hold(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<HoldRequest>,
) -> Result<ApiJson<Hold>, ApiError> {
    Ok(ApiJson(
        state
            .chat
            .hold_conversation(admin.id(), ConversationId(id), &request.reason)
            .await?,
    ))
}

/// A conversation's legal hold (404 when it is not held).
#[utoipa::path(get, path = "/admin/chat/conversations/{id}/hold", tag = "moderation",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Hold), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_hold(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Hold>, ApiError> {
    Ok(ApiJson(
        state.chat.conversation_hold(ConversationId(id)).await?,
    ))
}

/// Releases a conversation's legal hold (audited; 404 when it was not held).
#[utoipa::path(delete, path = "/admin/chat/conversations/{id}/hold", tag = "moderation",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn release(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::http::StatusCode, ApiError> {
    state
        .chat
        .release_conversation(admin.id(), ConversationId(id))
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
