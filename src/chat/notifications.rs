//! Notifications: the follow-up jobs of the outbox (run by `jobs`, in
//! process or from RabbitMQ) and the in-app notification list.
//!
//! Each job runs at most once however often it is delivered: it records its
//! id in the same transaction as its notifications. Who hears of a new
//! message: every other participant who has not muted or archived the
//! conversation and stands on no side of a block with the sender. A message
//! that opens a request notifies as `message_request`, one that accepts a
//! request as `request_accepted`, any other as `new_message` (one per
//! conversation while unread: its count and preview move on). Each also
//! queues an email, sent only if the person is still away when it is due
//! (`chat::email`).

use std::collections::HashMap;

use serde::Deserialize;
use uuid::Uuid;

use super::{
    ChatCore,
    moderation::{ADMIN_DEFAULT_LIMIT, ADMIN_MAX_LIMIT},
    page_limit,
};
use crate::{
    domain::{
        ChatError, UserId,
        event::ServerEvent,
        model::{Notification, NotificationPreferences, Page},
    },
    persistence::{
        audit::{self, AuditEntry},
        client, email, id_cursor,
        notifications::{self, NewMessageRef, NewNotification},
        outbox::{self, DeadJob, Job},
        users,
    },
};

/// Characters of a message shown in a notification.
const PREVIEW_CHARS: usize = 140;
/// Default and largest page of notifications.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

/// The payload of a `message_created` job (written by the message insert).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageCreated {
    conversation_id: Uuid,
    message_id: Uuid,
    seq: i64,
    sender_id: String,
    sender_request_state: Option<String>,
    recipient_request_state: Option<String>,
}

impl MessageCreated {
    /// The notification it makes: a request opened, a request accepted, or a message.
    fn kind(&self) -> &'static str {
        if self.recipient_request_state.as_deref() == Some("pending") {
            "message_request"
        } else if self.sender_request_state.as_deref() == Some("accepted") {
            "request_accepted"
        } else {
            "new_message"
        }
    }
}

/// A notification just recorded, for the user it is for, with their preferences.
pub(super) struct Recorded {
    pub(super) user: UserId,
    pub(super) notification: Notification,
    pub(super) preferences: NotificationPreferences,
}

/// The payload of a `moderation_notice` job (written with the moderator's action).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModerationNotice {
    user_id: String,
    action: String,
    note: String,
}

impl ChatCore {
    /// Runs one follow-up job; a job already done does nothing. An error
    /// means "try again later" (the caller retries with backoff).
    pub async fn run_job(&self, job: &Job) -> Result<(), ChatError> {
        match job.kind.as_str() {
            "message_created" => self.run_message_jobs(std::slice::from_ref(job)).await,
            "moderation_notice" => {
                let created = self.moderation_notification(job).await?;
                self.deliver(created, std::slice::from_ref(job)).await;
                Ok(())
            }
            super::attachments::SCAN_JOB => self.scan_attachment(job).await,
            super::attachments::DELETE_JOB => self.delete_attachment_blobs(job).await,
            crate::persistence::exports::EXPORT_JOB => self.write_export(job).await,
            other => Err(ChatError::internal(format!(
                "no handler for job kind {other}"
            ))),
        }
    }

    /// Runs `message_created` jobs together, in one transaction and a few
    /// statements whatever their number (as group commit writes messages):
    /// the jobs are marked done, every audience read, every notification
    /// recorded and every email queued at once. All or nothing: on an error
    /// the caller runs them one by one.
    pub async fn run_message_jobs(&self, jobs: &[Job]) -> Result<(), ChatError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let created = jobs
            .iter()
            .map(|job| Ok((job.job_id, decode::<MessageCreated>(job)?)))
            .collect::<Result<Vec<_>, ChatError>>()?;
        let mut db = client(&self.pool).await?;
        let tx = db.transaction().await?;
        let ids: Vec<Uuid> = created.iter().map(|(id, _)| *id).collect();
        let fresh: std::collections::HashSet<Uuid> =
            outbox::mark_done(&tx, &ids).await?.into_iter().collect();
        let created: Vec<MessageCreated> = created
            .into_iter()
            .filter(|(id, _)| fresh.contains(id))
            .map(|(_, c)| c)
            .collect();
        if created.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        let messages: Vec<NewMessageRef<'_>> = created
            .iter()
            .map(|c| NewMessageRef {
                conversation: c.conversation_id,
                message: c.message_id,
                sender: &c.sender_id,
            })
            .collect();
        let recipients = notifications::audience(&tx, &messages).await?;
        let previews: Vec<String> = recipients
            .iter()
            .map(|r| preview(&r.body, &r.kind))
            .collect();
        let mut wanted: Vec<NewNotification<'_>> = Vec::new();
        // One `new_message` per user and conversation: later messages of the batch join it.
        let mut collapsed: HashMap<(&UserId, Uuid), usize> = HashMap::new();
        let mut emails: Vec<(&UserId, Uuid, &str)> = Vec::new();
        let mut preferences: HashMap<&UserId, &NotificationPreferences> = HashMap::new();
        for (recipient, preview) in recipients.iter().zip(&previews) {
            let message = &created[recipient.job];
            let kind = message.kind();
            let channels = recipient.preferences.channels(kind);
            preferences.insert(&recipient.user_id, &recipient.preferences);
            if channels.email {
                let email = (
                    &recipient.user_id,
                    message.conversation_id,
                    super::email::email_kind(kind),
                );
                if !emails.contains(&email) {
                    emails.push(email);
                }
            }
            if !channels.in_app {
                continue;
            }
            let key = (&recipient.user_id, message.conversation_id);
            if kind == "new_message"
                && let Some(&at) = collapsed.get(&key)
            {
                let joined = &mut wanted[at];
                joined.count += 1;
                if message.seq > joined.seq {
                    joined.preview = preview;
                    joined.actor = Some(&message.sender_id);
                    joined.seq = message.seq;
                }
                continue;
            }
            if kind == "new_message" {
                collapsed.insert(key, wanted.len());
            }
            wanted.push(NewNotification {
                user: &recipient.user_id,
                kind,
                conversation: Some(message.conversation_id),
                actor: Some(&message.sender_id),
                preview,
                count: 1,
                seq: message.seq,
            });
        }
        email::schedule(
            &tx,
            &emails,
            self.mail_settings.delay,
            self.mail_settings.batch,
        )
        .await?;
        let recorded = notifications::record_all(&tx, &wanted).await?;
        tx.commit().await?;
        let recorded = recorded
            .into_iter()
            .map(|(user, notification)| {
                let preferences = preferences
                    .get(&user)
                    .map(|p| (*p).clone())
                    .unwrap_or_default();
                Recorded {
                    user,
                    notification,
                    preferences,
                }
            })
            .collect();
        self.deliver(recorded, jobs).await;
        Ok(())
    }

    /// Tells each user of their new notification (event, then push) and
    /// records how long the jobs took from their action. The pushes go out
    /// on a task of their own, so the next batch of jobs does not wait for
    /// push services; at most [`super::push::BATCHES_IN_FLIGHT`] batches'
    /// pushes at once, beyond which the runner waits.
    async fn deliver(&self, recorded: Vec<Recorded>, jobs: &[Job]) {
        let now = chrono::Utc::now();
        for job in jobs {
            metrics::histogram!("parley_notification_delay_seconds").record(
                (now - job.created_at)
                    .to_std()
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
        }
        for r in &recorded {
            self.publish(
                std::slice::from_ref(&r.user),
                ServerEvent::NotificationCreated(r.notification.clone()),
            );
        }
        let Ok(permit) = self.push_batches.clone().acquire_owned().await else {
            return;
        };
        let chat = self.clone();
        tokio::spawn(async move {
            chat.push_notifications(&recorded).await;
            drop(permit);
        });
    }

    async fn moderation_notification(&self, job: &Job) -> Result<Vec<Recorded>, ChatError> {
        let notice: ModerationNotice = decode(job)?;
        let user = UserId::parse(&notice.user_id)?;
        let text = if notice.note.is_empty() {
            format!(
                "A moderator took action on your account: {}.",
                notice.action
            )
        } else {
            notice.note
        };
        let mut db = client(&self.pool).await?;
        let tx = db.transaction().await?;
        if outbox::mark_done(&tx, &[job.job_id]).await?.is_empty() {
            return Ok(Vec::new());
        }
        let notification = notifications::record(
            &tx,
            NewNotification {
                user: &user,
                kind: "moderation_notice",
                conversation: None,
                actor: None,
                preview: &text,
                count: 1,
                seq: 0,
            },
        )
        .await?;
        tx.commit().await?;
        let preferences = users::notification_preferences(&self.pool, &user).await?;
        Ok(vec![Recorded {
            user,
            notification,
            preferences,
        }])
    }

    /// `user`'s notification preferences.
    pub async fn notification_preferences(
        &self,
        user: &UserId,
    ) -> Result<NotificationPreferences, ChatError> {
        users::notification_preferences(&self.pool, user).await
    }

    /// Changes some of `user`'s notification preferences: `patch` has the
    /// shape of the preferences, with only what changes (objects are merged,
    /// `quietHours: null` removes them). Returns them all.
    pub async fn update_notification_preferences(
        &self,
        user: &UserId,
        patch: serde_json::Value,
    ) -> Result<NotificationPreferences, ChatError> {
        let current = users::notification_preferences(&self.pool, user).await?;
        let mut merged = serde_json::to_value(&current)
            .map_err(|e| ChatError::internal(format!("encoding preferences: {e}")))?;
        // Quiet hours are replaced whole, never merged field by field.
        if let (Some(quiet), true) = (
            merged.get_mut("quietHours"),
            patch.get("quietHours").is_some(),
        ) {
            *quiet = serde_json::Value::Null;
        }
        merge(&mut merged, patch);
        let updated: NotificationPreferences = serde_json::from_value(merged).map_err(|e| {
            ChatError::invalid("invalid_preferences", format!("invalid preferences: {e}"))
        })?;
        updated.validate()?;
        users::set_notification_preferences(&self.pool, user, &updated).await?;
        Ok(updated)
    }

    /// Jobs waiting in the outbox, and the age of the oldest in seconds.
    pub async fn outbox_backlog(&self) -> Result<(i64, f64), ChatError> {
        outbox::backlog(&self.pool).await
    }

    /// Jobs that kept failing, newest first (for admins).
    pub async fn dead_jobs(
        &self,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<DeadJob>, ChatError> {
        let before = cursor.map(id_cursor).transpose()?;
        let limit = page_limit(limit, ADMIN_DEFAULT_LIMIT, ADMIN_MAX_LIMIT)?;
        let (items, has_more) = outbox::dead(&self.pool, before, limit).await?;
        let next_cursor = has_more
            .then(|| items.last().map(|j| j.id.to_string()))
            .flatten();
        Ok(Page::new(items, next_cursor))
    }

    /// Puts a dead job back into the outbox to run again (from its first
    /// attempt; at most once however often it is delivered, as always),
    /// recorded in the audit log; 404 when there is no such dead job.
    pub async fn retry_dead_job(&self, admin: &UserId, job_id: Uuid) -> Result<(), ChatError> {
        let mut db = client(&self.pool).await?;
        let tx = db.transaction().await?;
        let kind = outbox::revive(&tx, job_id)
            .await?
            .ok_or(ChatError::NotFound { what: "dead job" })?;
        audit::record(
            &tx,
            &AuditEntry {
                actor: Some(admin.as_str()),
                action: "job.retried",
                target_type: "job",
                target_id: &job_id.to_string(),
                conversation: None,
                details: serde_json::json!({ "kind": kind }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `user`'s notifications, newest first, below the id `before`.
    pub async fn notifications(
        &self,
        user: &UserId,
        before: Option<i64>,
        limit: Option<i64>,
    ) -> Result<(Page<Notification>, i64), ChatError> {
        let limit = page_limit(limit, DEFAULT_LIMIT, MAX_LIMIT)?;
        let (items, has_more, unread) =
            notifications::page(&self.pool, user, before, limit).await?;
        let next_cursor = has_more
            .then(|| items.last().map(|n| n.id.to_string()))
            .flatten();
        Ok((Page::new(items, next_cursor), unread))
    }

    /// Marks `user`'s notifications read (`ids`, and all up to `up_to`);
    /// returns how many are left unread.
    pub async fn read_notifications(
        &self,
        user: &UserId,
        ids: &[i64],
        up_to: Option<i64>,
    ) -> Result<i64, ChatError> {
        if ids.len() > MAX_LIMIT as usize {
            return Err(ChatError::invalid(
                "too_many_ids",
                format!("at most {MAX_LIMIT} ids at once; use upTo for more"),
            ));
        }
        notifications::mark_read(&self.pool, user, ids, up_to).await
    }
}

/// Merges `patch` into `target`: objects key by key, anything else replaced.
fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

fn decode<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, ChatError> {
    serde_json::from_value(job.payload.clone())
        .map_err(|e| ChatError::internal(format!("unreadable {} job: {e}", job.kind)))
}

/// The start of a message, on one line; for a message of files alone, what
/// it carries.
fn preview(body: &str, kind: &str) -> String {
    if body.is_empty() {
        return match kind {
            "image" => "Sent a photo".to_owned(),
            "file" => "Sent a file".to_owned(),
            _ => String::new(),
        };
    }
    let flat: String = body
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= PREVIEW_CHARS {
        flat
    } else {
        let mut cut: String = flat.chars().take(PREVIEW_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::preview;

    #[test]
    fn previews_are_one_short_line() {
        assert_eq!(preview("hello\nthere", "text"), "hello there");
        let long = "x".repeat(500);
        assert_eq!(preview(&long, "text").chars().count(), 140);
        assert!(preview(&long, "text").ends_with('…'));
        assert_eq!(preview("", "image"), "Sent a photo");
        assert_eq!(preview("", "file"), "Sent a file");
        assert_eq!(preview("see this", "file"), "see this");
    }
}
