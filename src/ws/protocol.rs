//! Client → server frames: `{"type": "...", "data": {...}}` (DESIGN.md §4).
//!
//! Parsing is two-step (envelope, then the `data` of the named type) so a
//! frame with a known type but bad data is answered with a precise error that
//! still names the `clientMessageId` it answers, when it has one.

use serde::Deserialize;
use utoipa::ToSchema;

/// Every frame a client may send, by `type`, with the schema of its `data`
/// (`presence.ping` may leave `data` out): what the OpenAPI document's
/// `ClientFrame` lists. [`parse`] reads each of them.
pub const FRAMES: [(&str, &str); 7] = [
    ("message.send", "MessageSend"),
    ("read.receipt", "ReadReceipt"),
    ("typing.started", "Typing"),
    ("typing.stopped", "Typing"),
    ("presence.ping", "PresencePing"),
    ("presence.subscribe", "PresenceSubscribe"),
    ("auth.refresh", "AuthRefresh"),
];

/// A frame the connection loop knows how to handle.
#[derive(Debug, PartialEq)]
pub enum ClientFrame {
    MessageSend(MessageSend),
    ReadReceipt(ReadReceipt),
    /// `typing.started` (true) or `typing.stopped` (false).
    Typing(Typing, bool),
    PresencePing(PresencePing),
    PresenceSubscribe(PresenceSubscribe),
    /// `auth.refresh`: a new token for the same user, so that a long session
    /// outlives the token it opened with.
    AuthRefresh(AuthRefresh),
}

/// A new token for the same user: the session lives on past the old one's expiry.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthRefresh {
    pub token: String,
}

/// A heartbeat; at least every 30 s while the client is open.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresencePing {
    /// `online` (default) or `away` (the tab is hidden).
    #[serde(default)]
    #[schema(schema_with = heartbeat_status_or_null)]
    pub status: Option<String>,
}

fn heartbeat_status_or_null() -> utoipa::openapi::Object {
    crate::domain::schema::or_null(crate::domain::model::heartbeat_status_schema())
}

/// Whose presence this connection follows (`presence.updated` events).
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresenceSubscribe {
    /// Replaces this connection's subscription (at most 200 users).
    #[schema(max_items = 200)]
    pub user_ids: Vec<String>,
}

/// The sender is typing in a conversation (or stopped).
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Typing {
    #[schema(format = Uuid)]
    pub conversation_id: String,
}

/// A message, answered by an `ack` with the stored message (or an `error`
/// naming the same `clientMessageId`); the same rules as `POST .../messages`.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageSend {
    #[schema(format = Uuid)]
    pub conversation_id: String,
    #[schema(schema_with = crate::domain::text::body_schema)]
    pub body: String,
    #[schema(schema_with = crate::domain::text::client_message_id_schema)]
    pub client_message_id: String,
    #[serde(default)]
    #[schema(max_items = 10)]
    pub attachment_ids: Vec<uuid::Uuid>,
}

/// The sender has read up to `seq`.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadReceipt {
    #[schema(format = Uuid)]
    pub conversation_id: String,
    #[schema(minimum = 0)]
    pub seq: i64,
}

/// Why a frame was not understood; becomes an `error` frame.
#[derive(Debug, PartialEq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
    pub client_message_id: Option<String>,
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    let raw: RawFrame = serde_json::from_str(text).map_err(|e| FrameError {
        code: "malformed_frame",
        message: format!("expected {{\"type\": ..., \"data\": {{...}}}}: {e}"),
        client_message_id: None,
    })?;
    let client_message_id = raw
        .data
        .get("clientMessageId")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let invalid = |e: serde_json::Error| FrameError {
        code: "invalid_frame_data",
        message: format!("invalid data for {}: {e}", raw.kind),
        client_message_id: client_message_id.clone(),
    };
    match raw.kind.as_str() {
        "message.send" => serde_json::from_value(raw.data.clone())
            .map(ClientFrame::MessageSend)
            .map_err(invalid),
        "read.receipt" => serde_json::from_value(raw.data.clone())
            .map(ClientFrame::ReadReceipt)
            .map_err(invalid),
        "presence.ping" => serde_json::from_value(if raw.data.is_null() {
            serde_json::json!({})
        } else {
            raw.data.clone()
        })
        .map(ClientFrame::PresencePing)
        .map_err(invalid),
        "presence.subscribe" => serde_json::from_value(raw.data.clone())
            .map(ClientFrame::PresenceSubscribe)
            .map_err(invalid),
        "auth.refresh" => serde_json::from_value(raw.data.clone())
            .map(ClientFrame::AuthRefresh)
            .map_err(invalid),
        "typing.started" | "typing.stopped" => serde_json::from_value(raw.data.clone())
            .map(|t| ClientFrame::Typing(t, raw.kind == "typing.started"))
            .map_err(invalid),
        other => Err(FrameError {
            code: "unsupported_frame_type",
            message: format!("frames of type {other:?} are not supported"),
            client_message_id: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_frames() {
        let f = parse(
            r#"{"type":"message.send","data":{"conversationId":"c","body":"hi","clientMessageId":"m1"}}"#,
        );
        assert_eq!(
            f.unwrap(),
            ClientFrame::MessageSend(MessageSend {
                conversation_id: "c".into(),
                body: "hi".into(),
                client_message_id: "m1".into(),
                attachment_ids: Vec::new(),
            })
        );
        let r = parse(r#"{"type":"read.receipt","data":{"conversationId":"c","seq":4}}"#).unwrap();
        assert_eq!(
            r,
            ClientFrame::ReadReceipt(ReadReceipt {
                conversation_id: "c".into(),
                seq: 4
            })
        );
        let t = parse(r#"{"type":"typing.stopped","data":{"conversationId":"c"}}"#).unwrap();
        assert_eq!(
            t,
            ClientFrame::Typing(
                Typing {
                    conversation_id: "c".into()
                },
                false
            )
        );
    }

    #[test]
    fn every_documented_frame_type_is_read() {
        for (kind, _) in FRAMES {
            let frame = format!(r#"{{"type":"{kind}","data":{{}}}}"#);
            assert_ne!(
                parse(&frame).map_err(|e| e.code),
                Err("unsupported_frame_type"),
                "{kind}"
            );
        }
    }

    #[test]
    fn malformed_and_unknown_frames_get_precise_errors() {
        assert_eq!(parse("{nope").unwrap_err().code, "malformed_frame");
        assert_eq!(parse(r#"{"data":{}}"#).unwrap_err().code, "malformed_frame");
        assert_eq!(
            parse(r#"{"type":"launch.rockets"}"#).unwrap_err().code,
            "unsupported_frame_type"
        );
        let err = parse(
            r#"{"type":"message.send","data":{"conversationId":"c","clientMessageId":"m9"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_frame_data");
        assert_eq!(err.client_message_id.as_deref(), Some("m9"));
    }
}
