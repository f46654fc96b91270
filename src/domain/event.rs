//! Server → client events and their wire envelope
//! `{"type": "...", "eventVersion": 1, "data": {...}}` (DESIGN.md §4).
//!
//! An event is serialised once into a [`SharedFrame`], whose clones share one
//! buffer, so fanning it out to many connections copies no bytes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{
    attachments::Attachment,
    model::{Message, Notification},
};

/// A serialised event: JSON text in one reference-counted buffer, so clones
/// (one per recipient connection) share it. Transports turn it into their own
/// frame type without copying ([`SharedFrame::into_bytes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFrame(Arc<str>);

impl SharedFrame {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same buffer as `bytes::Bytes` (UTF-8 JSON), without a copy.
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from_owner(FrameBytes(self.0))
    }
}

impl From<String> for SharedFrame {
    fn from(json: String) -> Self {
        Self(json.into())
    }
}

/// Lends a frame's text to `bytes::Bytes` as bytes.
struct FrameBytes(Arc<str>);

impl AsRef<[u8]> for FrameBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Version of the envelope and of every event's `data` shape.
pub const EVENT_VERSION: u8 = 1;

/// Everything the server pushes to clients.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", content = "data")]
pub enum ServerEvent {
    /// A new message, with its conversation `seq` (gap detection).
    #[serde(rename = "message.created")]
    MessageCreated(Message),
    /// A message changed; for now: a moderator redacted it (`redacted: true`, placeholder body).
    #[serde(rename = "message.updated")]
    MessageUpdated(Message),
    /// Another participant's read pointer moved.
    #[serde(rename = "read.receipt", rename_all = "camelCase")]
    ReadReceipt {
        conversation_id: Uuid,
        user_id: String,
        seq: i64,
        read_at: Option<DateTime<Utc>>,
    },
    /// The receiving user's own unread state changed (a new message, or a read
    /// on another tab), they joined a thread, or left one (`removed`);
    /// `totalUnread` is the badge over all their conversations.
    #[serde(rename = "conversation.updated", rename_all = "camelCase")]
    ConversationUpdated {
        conversation_id: Uuid,
        last_read_seq: i64,
        unread_count: i64,
        total_unread: i64,
        /// The receiving user was removed from this context thread: drop it
        /// (it answers 404 from now on and sends nothing more).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        removed: bool,
    },
    /// Another participant started typing (refreshed at most every 2 s while they type).
    #[serde(rename = "typing.started", rename_all = "camelCase")]
    TypingStarted {
        conversation_id: Uuid,
        user_id: String,
    },
    /// Another participant stopped typing, sent a message, left, or timed out.
    #[serde(rename = "typing.stopped", rename_all = "camelCase")]
    TypingStopped {
        conversation_id: Uuid,
        user_id: String,
    },
    /// A watched user's presence changed (see `presence.subscribe`).
    #[serde(rename = "presence.updated")]
    PresenceUpdated(super::model::Presence),
    /// Someone the receiving user is not connected with asks to talk (a message request).
    #[serde(rename = "conversation.requested", rename_all = "camelCase")]
    ConversationRequested {
        conversation_id: Uuid,
        from_user_id: String,
    },
    /// A message request was accepted (explicitly, or by replying) by `userId`.
    #[serde(rename = "conversation.accepted", rename_all = "camelCase")]
    ConversationAccepted {
        conversation_id: Uuid,
        user_id: String,
    },
    /// A message request was declined by `userId`.
    #[serde(rename = "conversation.declined", rename_all = "camelCase")]
    ConversationDeclined {
        conversation_id: Uuid,
        user_id: String,
    },
    /// The receiving user blocked someone (sent to the blocker's own connections only).
    #[serde(rename = "block.created", rename_all = "camelCase")]
    BlockCreated { user_id: String },
    /// The receiving user lifted a block.
    #[serde(rename = "block.removed", rename_all = "camelCase")]
    BlockRemoved { user_id: String },
    /// A new in-app notification, or a `new_message` one that now stands for
    /// one more message (same `id`, higher `messageCount`).
    #[serde(rename = "notification.created")]
    NotificationCreated(Notification),
    /// An attachment's status or variants changed (uploaded, scanned, blocked, deleted).
    #[serde(rename = "attachment.updated")]
    AttachmentUpdated(Attachment),
    /// Something the client should act on; `resync_required` means: call `GET /chat/sync`.
    #[serde(rename = "system.notice")]
    SystemNotice { code: String, message: String },
    /// Answer to a client's `message.send`: the stored message.
    #[serde(rename = "ack", rename_all = "camelCase")]
    Ack {
        client_message_id: String,
        message: Message,
    },
    /// A client frame could not be handled; `clientMessageId` names the send it answers.
    #[serde(rename = "error", rename_all = "camelCase")]
    Error {
        code: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_message_id: Option<String>,
    },
}

/// One user's new unread state in one conversation, as absolute values (so
/// applying an update twice, or late, never skews the badge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnreadUpdate {
    pub conversation_id: Uuid,
    pub unread_count: i64,
    pub last_read_seq: i64,
    /// False for an archived conversation: it does not count towards `totalUnread`.
    pub in_badge: bool,
    /// The user is no longer a member (removed from a context thread).
    #[serde(default)]
    pub removed: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(flatten)]
    event: &'a ServerEvent,
    #[serde(rename = "eventVersion")]
    event_version: u8,
}

impl ServerEvent {
    /// Tells the client it may have missed events: call `GET /chat/sync`.
    pub fn resync_required(why: &str) -> Self {
        Self::SystemNotice {
            code: "resync_required".into(),
            message: why.into(),
        }
    }

    /// The envelope's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MessageCreated(_) => "message.created",
            Self::MessageUpdated(_) => "message.updated",
            Self::ReadReceipt { .. } => "read.receipt",
            Self::ConversationUpdated { .. } => "conversation.updated",
            Self::TypingStarted { .. } => "typing.started",
            Self::TypingStopped { .. } => "typing.stopped",
            Self::PresenceUpdated(_) => "presence.updated",
            Self::SystemNotice { .. } => "system.notice",
            Self::NotificationCreated(_) => "notification.created",
            Self::AttachmentUpdated(_) => "attachment.updated",
            Self::BlockCreated { .. } => "block.created",
            Self::ConversationRequested { .. } => "conversation.requested",
            Self::ConversationAccepted { .. } => "conversation.accepted",
            Self::ConversationDeclined { .. } => "conversation.declined",
            Self::BlockRemoved { .. } => "block.removed",
            Self::Ack { .. } => "ack",
            Self::Error { .. } => "error",
        }
    }

    /// The event's envelope as JSON text, ready to share between connections.
    /// Each event is serialised once, so this is also where events are counted.
    pub fn to_frame(&self) -> SharedFrame {
        metrics::counter!("parley_events_total", "type" => self.kind()).increment(1);
        let envelope = Envelope {
            event: self,
            event_version: EVENT_VERSION,
        };
        // Serialising these plain structs cannot fail (string keys, no maps
        // with non-string keys); an error here would be a programming bug.
        let json = serde_json::to_string(&envelope).unwrap_or_else(|e| {
            tracing::error!(error = %e, "event serialisation failed");
            String::from(r#"{"type":"error","eventVersion":1,"data":{"code":"internal","message":"event lost"}}"#)
        });
        SharedFrame::from(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_type_version_and_data() {
        let frame = ServerEvent::ConversationUpdated {
            conversation_id: Uuid::nil(),
            last_read_seq: 3,
            unread_count: 0,
            total_unread: 2,
            removed: false,
        }
        .to_frame();
        let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(v["type"], "conversation.updated");
        assert_eq!(v["eventVersion"], 1);
        assert_eq!(v["data"]["lastReadSeq"], 3);
        assert_eq!(v["data"]["totalUnread"], 2);
        assert_eq!(v["data"]["conversationId"], Uuid::nil().to_string());
        assert!(v["data"].get("removed").is_none(), "only said when true");
    }

    #[test]
    fn kind_matches_the_serialised_type() {
        let events = [
            ServerEvent::TypingStarted {
                conversation_id: Uuid::nil(),
                user_id: "u".into(),
            },
            ServerEvent::SystemNotice {
                code: "c".into(),
                message: "m".into(),
            },
            ServerEvent::ConversationUpdated {
                conversation_id: Uuid::nil(),
                last_read_seq: 0,
                unread_count: 0,
                total_unread: 0,
                removed: true,
            },
        ];
        for event in events {
            let v: serde_json::Value = serde_json::from_str(event.to_frame().as_str()).unwrap();
            assert_eq!(v["type"], event.kind());
        }
    }

    #[test]
    fn errors_name_the_send_they_answer_only_when_there_is_one() {
        let frame = ServerEvent::Error {
            code: "bad_frame".into(),
            message: "nope".into(),
            client_message_id: None,
        }
        .to_frame();
        let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(v["data"]["code"], "bad_frame");
        assert!(v["data"].get("clientMessageId").is_none());
    }
}
