//! Notification emails waiting to go out (`email_queue`: one per user,
//! conversation and kind, due once the user has been away long enough and
//! the conversation's last email is old enough) and those sent (`email_log`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::{timed, users};
use crate::domain::{
    ChatError, UserId,
    model::{NotificationPreferences, REDACTED_BODY},
};

/// An email waiting to go out.
#[derive(Clone, Debug)]
pub struct Pending {
    pub user: UserId,
    pub conversation: Uuid,
    /// `messages` (the conversation's unread messages) or `request`.
    pub kind: String,
}

/// What an email about one conversation says, as of now.
pub struct Digest {
    /// The recipient's address (`None`: nothing to send to).
    pub email: Option<String>,
    pub recipient_name: String,
    pub context_title: Option<String>,
    /// The recipient muted or archived the conversation since.
    pub silenced: bool,
    pub preferences: NotificationPreferences,
    /// Unread messages from others across no block, oldest first (at most
    /// [`DIGEST_MESSAGES`]), each with its sender's name.
    pub messages: Vec<(String, String)>,
    /// Unread messages in all (more than `messages` holds, when many).
    pub unread: i64,
}

/// Most messages listed in one email.
pub const DIGEST_MESSAGES: i64 = 10;

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Queues emails — (user, conversation, kind) each — due after `delay`, and
/// not before `batch` after the last one about the same conversation. An
/// email already queued keeps its (earlier) time.
pub async fn schedule(
    db: &impl GenericClient,
    emails: &[(&UserId, Uuid, &str)],
    delay: Duration,
    batch: Duration,
) -> Result<(), ChatError> {
    if emails.is_empty() {
        return Ok(());
    }
    let stmt = db
        .prepare_cached(
            "INSERT INTO email_queue (user_id, conversation_id, kind, due_at)
             SELECT t.user_id, t.conversation_id, t.kind, GREATEST(
                 now() + make_interval(secs => $4),
                 COALESCE((SELECT max(sent_at) FROM email_log l
                           WHERE l.user_id = t.user_id AND l.conversation_id = t.conversation_id
                             AND l.kind = t.kind)
                          + make_interval(secs => $5), now()))
             FROM unnest($1::text[], $2::uuid[], $3::text[]) AS t(user_id, conversation_id, kind)
             ON CONFLICT (user_id, conversation_id, kind) DO NOTHING",
        )
        .await?;
    let users: Vec<&str> = emails.iter().map(|(u, _, _)| u.as_str()).collect();
    let conversations: Vec<Uuid> = emails.iter().map(|(_, c, _)| *c).collect();
    let kinds: Vec<&str> = emails.iter().map(|(_, _, k)| *k).collect();
    timed(
        "email.schedule",
        db.execute(
            &stmt,
            &[
                &users,
                &conversations,
                &kinds,
                &seconds(delay),
                &seconds(batch),
            ],
        ),
    )
    .await?;
    Ok(())
}

/// Takes every email due by `now` (the rules' clock) of up to `limit`
/// users, grouped by user (what falls due together for one person goes out
/// as one email), locking them for the caller's transaction.
pub async fn take_due(
    db: &impl GenericClient,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Pending>, ChatError> {
    let stmt = db
        .prepare_cached(
            "SELECT user_id, conversation_id, kind FROM email_queue
             WHERE due_at <= $1 AND user_id IN (
                 SELECT user_id FROM email_queue WHERE due_at <= $1 ORDER BY due_at LIMIT $2)
             ORDER BY user_id, due_at FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let rows = timed("email.take_due", db.query(&stmt, &[&now, &limit])).await?;
    rows.iter()
        .map(|r| {
            Ok(Pending {
                user: UserId::parse(r.get(0))?,
                conversation: r.get(1),
                kind: r.get(2),
            })
        })
        .collect()
}

/// What an email about `pending` would say now.
pub async fn digest(db: &impl GenericClient, pending: &Pending) -> Result<Digest, ChatError> {
    let head = db
        .prepare_cached(
            "SELECT u.email, u.display_name, c.context_title,
                    p.muted_at IS NOT NULL OR p.archived_at IS NOT NULL, p.last_read_seq,
                    u.settings->'notifications'
             FROM conversation_participants p
             JOIN users u ON u.id = p.user_id JOIN conversations c ON c.id = p.conversation_id
             WHERE p.conversation_id = $2 AND p.user_id = $1",
        )
        .await?;
    let Some(row) = timed(
        "email.digest",
        db.query_opt(&head, &[&pending.user.as_str(), &pending.conversation]),
    )
    .await?
    else {
        return Ok(Digest {
            email: None,
            recipient_name: String::new(),
            context_title: None,
            silenced: true,
            preferences: NotificationPreferences::default(),
            messages: Vec::new(),
            unread: 0,
        });
    };
    let last_read: i64 = row.get(4);
    let unread = db
        .prepare_cached(concat!(
            "SELECT s.display_name, CASE WHEN m.redacted_at IS NULL THEN m.body ELSE $4 END,
                    count(*) OVER ()
             FROM messages m JOIN users s ON s.id = m.sender_id
             JOIN conversations c ON c.id = m.conversation_id
             WHERE m.conversation_id = $2 AND m.seq > $3 AND m.sender_id <> $1 AND m.kind <> 'system'
               AND NOT ",
            hidden_from!("c.kind", "$1", "m.sender_id"),
            " ORDER BY m.seq LIMIT $5"
        ))
        .await?;
    let rows = timed(
        "email.digest",
        db.query(
            &unread,
            &[
                &pending.user.as_str(),
                &pending.conversation,
                &last_read,
                &REDACTED_BODY,
                &DIGEST_MESSAGES,
            ],
        ),
    )
    .await?;
    Ok(Digest {
        email: row.get(0),
        recipient_name: row.get(1),
        context_title: row.get(2),
        silenced: row.get(3),
        preferences: users::preferences_from(row.get(5)),
        unread: rows.first().map_or(0, |r| r.get(2)),
        messages: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
    })
}

/// Emails sent to `user` in the last hour, and when the oldest of them went
/// (one email about several conversations logs a row for each, all with the
/// same `sent_at`: its transaction's time).
pub async fn sent_last_hour(
    db: &impl GenericClient,
    user: &UserId,
) -> Result<(i64, Option<DateTime<Utc>>), ChatError> {
    let stmt = db
        .prepare_cached(
            "SELECT count(DISTINCT sent_at), min(sent_at) FROM email_log
             WHERE user_id = $1 AND sent_at > now() - interval '1 hour'",
        )
        .await?;
    let row = timed(
        "email.sent_last_hour",
        db.query_one(&stmt, &[&user.as_str()]),
    )
    .await?;
    Ok((row.get(0), row.get(1)))
}

/// Records `pending` as sent, and removes it from the queue.
pub async fn sent(db: &impl GenericClient, pending: &Pending) -> Result<(), ChatError> {
    let stmt = db
        .prepare_cached(
            "WITH gone AS (
                 DELETE FROM email_queue WHERE user_id = $1 AND conversation_id = $2 AND kind = $3
             )
             INSERT INTO email_log (user_id, conversation_id, kind) VALUES ($1, $2, $3)",
        )
        .await?;
    timed(
        "email.sent",
        db.execute(
            &stmt,
            &[&pending.user.as_str(), &pending.conversation, &pending.kind],
        ),
    )
    .await?;
    Ok(())
}

/// Removes `pending` unsent (nothing left to say).
pub async fn discard(db: &impl GenericClient, pending: &Pending) -> Result<(), ChatError> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM email_queue WHERE user_id = $1 AND conversation_id = $2 AND kind = $3",
        )
        .await?;
    timed(
        "email.discard",
        db.execute(
            &stmt,
            &[&pending.user.as_str(), &pending.conversation, &pending.kind],
        ),
    )
    .await?;
    Ok(())
}

/// Removes each of `pending` unsent.
pub async fn discard_all(db: &impl GenericClient, pending: &[&Pending]) -> Result<(), ChatError> {
    for one in pending.iter().copied() {
        discard(db, one).await?;
    }
    Ok(())
}

/// Makes each of `pending` due again at `at`.
pub async fn postpone_all(
    db: &impl GenericClient,
    pending: &[&Pending],
    at: DateTime<Utc>,
) -> Result<(), ChatError> {
    for one in pending.iter().copied() {
        postpone(db, one, at).await?;
    }
    Ok(())
}

/// Makes `pending` due again at `at`.
pub async fn postpone(
    db: &impl GenericClient,
    pending: &Pending,
    at: DateTime<Utc>,
) -> Result<(), ChatError> {
    let stmt = db
        .prepare_cached(
            "UPDATE email_queue SET due_at = $4
             WHERE user_id = $1 AND conversation_id = $2 AND kind = $3",
        )
        .await?;
    timed(
        "email.postpone",
        db.execute(
            &stmt,
            &[
                &pending.user.as_str(),
                &pending.conversation,
                &pending.kind,
                &at,
            ],
        ),
    )
    .await?;
    Ok(())
}
