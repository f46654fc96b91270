//! The host platform's server-to-server calls: register the business
//! contexts people may talk about, and create or update users before they
//! ever sign in.

use super::ChatCore;
use crate::{
    domain::{ChatError, UserId, model::ConversationContext},
    persistence::{
        contexts::{self, RegisteredContext},
        users::{self, UserProfile},
    },
};

/// Most users one context may name.
pub const MAX_ALLOWED_USERS: usize = 1_000;

impl ChatCore {
    /// Registers (or replaces) a context; true when it was new.
    pub async fn register_context(&self, context: &RegisteredContext) -> Result<bool, ChatError> {
        ConversationContext {
            kind: context.kind.clone(),
            id: context.id.clone(),
            title: context.title.clone(),
            subtitle: context.subtitle.clone(),
        }
        .validate()?;
        if context.allowed_user_ids.len() > MAX_ALLOWED_USERS {
            return Err(ChatError::invalid(
                "too_many_users",
                format!("at most {MAX_ALLOWED_USERS} allowed users"),
            ));
        }
        for user in &context.allowed_user_ids {
            UserId::parse(user)?;
        }
        contexts::upsert(&self.pool, context).await
    }

    /// Creates or updates a user, with whether the platform verified them.
    pub async fn register_user(
        &self,
        profile: &UserProfile,
        verified: bool,
    ) -> Result<(), ChatError> {
        users::upsert_verified(&self.pool, profile, verified).await?;
        // Token claims seen later refresh the row again; forget the cached copy.
        self.known_users.remove(&profile.id);
        Ok(())
    }
}
