//! A person's rights over their data: erasure (an admin's, on request) and,
//! with it, what an erased account can still do (nothing).
//!
//! Erasure anonymises the profile ("Deleted user"), bans the account, closes
//! its connections on every node, removes its push subscriptions, settings
//! and pending notifications, and purges the bodies of its messages — except
//! in held conversations, which keep them until the hold ends; message
//! retention purges them then. Other people's messages are untouched. The
//! audit log records the fact and the reason, not the data.

use serde::Serialize;
use utoipa::ToSchema;

use super::{ChatCore, housekeeping::Progress, moderation::NOTE, wire::Notice};
use crate::{
    actors::user::UserMsg,
    domain::{ChatError, UserId},
    persistence::users,
};

/// What an erased account's token gets, on every request.
pub(super) fn account_erased() -> ChatError {
    ChatError::forbidden("account_erased", "This account has been deleted.")
}

/// What an erasure did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    pub user_id: String,
    /// Messages whose bodies were purged now.
    pub messages_redacted: u64,
    /// Messages kept, in held conversations, until their hold ends.
    pub messages_held: i64,
}

impl ChatCore {
    /// Erases `user` (admin only, audited, with a reason): 404 for an unknown
    /// user, 409 `already_erased` the second time.
    pub async fn erase_user(
        &self,
        admin: &UserId,
        user: &str,
        reason: &str,
    ) -> Result<Erasure, ChatError> {
        let reason = NOTE.check(reason)?;
        if reason.trim().is_empty() {
            return Err(ChatError::invalid(
                "invalid_note",
                "an erasure needs a reason",
            ));
        }
        let not_found = || ChatError::NotFound { what: "user" };
        let user = UserId::parse(user).map_err(|_| not_found())?;
        match users::erase(&self.pool, &user, admin, reason).await? {
            None => return Err(not_found()),
            Some(false) => {
                return Err(ChatError::Conflict {
                    code: "already_erased",
                    message: "this user was erased already".into(),
                });
            }
            Some(true) => {}
        }
        self.forget_erased(&user);
        self.tell_cluster(&Notice::UserErased(user.clone())).await;
        let mut progress = Progress::untracked();
        self.purge_erased_messages(Some(&user), &mut progress)
            .await?;
        Ok(Erasure {
            messages_redacted: progress.total,
            messages_held: users::unpurged_messages(&self.pool, &user).await?,
            user_id: user.to_string(),
        })
    }

    /// Drops what this node remembers of an erased user (their claims and
    /// sanction) and closes their connections here.
    pub(super) fn forget_erased(&self, user: &UserId) {
        self.known_users.remove(user);
        self.safety.sanction_changed(user);
        if let Some(actor) = self.users.get(user) {
            let _ = actor.send_message(UserMsg::DisconnectAll);
        }
    }
}
