//! `GET /openapi.json`: the OpenAPI document, generated from the handlers'
//! `#[utoipa::path]` annotations and the types' `ToSchema` derives, so it
//! cannot drift from the code. New endpoints join the `paths(...)` list.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{
    domain::model,
    http::{
        admin, attachments, blocks, conversations, error, health, internal, messages,
        notifications, push, reports, search, sync, users,
    },
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Parley", description = "Realtime chat for two-sided marketplaces. Errors are always `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        conversations::create, conversations::list, conversations::get_one, conversations::members,
        conversations::accept, conversations::decline, conversations::mute, conversations::unmute,
        conversations::archive, conversations::unarchive,
        messages::send, messages::history, messages::read, search::search,
        sync::sync, sync::typing, sync::ticket, crate::http::web::dev_token, crate::http::web::app_config, users::get_settings, users::patch_settings,
        users::presence, users::heartbeat, blocks::create, blocks::remove, blocks::list,
        internal::put_context, internal::post_system_message, internal::put_user, reports::create,
        admin::list_reports, admin::get_report, admin::act, admin::redact, admin::conversation_messages, admin::audit_log, admin::erase_user, admin::export_user, admin::user_export, users::export, users::get_export, admin::jobs, admin::run_job, admin::dead_jobs, admin::retry_dead_job, admin::hold, admin::get_hold, admin::release, crate::ws::fallback::sse, crate::ws::fallback::poll,
        notifications::list, notifications::read, notifications::get_preferences, notifications::patch_preferences,
        push::vapid_public_key, push::subscribe, push::unsubscribe,
        attachments::start, attachments::complete, attachments::get_one, attachments::download_url,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(
        model::Conversation, model::ConversationContext, model::Message, model::MessageLinks, model::ReadState, model::UserSummary,
        conversations::CreateConversationRequest,
        messages::SendMessageRequest, messages::ReadRequest,
        sync::SyncPage, sync::TypingRequest, sync::ConnectTicket, crate::http::web::DevLogin, crate::http::web::DevToken, crate::http::web::AppConfig, users::SettingsView, users::SettingsPatch, users::PresencePing,
        blocks::BlockRequest, blocks::BlockView, blocks::BlockList,
        internal::ContextRegistration, internal::ContextView, internal::UserRegistration,
        internal::ThreadRegistration, internal::ThreadView, internal::SystemMessageRequest,
        crate::domain::thread::ThreadMember, crate::domain::thread::SystemEvent, crate::persistence::threads::MemberView,
        reports::ReportRequest, reports::ReportReceipt, crate::persistence::reports::ReportView,
        admin::ActionRequest, admin::ActionResult, admin::RedactRequest, admin::AdminMessages,
        crate::persistence::audit::AuditRow, crate::persistence::outbox::DeadJob, crate::persistence::conversations::Hold, admin::HoldRequest,
        admin::EraseRequest, crate::chat::privacy::Erasure, crate::persistence::exports::DataExport, crate::chat::housekeeping::JobStatus, crate::chat::housekeeping::StartedRun, crate::persistence::job_runs::JobRun,
        model::Presence, model::PresenceStatus, model::Notification, model::NotificationPreferences, model::Channels, model::QuietHours,
        notifications::NotificationPage, push::VapidKey, push::PushSubscriptionJson, push::PushKeys, push::Unsubscribe, notifications::ReadNotificationsRequest, notifications::UnreadNotifications,
        attachments::NewAttachmentRequest, attachments::SignedUrlView, attachments::StartedAttachment, attachments::DownloadUrl,
        crate::domain::attachments::Attachment, crate::domain::attachments::AttachmentStatus,
        crate::domain::search::SearchHit, crate::domain::search::HitConversation,
        error::ErrorBody, error::ErrorDetail, health::Health,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
