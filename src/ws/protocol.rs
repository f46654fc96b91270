//! Client → server frames: `{"type": "...", "data": {...}}` (DESIGN.md §4).
//!
//! Parsing is two-step (envelope, then the `data` of the named type) so a
//! frame with a known type but bad data is answered with a precise error that
//! still names the `clientMessageId` it answers, when it has one.

use serde::Deserialize;

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

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRefresh {
    pub token: String,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresencePing {
    /// `online` (default) or `away` (the tab is hidden).
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresenceSubscribe {
    /// Replaces this connection's subscription (at most 200 users).
    pub user_ids: Vec<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Typing {
    pub conversation_id: String,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageSend {
    pub conversation_id: String,
    pub body: String,
    pub client_message_id: String,
    #[serde(default)]
    pub attachment_ids: Vec<uuid::Uuid>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadReceipt {
    pub conversation_id: String,
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
