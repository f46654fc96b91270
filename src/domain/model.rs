//! The shapes clients see, shared by REST responses and realtime events, plus
//! the small rules about who talks to whom (the ordered pair, the context).
//! Field names are camelCase on the wire, as in DESIGN.md §4.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    ChatError, UserId,
    text::{Padding, TextField},
};

/// A context's type (1-64 characters), id (1-128) and title or subtitle (1-200).
const CONTEXT_FIELD: TextField = TextField {
    code: "invalid_context",
    message: "context needs a type (1-64 chars) and an id (1-128 chars); title and subtitle are at most 200 chars",
    max_chars: 200,
    required: true,
    multiline: false,
    padding: Padding::Keep,
};
const CONTEXT_TYPE: TextField = TextField {
    max_chars: 64,
    ..CONTEXT_FIELD
};
const CONTEXT_ID: TextField = TextField {
    max_chars: 128,
    ..CONTEXT_FIELD
};

/// The two users of a direct conversation, in a canonical order so that
/// (alice, bob) and (bob, alice) name the same conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectPair {
    pub low: UserId,
    pub high: UserId,
}

impl DirectPair {
    pub fn new(a: UserId, b: UserId) -> Result<Self, ChatError> {
        match a.cmp(&b) {
            std::cmp::Ordering::Less => Ok(Self { low: a, high: b }),
            std::cmp::Ordering::Greater => Ok(Self { low: b, high: a }),
            std::cmp::Ordering::Equal => Err(ChatError::forbidden(
                "self_conversation",
                "a conversation needs another participant",
            )),
        }
    }
}

/// The business object a conversation is about (a job application, a booking).
/// Conversations are de-duplicated per pair *and* context `(type, id)`; the
/// title and subtitle are display fields set when the conversation is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationContext {
    /// Kind of object, e.g. `application` or `booking`.
    #[serde(rename = "type")]
    #[schema(schema_with = context_type_schema)]
    pub kind: String,
    /// The host platform's id of that object.
    #[schema(schema_with = context_id_schema)]
    pub id: String,
    #[schema(schema_with = context_text_schema)]
    pub title: Option<String>,
    #[schema(schema_with = context_text_schema)]
    pub subtitle: Option<String>,
}

/// A context's type, as the OpenAPI document states it.
pub fn context_type_schema() -> utoipa::openapi::Object {
    CONTEXT_TYPE.schema()
}

/// A context's id, as the OpenAPI document states it.
pub fn context_id_schema() -> utoipa::openapi::Object {
    CONTEXT_ID.schema()
}

/// A context's title or subtitle (optional), as the OpenAPI document states it.
pub fn context_text_schema() -> utoipa::openapi::Object {
    super::schema::or_null(CONTEXT_FIELD.schema())
}

impl ConversationContext {
    pub fn validate(&self) -> Result<(), ChatError> {
        CONTEXT_TYPE.check(&self.kind)?;
        CONTEXT_ID.check(&self.id)?;
        for label in [&self.title, &self.subtitle].into_iter().flatten() {
            CONTEXT_FIELD.check(label)?;
        }
        Ok(())
    }
}

/// One participant's side of a message request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestState {
    /// Not a request (or the participant is the one who asked).
    None,
    /// Someone the participant is not connected with asked to talk.
    Pending,
    Accepted,
    Declined,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Declined => "declined",
        }
    }

    pub fn parse(raw: &str) -> Self {
        match raw {
            "pending" => Self::Pending,
            "accepted" => Self::Accepted,
            "declined" => Self::Declined,
            _ => Self::None,
        }
    }
}

/// What storing a message does to the request states of a conversation
/// (`None`: unchanged). The one statement of the rule, applied by the
/// conversation actor to its state and by the write to the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestChange {
    pub sender: Option<RequestState>,
    pub recipients: Option<RequestState>,
}

impl RequestChange {
    /// A message that opens a request makes every recipient `pending`; the
    /// sender's message in a request made to them (pending or declined)
    /// accepts it.
    pub fn of_message(sender_state: RequestState, opens_request: bool) -> Self {
        Self {
            sender: matches!(sender_state, RequestState::Pending | RequestState::Declined)
                .then_some(RequestState::Accepted),
            recipients: opens_request.then_some(RequestState::Pending),
        }
    }

    /// Whether the message accepted a request made to its sender.
    pub fn accepts(self) -> bool {
        self.sender == Some(RequestState::Accepted)
    }
}

/// What a message is: text, text with attachments, or a system message in
/// a context thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    /// Carries images only.
    Image,
    /// Carries at least one file that is not an image.
    File,
    /// Said by Parley or the platform, not a person (members joining and
    /// leaving, the context's own events).
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::File => "file",
            Self::System => "system",
        }
    }

    /// The kind of a message carrying `attachments`.
    pub fn carrying(attachments: &[super::attachments::Attachment]) -> Self {
        if attachments.is_empty() {
            Self::Text
        } else if attachments
            .iter()
            .all(|a| super::attachments::is_image(&a.content_type))
        {
            Self::Image
        } else {
            Self::File
        }
    }
}

/// One page of a list: `{items, nextCursor, hasMore}` (DESIGN.md §4). Pass
/// `nextCursor` back to continue; there is more exactly when it is set.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, next_cursor: Option<String>) -> Self {
        Self {
            has_more: next_cursor.is_some(),
            items,
            next_cursor,
        }
    }
}

/// A user as other users see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserSummary {
    pub id: String,
    pub name: String,
    pub role: String,
    /// The host platform vouches for who they are (`PUT /internal/users/:id`).
    pub verified: bool,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// Position in the conversation: 1, 2, 3… without gaps.
    pub seq: i64,
    pub sender_id: String,
    /// `text`; `image` when it carries only images, `file` when it carries
    /// any other file; `system` in a context thread (see `system`).
    pub kind: String,
    pub body: String,
    pub client_message_id: String,
    pub created_at: DateTime<Utc>,
    /// Links found in the body; `live` is false in a message request (show them as plain text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<MessageLinks>,
    /// A moderator removed it: `body` is a placeholder (the original is kept for moderators).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
    /// The files sent with it, each with its status as it stands now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<super::attachments::Attachment>,
    /// What a `system` message is about (absent for other kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Box<super::thread::SystemEvent>>,
}

/// What participants see instead of a redacted message (by a moderator, by
/// retention or by erasure).
pub const REDACTED_BODY: &str = "This message was removed.";

/// The links of a message and whether clients may make them clickable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageLinks {
    pub urls: Vec<String>,
    pub live: bool,
}

impl MessageLinks {
    /// The `metadata` jsonb stored with a message.
    pub fn to_metadata(links: Option<&Self>) -> serde_json::Value {
        match links {
            Some(l) => serde_json::json!({ "links": l.urls, "linksLive": l.live }),
            None => serde_json::json!({}),
        }
    }

    /// Reads links back from a message's `metadata`.
    pub fn from_metadata(metadata: &serde_json::Value) -> Option<Self> {
        let urls: Vec<String> = serde_json::from_value(metadata.get("links")?.clone()).ok()?;
        let live = metadata
            .get("linksLive")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        (!urls.is_empty()).then_some(Self { urls, live })
    }
}

/// One conversation as the calling user sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: Uuid,
    /// `direct` (1:1) or `group` (a context thread).
    pub kind: String,
    pub context: Option<ConversationContext>,
    /// The other participant of a direct conversation (null in a thread).
    pub other_participant: Option<UserSummary>,
    /// How many members it has now (2 in a direct conversation).
    pub member_count: i64,
    pub last_seq: i64,
    pub last_message_at: Option<DateTime<Utc>>,
    pub last_message: Option<Message>,
    /// Messages from others after the caller's read pointer.
    pub unread_count: i64,
    /// The caller's read pointer.
    pub last_read_seq: i64,
    /// The caller's side of a message request: `none` (not a request),
    /// `pending` (someone asks to talk to the caller), `accepted`, `declined`.
    pub request_state: String,
    /// The caller muted it: no notifications.
    pub muted: bool,
    /// The caller archived it: out of the inbox and the unread badge.
    pub archived: bool,
    /// The other participant's read pointer; null unless both share read
    /// receipts (and in threads: see `GET .../members`).
    pub other_last_read_seq: Option<i64>,
    /// The other participant's side of a message request the caller made:
    /// `none`, `pending` (one message sent, waiting for their answer),
    /// `accepted`, `declined` (null in a thread). What a send would be told.
    pub other_request_state: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A participant's read pointer after a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    pub conversation_id: Uuid,
    pub user_id: String,
    pub last_read_seq: i64,
    pub unread_count: i64,
    pub last_read_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

/// A notification as its user sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: i64,
    /// `new_message`, `message_request`, `request_accepted` or `moderation_notice`.
    #[serde(rename = "type")]
    pub kind: String,
    pub conversation_id: Option<Uuid>,
    /// Who caused it (the sender), when someone did.
    pub actor_id: Option<String>,
    pub preview: String,
    /// Messages it stands for (`new_message`); 1 otherwise.
    pub message_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// Which channels one kind of notification uses (each on by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Channels {
    pub in_app: bool,
    pub email: bool,
    pub push: bool,
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            in_app: true,
            email: true,
            push: true,
        }
    }
}

/// Hours during which no email or push goes out (what falls due then waits
/// for their end), in the user's time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, 24-hour clock.
    #[schema(schema_with = clock_time_schema)]
    pub start: String,
    /// `HH:MM`; earlier than `start` means the next day (`22:00`–`07:00`).
    #[schema(schema_with = clock_time_schema)]
    pub end: String,
    /// An IANA time zone (`Europe/Berlin`).
    #[schema(schema_with = time_zone_schema)]
    pub time_zone: String,
}

/// `HH:MM` on a 24-hour clock, exactly (two digits each).
const CLOCK_TIME: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$";

fn clock_time_schema() -> utoipa::openapi::Object {
    super::schema::matching(CLOCK_TIME, 5, "HH:MM, 24-hour clock")
}

fn time_zone_schema() -> utoipa::openapi::Object {
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|zone| zone.name())
        .collect();
    super::schema::one_of(&names, "An IANA time zone (`Europe/Berlin`)")
}

/// The kinds of notification whose channels a user chooses, as named in the
/// preferences.
const PREFERENCE_KINDS: [&str; 4] = [
    "newMessage",
    "messageRequest",
    "requestAccepted",
    "moderationNotice",
];

/// A user's notification preferences: per kind and channel, and quiet hours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NotificationPreferences {
    pub new_message: Channels,
    pub message_request: Channels,
    pub request_accepted: Channels,
    pub moderation_notice: Channels,
    pub quiet_hours: Option<QuietHours>,
    /// Pushes show the start of the message (off: only who wrote).
    pub push_preview: bool,
}

impl Default for NotificationPreferences {
    fn default() -> Self {
        Self {
            new_message: Channels::default(),
            message_request: Channels::default(),
            request_accepted: Channels::default(),
            moderation_notice: Channels::default(),
            quiet_hours: None,
            push_preview: true,
        }
    }
}

impl NotificationPreferences {
    /// The body of `PATCH /users/me/notification-settings` as the OpenAPI
    /// document states it: any of the preferences' fields; a kind's
    /// channels merge into the current ones, `quietHours` is replaced whole
    /// (or removed with `null`).
    pub fn patch_schema() -> utoipa::openapi::Schema {
        use utoipa::openapi::{
            ObjectBuilder, OneOfBuilder, Ref,
            schema::{AdditionalProperties, Type},
        };
        let boolean = || ObjectBuilder::new().schema_type(Type::Boolean);
        let closed = |builder: ObjectBuilder| {
            builder
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let channels = closed(ObjectBuilder::new())
            .property("inApp", boolean())
            .property("email", boolean())
            .property("push", boolean())
            .build();
        let mut patch = closed(ObjectBuilder::new());
        for kind in PREFERENCE_KINDS {
            patch = patch.property(kind, channels.clone());
        }
        patch
            .property(
                "quietHours",
                OneOfBuilder::new()
                    .item(Ref::from_schema_name("QuietHours"))
                    .item(ObjectBuilder::new().schema_type(Type::Null)),
            )
            .property("pushPreview", boolean())
            .build()
            .into()
    }

    /// The channels of notification kind `kind` (unknown kinds: all on).
    pub fn channels(&self, kind: &str) -> Channels {
        match kind {
            "new_message" => self.new_message,
            "message_request" => self.message_request,
            "request_accepted" => self.request_accepted,
            "moderation_notice" => self.moderation_notice,
            _ => Channels::default(),
        }
    }

    /// Checks the quiet hours (times and time zone).
    pub fn validate(&self) -> Result<(), ChatError> {
        if let Some(quiet) = &self.quiet_hours {
            quiet.bounds()?;
        }
        Ok(())
    }

    /// When the quiet hours around `now` end, if `now` is inside them.
    pub fn quiet_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (start, end, zone) = self.quiet_hours.as_ref()?.bounds().ok()?;
        let local = now.with_timezone(&zone);
        let time = local.time();
        let inside = if start <= end {
            time >= start && time < end
        } else {
            time >= start || time < end
        };
        if !inside {
            return None;
        }
        let mut day = local.date_naive();
        if start > end && time >= start {
            day = day.succ_opt()?;
        }
        let end_local = day.and_time(end).and_local_timezone(zone).earliest()?;
        Some(end_local.with_timezone(&Utc))
    }
}

impl QuietHours {
    fn bounds(&self) -> Result<(chrono::NaiveTime, chrono::NaiveTime, chrono_tz::Tz), ChatError> {
        let time = |raw: &str| {
            // Exactly CLOCK_TIME: two digits, a colon, two digits.
            let bytes = raw.as_bytes();
            let exact = bytes.len() == 5
                && bytes[2] == b':'
                && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
            exact
                .then(|| chrono::NaiveTime::parse_from_str(raw, "%H:%M").ok())
                .flatten()
                .ok_or_else(|| {
                    ChatError::invalid("invalid_quiet_hours", "quiet hours are HH:MM to HH:MM")
                })
        };
        let zone = self.time_zone.parse::<chrono_tz::Tz>().map_err(|_| {
            ChatError::invalid(
                "invalid_time_zone",
                "timeZone must be an IANA time zone such as Europe/Berlin",
            )
        })?;
        Ok((time(&self.start)?, time(&self.end)?, zone))
    }
}

/// A user's presence as others see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub user_id: String,
    pub status: PresenceStatus,
    /// Last heartbeat or connection change: the user's own only (null for
    /// everyone else, see [`Presence::as_shared`]).
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl Presence {
    /// What another user may see: the status without a last-seen time. A
    /// last-seen time would tell a blocked person, or a contact who is no
    /// longer one, when that happened (it would stop moving).
    pub fn as_shared(self) -> Self {
        Self {
            last_seen_at: None,
            ..self
        }
    }

    /// What someone whose presence the viewer may not see looks like: an
    /// offline contact, exactly.
    pub fn hidden(user: &UserId) -> Self {
        Self {
            user_id: user.as_str().to_owned(),
            status: PresenceStatus::Offline,
            last_seen_at: None,
        }
    }
}

/// What a heartbeat may report, as the OpenAPI document states it.
pub fn heartbeat_status_schema() -> utoipa::openapi::Object {
    super::schema::one_of(
        &["online", "away"],
        "`online` or `away` (the tab is hidden)",
    )
}

impl PresenceStatus {
    pub fn label(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }

    /// The status a heartbeat reports (WebSocket `presence.ping`, REST
    /// `POST /users/me/presence`): `online` (the default) or `away` (the tab
    /// is hidden). Returns whether the client is away.
    pub fn heartbeat_is_away(status: Option<&str>) -> Result<bool, ChatError> {
        match status {
            None | Some("online") => Ok(false),
            Some("away") => Ok(true),
            Some(_) => Err(ChatError::invalid(
                "invalid_status",
                "status must be online or away",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferences_patch_names_every_preference() {
        let utoipa::openapi::Schema::Object(patch) = NotificationPreferences::patch_schema() else {
            panic!("an object");
        };
        let named: Vec<&String> = patch.properties.keys().collect();
        let serialized = serde_json::to_value(NotificationPreferences::default()).unwrap();
        let fields: Vec<&String> = serialized.as_object().unwrap().keys().collect();
        let (mut named, mut fields) = (named, fields);
        named.sort();
        fields.sort();
        assert_eq!(named, fields);
    }

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn pairs_are_ordered_and_never_self() {
        let a = DirectPair::new(uid("bob"), uid("alice")).unwrap();
        let b = DirectPair::new(uid("alice"), uid("bob")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.low.as_str(), "alice");
        assert_eq!(
            DirectPair::new(uid("x"), uid("x")).unwrap_err().code(),
            "self_conversation"
        );
    }

    #[test]
    fn a_reply_accepts_and_a_first_message_to_a_stranger_asks() {
        let opened = RequestChange::of_message(RequestState::None, true);
        assert_eq!(opened.recipients, Some(RequestState::Pending));
        assert_eq!(opened.sender, None);
        for asked in [RequestState::Pending, RequestState::Declined] {
            let reply = RequestChange::of_message(asked, false);
            assert!(reply.accepts());
            assert_eq!(reply.recipients, None);
        }
        assert!(!RequestChange::of_message(RequestState::Accepted, false).accepts());
    }

    #[test]
    fn quiet_hours_cross_midnight_in_the_users_time_zone() {
        let prefs = NotificationPreferences {
            quiet_hours: Some(QuietHours {
                start: "22:00".into(),
                end: "07:00".into(),
                time_zone: "Europe/Berlin".into(),
            }),
            ..Default::default()
        };
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // 23:30 in Berlin (UTC+1 in December): quiet until 07:00 Berlin, 06:00 UTC.
        assert_eq!(
            prefs.quiet_until(at("2026-12-01T22:30:00Z")),
            Some(at("2026-12-02T06:00:00Z"))
        );
        // 05:00 Berlin: quiet until 07:00 the same day.
        assert_eq!(
            prefs.quiet_until(at("2026-12-02T04:00:00Z")),
            Some(at("2026-12-02T06:00:00Z"))
        );
        // Noon: not quiet.
        assert_eq!(prefs.quiet_until(at("2026-12-02T11:00:00Z")), None);
        let bad = NotificationPreferences {
            quiet_hours: Some(QuietHours {
                start: "22:00".into(),
                end: "07:00".into(),
                time_zone: "Mars/Olympus".into(),
            }),
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().code(), "invalid_time_zone");
    }

    #[test]
    fn heartbeats_are_online_or_away() {
        assert!(!PresenceStatus::heartbeat_is_away(None).unwrap());
        assert!(PresenceStatus::heartbeat_is_away(Some("away")).unwrap());
        assert_eq!(
            PresenceStatus::heartbeat_is_away(Some("busy"))
                .unwrap_err()
                .code(),
            "invalid_status"
        );
    }

    #[test]
    fn contexts_are_bounded() {
        let ok = ConversationContext {
            kind: "application".into(),
            id: "app-9".into(),
            title: Some("Barista".into()),
            subtitle: None,
        };
        assert!(ok.validate().is_ok());
        let empty_id = ConversationContext {
            id: String::new(),
            ..ok.clone()
        };
        assert!(empty_id.validate().is_err());
        let long_title = ConversationContext {
            title: Some("t".repeat(201)),
            ..ok
        };
        assert!(long_title.validate().is_err());
    }
}
