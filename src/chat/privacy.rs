//! A person's rights over their data: a copy of it (an export), and its
//! erasure (an admin's, on request) — and, with it, what an erased account
//! can still do (nothing).
//!
//! An export is written by a job (`user_export`, through the outbox) as one
//! JSON document in the blob store, downloadable through a short-lived link
//! for `PARLEY_EXPORT_RETENTION_HOURS`, then deleted by `export_cleanup`. It
//! needs the blob store, so it is off when attachments are.
//!
//! Erasure anonymises the profile ("Deleted user"), bans the account, closes
//! its connections on every node, removes its push subscriptions, settings
//! and pending notifications, and purges the bodies of its messages — except
//! in held conversations, which keep them until the hold ends; message
//! retention purges them then. Other people's messages are untouched. The
//! audit log records the fact and the reason, not the data.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    ChatCore, attachments::export_key, housekeeping::Progress, moderation::REASON, wire::Notice,
};
use crate::{
    actors::user::UserMsg,
    blobs::Serving,
    domain::{ChatError, UserId},
    persistence::{
        exports::{self, DataExport},
        outbox::Job,
        users,
    },
};

/// How long an export's download link works.
const EXPORT_LINK_TTL: Duration = Duration::from_secs(5 * 60);
/// Most expired exports one clean-up batch deletes.
const CLEANUP_BATCH: i64 = 100;

/// The payload of an export job.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportJob {
    export_id: Uuid,
}

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
    /// Starts an export of `subject`'s data, asked by `requester` (the
    /// subject, or an admin: audited); asking again while one is under way
    /// answers that one. 404 for an unknown user.
    pub async fn request_export(
        &self,
        requester: &UserId,
        subject: &str,
    ) -> Result<DataExport, ChatError> {
        self.attachment_parts()
            .map_err(|_| ChatError::NotFound { what: "export" })?;
        let not_found = || ChatError::NotFound { what: "user" };
        let subject = UserId::parse(subject).map_err(|_| not_found())?;
        exports::start(&self.pool, &subject, requester)
            .await?
            .ok_or_else(not_found)
    }

    /// An export of `subject`'s data, with a short-lived download link once
    /// it is ready; 404 when it is not theirs.
    pub async fn export_of(&self, subject: &str, id: Uuid) -> Result<DataExport, ChatError> {
        let not_found = || ChatError::NotFound { what: "export" };
        let parts = self.attachment_parts().map_err(|_| not_found())?;
        let subject = UserId::parse(subject).map_err(|_| not_found())?;
        let mut export = exports::find(&self.pool, &subject, id)
            .await?
            .ok_or_else(not_found)?;
        if export.status == "ready" {
            let serving = Serving {
                content_type: "application/json".into(),
                disposition: format!("attachment; filename=\"parley-export-{id}.json\""),
            };
            let link = parts
                .blobs
                .download_url(
                    &export_key(id),
                    &serving,
                    EXPORT_LINK_TTL,
                    self.safety.clock().now(),
                )
                .await?;
            export.download_url = Some(link.url);
        }
        Ok(export)
    }

    /// Runs an export job: gathers the data, writes the document, records
    /// the outcome. A failure is recorded as `failed` (the person can ask
    /// again) rather than retried; a job delivered twice writes once.
    pub(super) async fn write_export(&self, job: &Job) -> Result<(), ChatError> {
        let ExportJob { export_id } = serde_json::from_value(job.payload.clone())
            .map_err(|e| ChatError::internal(format!("export job payload: {e}")))?;
        let Some(user) = exports::take(&self.pool, export_id).await? else {
            return Ok(());
        };
        let written = self.write_export_document(export_id, &user).await;
        let outcome = match &written {
            Ok(size) => Ok((
                *size,
                self.safety.clock().now()
                    + chrono::Duration::hours(i64::from(self.retention.export_hours)),
            )),
            Err(e) => {
                tracing::warn!(error = %e.chain(), export = %export_id, "an export failed");
                Err("the export could not be written; ask for a new one")
            }
        };
        exports::finish(&self.pool, export_id, outcome).await
    }

    async fn write_export_document(&self, id: Uuid, user: &UserId) -> Result<i64, ChatError> {
        let parts = self.attachment_parts()?;
        let document = exports::gather(&self.pool, user).await?;
        let bytes = serde_json::to_vec_pretty(&document)
            .map_err(|e| ChatError::internal(format!("export: {e}")))?;
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let serving = Serving {
            content_type: "application/json".into(),
            disposition: "attachment".into(),
        };
        parts
            .blobs
            .put(&export_key(id), Bytes::from(bytes), &serving)
            .await?;
        Ok(size)
    }

    /// Deletes the exports whose download time is up (one batch); answers
    /// how many.
    pub(super) async fn clean_up_exports(&self) -> Result<usize, ChatError> {
        let Ok(parts) = self.attachment_parts() else {
            return Ok(0);
        };
        let expired = exports::expire(&self.pool, self.safety.clock().now(), CLEANUP_BATCH).await?;
        for id in &expired {
            parts.blobs.delete(&export_key(*id)).await?;
        }
        Ok(expired.len())
    }

    /// Erases `user` (admin only, audited, with a reason): 404 for an unknown
    /// user, 409 `already_erased` the second time.
    pub async fn erase_user(
        &self,
        admin: &UserId,
        user: &str,
        reason: &str,
    ) -> Result<Erasure, ChatError> {
        let reason = REASON.check(reason)?;
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
        self.close_sessions(user);
    }

    /// Closes `user`'s live connections on this node (after what is already
    /// queued for them, such as the notice saying why); clients reconnect
    /// and find their account as it now is.
    pub(super) fn close_sessions(&self, user: &UserId) {
        if let Some(actor) = self.users.get(user) {
            let _ = actor.send_message(UserMsg::DisconnectAll);
        }
    }
}
