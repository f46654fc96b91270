//! The error vocabulary of the chat core. HTTP maps each variant to a status and
//! a stable snake_case code (`http::error`); the WebSocket sends the same code
//! in an `error` frame, so clients handle one set of codes.
//!
//! Failures of a dependency keep their cause as the error's `source`, so the
//! log shows the whole chain while the client sees a generic message.

/// The cause of an unavailable or internal error (a database or I/O error).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong inside the chat core, from the caller's point of view.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Bad input: a stable `code` and a message safe to show to the client.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The thing does not exist, or the caller may not know that it does.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// The request conflicts with stored state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Too big to take (a file over its limit).
    #[error("{message}")]
    TooLarge { message: String },
    /// It existed and is gone for good (a blocked or deleted attachment).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// Not allowed, for a reason the caller may be told (`code` says which).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// A limit was reached (connections, rates); retrying later may succeed.
    #[error("{message}")]
    Limited {
        code: &'static str,
        message: String,
        /// When trying again may succeed (the `Retry-After` header).
        retry_after: std::time::Duration,
    },
    /// A dependency (database, actor) did not answer in time or failed in a
    /// way a retry may fix. The detail is for the log, never for the client.
    #[error("service unavailable: {detail}")]
    Unavailable {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A bug or an unexpected failure; the detail is logged, not returned.
    #[error("internal error: {detail}")]
    Internal {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl ChatError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::TooLarge {
            message: message.into(),
        }
    }

    pub fn gone(code: &'static str, message: impl Into<String>) -> Self {
        Self::Gone {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// A sender used one `clientMessageId` for messages in two conversations.
    pub fn client_message_id_reused() -> Self {
        Self::Conflict {
            code: "client_message_id_reused",
            message: "this clientMessageId was already used for a message in another conversation"
                .into(),
        }
    }

    /// The conversation does not exist, or the caller takes no part in it:
    /// the same answer either way, so nobody learns which.
    pub fn conversation_not_found() -> Self {
        Self::NotFound {
            what: "conversation",
        }
    }

    /// The one answer for every message that cannot be delivered (blocked,
    /// in either direction): the same code and words whatever the reason, so a
    /// sender cannot tell that they were blocked.
    pub fn not_delivered() -> Self {
        Self::forbidden("not_delivered", "Message could not be delivered.")
    }

    /// The conversation's actor that was asked is not (or no longer) the
    /// one that owns it: the caller retries against the owner. Never reaches
    /// a client (the dispatcher retries; a second move in a row is a 503).
    pub fn conversation_moved() -> Self {
        Self::Conflict {
            code: "conversation_moved",
            message: "the conversation moved to another owner".into(),
        }
    }

    /// Whether this is [`ChatError::conversation_moved`].
    pub fn is_moved(&self) -> bool {
        self.code() == "conversation_moved"
    }

    /// A dependency did not answer in time, or failed in a way a retry may fix.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable {
            detail: detail.into(),
            cause: None,
        }
    }

    /// A bug or an unexpected state.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::Internal {
            detail: detail.into(),
            cause: None,
        }
    }

    /// The error and its causes, outermost first, for the log.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    /// Whether this is a failure on the server's side (5xx), not the caller's.
    pub fn is_server_failure(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Internal { .. })
    }

    /// Over a rate limit; retry after `retry_after`.
    pub fn rate_limited(what: &str, retry_after: std::time::Duration) -> Self {
        Self::Limited {
            code: "rate_limited",
            message: format!("too many {what}; retry later"),
            retry_after,
        }
    }

    /// The user already holds `max` realtime connections (on this node, or
    /// across the cluster).
    pub fn too_many_connections(max: usize) -> Self {
        Self::Limited {
            code: "too_many_connections",
            message: format!("at most {max} connections per user"),
            retry_after: std::time::Duration::from_secs(5),
        }
    }

    /// The stable snake_case code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { code, .. }
            | Self::Conflict { code, .. }
            | Self::Limited { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Gone { code, .. } => code,
            Self::TooLarge { .. } => "too_large",
            Self::NotFound { .. } => "not_found",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal { .. } => "internal",
        }
    }

    /// The message that may be shown to the client: internals are never exposed.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable { .. } => "The service is busy; retry shortly.".to_string(),
            Self::Internal { .. } => "Something went wrong on our side.".to_string(),
            other => other.to_string(),
        }
    }
}

/// A [`ChatError`] as it travels between nodes (the answer to a forwarded
/// command). Failures keep only their detail: a cause does not cross nodes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WireError {
    kind: WireKind,
    code: String,
    message: String,
    #[serde(default)]
    retry_after_ms: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireKind {
    Invalid,
    NotFound,
    Conflict,
    Forbidden,
    Limited,
    TooLarge,
    Gone,
    Unavailable,
    Internal,
}

impl From<&ChatError> for WireError {
    fn from(e: &ChatError) -> Self {
        let (kind, code, message, retry_after) = match e {
            ChatError::Invalid { code, message } => (WireKind::Invalid, *code, message.clone(), 0),
            ChatError::NotFound { what } => (WireKind::NotFound, *what, String::new(), 0),
            ChatError::Conflict { code, message } => {
                (WireKind::Conflict, *code, message.clone(), 0)
            }
            ChatError::Forbidden { code, message } => {
                (WireKind::Forbidden, *code, message.clone(), 0)
            }
            ChatError::TooLarge { message } => (WireKind::TooLarge, "", message.clone(), 0),
            ChatError::Gone { code, message } => (WireKind::Gone, *code, message.clone(), 0),
            ChatError::Limited {
                code,
                message,
                retry_after,
            } => (
                WireKind::Limited,
                *code,
                message.clone(),
                u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
            ),
            ChatError::Unavailable { .. } => (WireKind::Unavailable, "", e.chain(), 0),
            ChatError::Internal { .. } => (WireKind::Internal, "", e.chain(), 0),
        };
        Self {
            kind,
            code: code.to_owned(),
            message,
            retry_after_ms: retry_after,
        }
    }
}

impl From<WireError> for ChatError {
    fn from(wire: WireError) -> Self {
        let code = intern(wire.code);
        match wire.kind {
            WireKind::Invalid => Self::Invalid {
                code,
                message: wire.message,
            },
            WireKind::NotFound => Self::NotFound { what: code },
            WireKind::Conflict => Self::Conflict {
                code,
                message: wire.message,
            },
            WireKind::Forbidden => Self::Forbidden {
                code,
                message: wire.message,
            },
            WireKind::TooLarge => Self::TooLarge {
                message: wire.message,
            },
            WireKind::Gone => Self::Gone {
                code,
                message: wire.message,
            },
            WireKind::Limited => Self::Limited {
                code,
                message: wire.message,
                retry_after: std::time::Duration::from_millis(wire.retry_after_ms),
            },
            WireKind::Unavailable => {
                Self::unavailable(format!("on the owner node: {}", wire.message))
            }
            WireKind::Internal => Self::internal(format!("on the owner node: {}", wire.message)),
        }
    }
}

/// The `'static` copy of an error code received from another node. Codes
/// come from a fixed set written in this program, so each is leaked once and
/// the set stays small.
fn intern(code: String) -> &'static str {
    static CODES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut codes = match CODES.lock() {
        Ok(codes) => codes,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(known) = codes.iter().find(|known| **known == code) {
        return known;
    }
    let leaked: &'static str = Box::leak(code.into_boxed_str());
    codes.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_nodes_with_their_code_and_status_kind() {
        let limited = ChatError::rate_limited("messages", std::time::Duration::from_secs(7));
        let json = serde_json::to_string(&WireError::from(&limited)).unwrap();
        let back = ChatError::from(serde_json::from_str::<WireError>(&json).unwrap());
        assert!(
            matches!(back, ChatError::Limited { code: "rate_limited", retry_after, .. }
            if retry_after == std::time::Duration::from_secs(7))
        );
        let json = serde_json::to_string(&WireError::from(&ChatError::not_delivered())).unwrap();
        let back = ChatError::from(serde_json::from_str::<WireError>(&json).unwrap());
        assert_eq!(back.code(), "not_delivered");
        assert_eq!(back.public_message(), "Message could not be delivered.");
        let json = serde_json::to_string(&WireError::from(&ChatError::unavailable("db"))).unwrap();
        let back = ChatError::from(serde_json::from_str::<WireError>(&json).unwrap());
        assert!(back.is_server_failure());
    }

    #[test]
    fn causes_stay_attached_and_private() {
        let io = std::io::Error::other("connection reset");
        let err = ChatError::Unavailable {
            detail: "database".into(),
            cause: Some(Box::new(io)),
        };
        assert_eq!(
            err.chain(),
            "service unavailable: database: connection reset"
        );
        assert!(!err.public_message().contains("reset"));
        assert!(err.is_server_failure());
    }
}
