//! Identifiers. User ids belong to the host platform (opaque text); conversation
//! and message ids are UUIDv7, so they sort by creation time.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use super::{
    ChatError,
    text::{Padding, TextField},
};

/// The sender of system messages: a reserved user that no token and no
/// platform call may name (`persistence::users::UserProfile::new` refuses it).
pub const SYSTEM_SENDER: &str = "parley:system";

/// Longest user id accepted from a token or a request.
pub const MAX_USER_ID_CHARS: usize = 128;

/// What a user id may be: 1–128 printable characters, no surrounding spaces.
const USER_ID: TextField = TextField {
    code: "invalid_user_id",
    message: "a user id is 1-128 printable characters without surrounding spaces",
    max_chars: MAX_USER_ID_CHARS,
    required: true,
    multiline: false,
    padding: Padding::Refuse,
};

/// The host platform's id of a user: 1–128 printable characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

/// A user id field in a request, as the OpenAPI document states it.
pub fn user_id_schema() -> utoipa::openapi::Object {
    USER_ID.schema()
}

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, ChatError> {
        USER_ID.check(raw).map(|id| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reserved sender of system messages ([`SYSTEM_SENDER`]).
    pub fn system() -> Self {
        Self(SYSTEM_SENDER.to_owned())
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A conversation's id (UUIDv7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(pub Uuid);

impl ConversationId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses a path segment; anything that is not a UUID is "not found", so a
    /// probe learns nothing from the shape of its guess.
    pub fn parse(raw: &str) -> Result<Self, ChatError> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| ChatError::conversation_not_found())
    }
}

impl Default for ConversationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(UserId::parse("cand-42").is_ok());
        assert!(UserId::parse("ünïcode-用户").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(" padded").is_err());
        assert!(UserId::parse("bell\u{7}").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
        assert!(UserId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn conversation_ids_parse_or_are_not_found() {
        let id = ConversationId::new();
        assert_eq!(ConversationId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(
            ConversationId::parse("nope").unwrap_err().code(),
            "not_found"
        );
    }
}
