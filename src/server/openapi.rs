//! `GET /openapi.json`: the OpenAPI document, generated from the handlers'
//! `#[utoipa::path]` annotations and the types' `ToSchema` derives (whose
//! field schemas come from the rules that check the fields), then completed
//! by the modifiers below: the security schemes, the refusals every layer
//! adds, the rules that tie fields together, and the realtime frames. New
//! endpoints join the `paths(...)` list; `tests/api/contract.rs` holds the
//! document to what the server does.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, RefOr, Response, ResponseBuilder,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    domain::model,
    http::{
        admin, attachments, blocks, conversations, error, health, internal, messages,
        notifications, push, reports, search, sync, users,
    },
    ws::protocol,
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
        admin::list_reports, admin::get_report, admin::act, admin::redact, admin::conversation_messages, admin::audit_log, admin::erase_user, admin::export_user, admin::user_export, users::export, users::get_export, admin::jobs, admin::run_job, admin::dead_jobs, admin::retry_dead_job, admin::hold, admin::get_hold, admin::release, crate::ws::fallback::sse, crate::ws::fallback::poll, crate::ws::upgrade,
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
        crate::domain::event::ServerEvent,
        protocol::MessageSend, protocol::ReadReceipt, protocol::Typing, protocol::PresencePing,
        protocol::PresenceSubscribe, protocol::AuthRefresh,
    )),
    modifiers(&SecuritySchemes, &CommonErrors, &CrossFieldRules, &RealtimeFrames),
)]
pub struct ApiDoc;

/// `bearer` (a user's JWT) and `platformKey` (the host platform's
/// `X-Api-Key`, on `/internal/*`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
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
        components.add_security_scheme(
            "platformKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "The host platform's key (PARLEY_INTERNAL_API_KEY)",
            ))),
        );
    }
}

/// The refusals that come from the layers every operation passes through,
/// added to each operation they can reach, with the error schema: 401 where
/// a credential is needed, and for a user's token 403 (the account is
/// suspended, banned or erased) and 429 (the user's rate limits); 400
/// (malformed JSON), 413 (too large), 415 (not JSON) and 422 (the wrong
/// shape) where there is a JSON body; 422 where there is a query; 404 where
/// a path names something; 503 where the database is asked (every
/// authenticated operation). What an operation refuses for its own reasons
/// (409, a 403 of its own, ...) its annotation says.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            // An upgrade (`/ws`) refuses inside the socket, with close codes.
            let plain = operations
                .into_iter()
                .flatten()
                .filter(|operation| !operation.responses.responses.contains_key("101"));
            for operation in plain {
                let schemes = serde_json::to_value(&operation.security).unwrap_or_default();
                let secured = schemes.as_array().is_some_and(|s| !s.is_empty());
                let as_user = schemes
                    .as_array()
                    .is_some_and(|s| s.iter().any(|scheme| scheme.get("bearer").is_some()));
                let located = |place: ParameterIn| {
                    operation.parameters.iter().flatten().any(
                        |parameter| matches!(parameter, RefOr::T(p) if p.parameter_in == place),
                    )
                };
                let mut statuses = Vec::new();
                if secured {
                    statuses.extend([401, 503]);
                }
                if as_user {
                    statuses.extend([403, 429]);
                }
                if operation.request_body.is_some() {
                    statuses.extend([400, 413, 415, 422]);
                }
                if located(ParameterIn::Query) {
                    statuses.push(422);
                }
                if located(ParameterIn::Path) {
                    statuses.push(404);
                }
                for status in statuses {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(status));
                }
            }
        }
    }
}

/// What the derives cannot state: the notification-settings patch (its own
/// shape, see [`model::NotificationPreferences::patch_schema`]) and the
/// fields of a request that need one another.
struct CrossFieldRules;

impl Modify for CrossFieldRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.insert(
            "NotificationPreferencesPatch".into(),
            RefOr::T(model::NotificationPreferences::patch_schema()),
        );
        if let Some(RefOr::T(utoipa::openapi::Schema::Object(report))) =
            components.schemas.get_mut("ReportRequest")
        {
            report
                .extensions
                .get_or_insert_with(Default::default)
                .insert(
                    "dependentRequired".into(),
                    serde_json::json!({ "messageId": ["conversationId"] }),
                );
        }
        // `q` is required; its schema comes from a function, which the
        // derive takes to mean optional.
        let search = openapi
            .paths
            .paths
            .get_mut("/chat/search")
            .and_then(|item| item.get.as_mut());
        for parameter in search
            .and_then(|operation| operation.parameters.as_mut())
            .into_iter()
            .flatten()
        {
            if let RefOr::T(parameter) = parameter
                && parameter.name == "q"
            {
                parameter.required = utoipa::openapi::Required::True;
            }
        }
        if let Some(RefOr::T(utoipa::openapi::Schema::Object(action))) =
            components.schemas.get_mut("ActionRequest")
        {
            let rules = action.extensions.get_or_insert_with(Default::default);
            rules.insert(
                "if".into(),
                serde_json::json!({ "properties": { "action": { "const": "suspend" } }, "required": ["action"] }),
            );
            rules.insert(
                "then".into(),
                serde_json::json!({ "required": ["durationHours"] }),
            );
        }
        let patch = openapi
            .paths
            .paths
            .get_mut("/users/me/notification-settings")
            .and_then(|item| item.patch.as_mut());
        if let Some(RefOr::T(body)) = patch.and_then(|operation| operation.request_body.as_mut()) {
            for content in body.content.values_mut() {
                if let RefOr::T(content) = content {
                    content.schema =
                        Some(Ref::from_schema_name("NotificationPreferencesPatch").into());
                }
            }
        }
    }
}

/// The realtime frames, for every transport: `ClientFrame` (what a client
/// sends over `/ws`: `{"type", "data"}`, one of [`protocol::FRAMES`]),
/// `ServerFrame` (what `/ws`, `/events` and `/events/poll` deliver: a
/// `ServerEvent` with its `eventVersion`) and `PollAnswer` (the body of
/// `/events/poll`, which splices the frames' JSON text, so no type of ours
/// derives it).
struct RealtimeFrames;

impl Modify for RealtimeFrames {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{AllOfBuilder, ObjectBuilder, OneOfBuilder, schema::Type};
        let mut client = OneOfBuilder::new().description(Some(
            "A frame a client sends over /ws (text, JSON); answered by `ack` or `error` where it asks something",
        ));
        for (kind, data) in protocol::FRAMES {
            let mut frame = ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "type",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([kind])),
                )
                .required("type")
                .property("data", Ref::from_schema_name(data));
            if kind != "presence.ping" {
                frame = frame.required("data");
            }
            client = client.item(frame);
        }
        let server = AllOfBuilder::new()
            .description(Some(
                "An event as every transport delivers it: `{type, data, eventVersion}`",
            ))
            .item(Ref::from_schema_name("ServerEvent"))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "eventVersion",
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .enum_values(Some([crate::domain::event::EVENT_VERSION])),
                    )
                    .required("eventVersion"),
            );
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("ClientFrame".into(), RefOr::T(client.build().into()));
        components
            .schemas
            .insert("ServerFrame".into(), RefOr::T(server.build().into()));
        let poll = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "events",
                utoipa::openapi::ArrayBuilder::new().items(Ref::from_schema_name("ServerFrame")),
            )
            .required("events")
            .property(
                "cursor",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Poll again with it")),
            )
            .required("cursor");
        components
            .schemas
            .insert("PollAnswer".into(), RefOr::T(poll.build().into()));
        let answer = openapi
            .paths
            .paths
            .get_mut("/events/poll")
            .and_then(|item| item.get.as_mut())
            .and_then(|operation| operation.responses.responses.get_mut("200"));
        if let Some(RefOr::T(answer)) = answer {
            answer.content.insert(
                "application/json".into(),
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("PollAnswer")))
                    .build()
                    .into(),
            );
        }
    }
}

fn error_response(status: u16) -> RefOr<Response> {
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Refused");
    RefOr::T(
        ResponseBuilder::new()
            .description(reason)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
