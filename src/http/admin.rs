//! `/admin/chat/...`: moderation, for users whose token has role `admin`
//! (everyone else gets 403). Every action and every read of a conversation
//! or of a report's evidence is written to the audit log.

use axum::{
    extract::{FromRequestParts, State},
    http::{StatusCode, request::Parts},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody},
    page_limit,
};
use crate::{
    domain::{ChatError, ConversationId, UserId, event::ServerEvent, model::Message},
    persistence::{
        KeysetCursor,
        audit::{self, AuditFilter, AuditRow},
        messages,
        reports::{self, ModerationAction, ReportView},
    },
};

/// Default and largest admin page.
const ADMIN_DEFAULT_LIMIT: i64 = 50;
const ADMIN_MAX_LIMIT: i64 = 200;
/// Longest moderator note or redaction reason, in characters.
const MAX_NOTE_CHARS: usize = 2_000;

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
        if user.0.role != "admin" {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "moderation is for admins only",
            ));
        }
        Ok(Self(user))
    }
}

fn note_ok(note: &str) -> Result<(), ChatError> {
    if note.chars().count() > MAX_NOTE_CHARS || note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ChatError::invalid(
            "invalid_note",
            "notes are at most 2,000 printable characters",
        ));
    }
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    /// open (default), actioned or dismissed.
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportPage {
    pub items: Vec<ReportView>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// The moderation queue, newest first.
#[utoipa::path(get, path = "/admin/chat/reports", tag = "moderation", params(ReportsQuery),
    responses((status = 200, body = ReportPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_reports(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(query): ApiQuery<ReportsQuery>,
) -> Result<ApiJson<ReportPage>, ApiError> {
    let status = query.status.as_deref().unwrap_or("open");
    if !["open", "actioned", "dismissed"].contains(&status) {
        return Err(ChatError::invalid(
            "invalid_status",
            "status must be open, actioned or dismissed",
        )
        .into());
    }
    let before = query
        .cursor
        .as_deref()
        .map(KeysetCursor::decode)
        .transpose()?;
    let limit = page_limit(query.limit, ADMIN_DEFAULT_LIMIT, ADMIN_MAX_LIMIT)?;
    let (items, has_more) = reports::list(&state.pool, status, before, limit).await?;
    let next_cursor = has_more
        .then(|| {
            items.last().map(|r| {
                KeysetCursor {
                    at: r.created_at,
                    id: r.id,
                }
                .encode()
            })
        })
        .flatten();
    Ok(ApiJson(ReportPage {
        items,
        next_cursor,
        has_more,
    }))
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
    reports::get(&state.pool, id, admin.id())
        .await?
        .map(ApiJson)
        .ok_or_else(ApiError::not_found)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionRequest {
    /// warn, suspend, ban or dismiss.
    pub action: String,
    /// For suspend: 1-8760 hours.
    pub duration_hours: Option<i32>,
    #[serde(default)]
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
    note_ok(&request.note)?;
    let action = match (request.action.as_str(), request.duration_hours) {
        ("warn", _) => ModerationAction::Warn,
        ("suspend", Some(hours)) if (1..=8760).contains(&hours) => {
            ModerationAction::Suspend { hours }
        }
        ("suspend", _) => {
            return Err(ChatError::invalid(
                "invalid_duration",
                "suspend needs durationHours between 1 and 8760",
            )
            .into());
        }
        ("ban", _) => ModerationAction::Ban,
        ("dismiss", _) => ModerationAction::Dismiss,
        _ => {
            return Err(ChatError::invalid(
                "invalid_action",
                "action must be warn, suspend, ban or dismiss",
            )
            .into());
        }
    };
    let safety = state.chat.safety();
    let target = reports::act(
        &state.pool,
        id,
        admin.id(),
        action,
        &request.note,
        safety.clock().now(),
    )
    .await?
    .ok_or_else(ApiError::not_found)?;
    safety.sanction_changed(&target);
    if action == ModerationAction::Warn {
        safety.warn(&target, &request.note);
    }
    Ok(ApiJson(ActionResult {
        report_id: id,
        action: action.name(),
        user_id: target.to_string(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactRequest {
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
    note_ok(&request.reason)?;
    let (message, participants) =
        messages::redact(&state.pool, id, admin.id(), request.reason.trim())
            .await?
            .ok_or_else(ApiError::not_found)?;
    state
        .chat
        .publish(&participants, ServerEvent::MessageUpdated(message.clone()));
    Ok(ApiJson(message))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminHistoryQuery {
    /// The newest this many messages (1-200, default 50).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminMessages {
    /// Original bodies, redacted ones included, in `seq` order.
    pub items: Vec<Message>,
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
    let limit = page_limit(query.limit, ADMIN_DEFAULT_LIMIT, ADMIN_MAX_LIMIT)?;
    let items = messages::admin_page(&state.pool, ConversationId(id), admin.id(), limit).await?;
    Ok(ApiJson(AdminMessages { items }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditRow>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// The audit log, newest first, filtered by actor, target and action.
#[utoipa::path(get, path = "/admin/chat/audit", tag = "moderation", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_log(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<ApiJson<AuditPage>, ApiError> {
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ChatError::invalid("invalid_cursor", "the cursor is not one this server issued")
            })
        })
        .transpose()?;
    let limit = page_limit(query.limit, ADMIN_DEFAULT_LIMIT, ADMIN_MAX_LIMIT)?;
    let filter = AuditFilter {
        actor: query.actor.as_deref(),
        target: query.target.as_deref(),
        action: query.action.as_deref(),
    };
    let (items, has_more) = audit::list(&state.pool, &filter, before, limit).await?;
    let next_cursor = has_more
        .then(|| items.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(ApiJson(AuditPage {
        items,
        next_cursor,
        has_more,
    }))
}
