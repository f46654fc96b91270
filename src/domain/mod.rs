//! Pure types and rules of the chat domain: identifiers, message text, the
//! conversation pair and context, the events clients receive, and the error
//! vocabulary shared by every layer. Nothing here does I/O, so every rule is
//! unit-tested in place.

pub mod attachments;
pub mod clock;
pub mod error;
pub mod event;
pub mod housekeeping;
pub mod ids;
pub mod model;
pub mod schema;
pub mod search;
pub mod text;
pub mod thread;

pub use error::ChatError;
pub use ids::{ConversationId, UserId};
