//! In-app notifications: one row per notification, except `new_message`,
//! which stands for every unread message of its conversation (collapsed: its
//! count and preview move on while it is unread). Also the one query that
//! tells who should hear of a new message, and how.

use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{client, timed, users};
use crate::domain::{
    ChatError, UserId,
    model::{Notification, NotificationPreferences},
};

const COLUMNS: &str =
    "id, kind, conversation_id, actor_id, preview, message_count, created_at, updated_at, read_at";

fn from_row(r: &Row) -> Notification {
    Notification {
        id: r.get(0),
        kind: r.get(1),
        conversation_id: r.get(2),
        actor_id: r.get(3),
        preview: r.get(4),
        message_count: r.get(5),
        created_at: r.get(6),
        updated_at: r.get(7),
        read_at: r.get(8),
    }
}

/// A recipient of a new message, and what stands between them and a notification.
pub struct Recipient {
    pub user_id: UserId,
    pub muted: bool,
    pub archived: bool,
    /// A block stands between them and the sender, in either direction.
    pub blocked: bool,
    pub preferences: NotificationPreferences,
}

/// The other participants of `conversation` than `sender`, and the message's body.
pub async fn audience(
    db: &impl GenericClient,
    conversation: Uuid,
    message: Uuid,
    sender: &str,
) -> Result<(Vec<Recipient>, String), ChatError> {
    let stmt = db
        .prepare_cached(concat!(
            "SELECT p.user_id, p.muted_at IS NOT NULL, p.archived_at IS NOT NULL, ",
            blocked_between!("p.user_id", "$3"),
            ", (SELECT body FROM messages WHERE id = $2), u.settings->'notifications'
             FROM conversation_participants p JOIN users u ON u.id = p.user_id
             WHERE p.conversation_id = $1 AND p.user_id <> $3"
        ))
        .await?;
    let rows = timed(
        "notifications.audience",
        db.query(&stmt, &[&conversation, &message, &sender]),
    )
    .await?;
    let body = rows
        .first()
        .and_then(|r| r.get::<_, Option<String>>(4))
        .unwrap_or_default();
    let recipients = rows
        .iter()
        .map(|r| {
            Ok(Recipient {
                user_id: UserId::parse(r.get(0))?,
                muted: r.get(1),
                archived: r.get(2),
                blocked: r.get(3),
                preferences: users::preferences_from(r.get(5)),
            })
        })
        .collect::<Result<_, ChatError>>()?;
    Ok((recipients, body))
}

/// Records a notification; a `new_message` one joins the user's unread one
/// for the same conversation if there is one.
pub async fn record(
    db: &impl GenericClient,
    user: &UserId,
    kind: &str,
    conversation: Option<Uuid>,
    actor: Option<&str>,
    preview: &str,
) -> Result<Notification, ChatError> {
    let stmt = db
        .prepare_cached(&format!(
            "INSERT INTO notifications (user_id, kind, conversation_id, actor_id, preview)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, conversation_id) WHERE kind = 'new_message' AND read_at IS NULL
             DO UPDATE SET message_count = notifications.message_count + 1,
                 actor_id = EXCLUDED.actor_id, preview = EXCLUDED.preview, updated_at = now()
             RETURNING {COLUMNS}"
        ))
        .await?;
    let row = timed(
        "notifications.record",
        db.query_one(
            &stmt,
            &[&user.as_str(), &kind, &conversation, &actor, &preview],
        ),
    )
    .await?;
    Ok(from_row(&row))
}

/// A page of `user`'s notifications, newest first, below `before` (an id).
pub async fn page(
    pool: &Pool,
    user: &UserId,
    before: Option<i64>,
    limit: i64,
) -> Result<(Vec<Notification>, bool), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND id < $2
             ORDER BY id DESC LIMIT $3"
        ))
        .await?;
    let rows = timed(
        "notifications.page",
        db.query(
            &stmt,
            &[&user.as_str(), &before.unwrap_or(i64::MAX), &(limit + 1)],
        ),
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    Ok((
        rows.iter().take(limit as usize).map(from_row).collect(),
        has_more,
    ))
}

/// Marks `user`'s notifications read: those in `ids`, and all up to `up_to`.
/// Returns how many are left unread.
pub async fn mark_read(
    pool: &Pool,
    user: &UserId,
    ids: &[i64],
    up_to: Option<i64>,
) -> Result<i64, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "WITH marked AS (
                 UPDATE notifications SET read_at = now()
                 WHERE user_id = $1 AND read_at IS NULL AND (id = ANY($2) OR id <= $3)
                 RETURNING id
             )
             SELECT count(*) FROM notifications
             WHERE user_id = $1 AND read_at IS NULL AND id NOT IN (SELECT id FROM marked)",
        )
        .await?;
    let row = timed(
        "notifications.mark_read",
        db.query_one(&stmt, &[&user.as_str(), &ids, &up_to.unwrap_or(0)]),
    )
    .await?;
    Ok(row.get(0))
}

/// How many of `user`'s notifications are unread.
pub async fn unread(pool: &Pool, user: &UserId) -> Result<i64, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached("SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
        .await?;
    let row = timed(
        "notifications.unread",
        db.query_one(&stmt, &[&user.as_str()]),
    )
    .await?;
    Ok(row.get(0))
}

/// Marks read the `new_message` notification of a conversation `user` just
/// read (the messages it stood for are read).
pub async fn conversation_read(
    pool: &Pool,
    user: &UserId,
    conversation: Uuid,
) -> Result<(), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "UPDATE notifications SET read_at = now()
             WHERE user_id = $1 AND conversation_id = $2 AND kind = 'new_message' AND read_at IS NULL",
        )
        .await?;
    timed(
        "notifications.conversation_read",
        db.execute(&stmt, &[&user.as_str(), &conversation]),
    )
    .await?;
    Ok(())
}
