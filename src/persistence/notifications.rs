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

/// Someone who should hear of a new message: no mute, no archive, no block
/// with its sender. `job` is the message's index in the batch.
pub struct Recipient {
    pub job: usize,
    pub user_id: UserId,
    pub preferences: NotificationPreferences,
    pub body: String,
    /// The message's kind (`text`, `image`, `file`).
    pub kind: String,
}

/// A new message, as the audience query needs it.
pub struct NewMessageRef<'a> {
    pub conversation: Uuid,
    pub message: Uuid,
    pub sender: &'a str,
}

/// Everyone who should hear of each of `messages` (the other participants,
/// less those who muted or archived the conversation or from whom a block
/// hides the sender: either side in a direct conversation, the blocker in a
/// thread), in the order of `messages`.
pub async fn audience(
    db: &impl GenericClient,
    messages: &[NewMessageRef<'_>],
) -> Result<Vec<Recipient>, ChatError> {
    let stmt = db
        .prepare_cached(concat!(
            "SELECT i.ord, p.user_id, u.settings->'notifications', m.body, m.kind
             FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY
                  AS i(conversation_id, message_id, sender_id, ord)
             JOIN conversation_participants p
                  ON p.conversation_id = i.conversation_id AND p.user_id <> i.sender_id
             JOIN users u ON u.id = p.user_id
             JOIN messages m ON m.id = i.message_id
             JOIN conversations c ON c.id = i.conversation_id
             WHERE p.muted_at IS NULL AND p.archived_at IS NULL AND NOT ",
            hidden_from!("c.kind", "p.user_id", "i.sender_id"),
            " ORDER BY i.ord"
        ))
        .await?;
    let conversations: Vec<Uuid> = messages.iter().map(|m| m.conversation).collect();
    let ids: Vec<Uuid> = messages.iter().map(|m| m.message).collect();
    let senders: Vec<&str> = messages.iter().map(|m| m.sender).collect();
    let rows = timed(
        "notifications.audience",
        db.query(&stmt, &[&conversations, &ids, &senders]),
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Recipient {
                job: usize::try_from(r.get::<_, i64>(0) - 1).unwrap_or(0),
                user_id: UserId::parse(r.get(1))?,
                preferences: users::preferences_from(r.get(2)),
                body: r.get(3),
                kind: r.get(4),
            })
        })
        .collect()
}

/// A notification to record.
pub struct NewNotification<'a> {
    pub user: &'a UserId,
    pub kind: &'a str,
    pub conversation: Option<Uuid>,
    pub actor: Option<&'a str>,
    pub preview: &'a str,
    /// Messages it stands for (a batch may hold several for one conversation).
    pub count: i32,
    /// The `seq` of the newest of them (0 when it stands for no message).
    pub seq: i64,
}

/// Records notifications in one statement; a `new_message` one joins the
/// user's unread one for the same conversation if there is one, whose
/// preview stays that of the newest message whatever order jobs run in (the
/// batch must hold at most one `new_message` per user and conversation).
/// Returns each with the user it is for.
pub async fn record_all(
    db: &impl GenericClient,
    batch: &[NewNotification<'_>],
) -> Result<Vec<(UserId, Notification)>, ChatError> {
    let stmt = db
        .prepare_cached(&format!(
            "INSERT INTO notifications (user_id, kind, conversation_id, actor_id, preview, message_count, last_seq)
             SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::int[], $7::bigint[])
             ON CONFLICT (user_id, conversation_id) WHERE kind = 'new_message' AND read_at IS NULL
             DO UPDATE SET message_count = notifications.message_count + EXCLUDED.message_count,
                 actor_id = CASE WHEN EXCLUDED.last_seq > notifications.last_seq
                                 THEN EXCLUDED.actor_id ELSE notifications.actor_id END,
                 preview = CASE WHEN EXCLUDED.last_seq > notifications.last_seq
                                THEN EXCLUDED.preview ELSE notifications.preview END,
                 last_seq = GREATEST(notifications.last_seq, EXCLUDED.last_seq),
                 updated_at = now()
             RETURNING {COLUMNS}, user_id"
        ))
        .await?;
    let users: Vec<&str> = batch.iter().map(|n| n.user.as_str()).collect();
    let kinds: Vec<&str> = batch.iter().map(|n| n.kind).collect();
    let conversations: Vec<Option<Uuid>> = batch.iter().map(|n| n.conversation).collect();
    let actors: Vec<Option<&str>> = batch.iter().map(|n| n.actor).collect();
    let previews: Vec<&str> = batch.iter().map(|n| n.preview).collect();
    let counts: Vec<i32> = batch.iter().map(|n| n.count).collect();
    let seqs: Vec<i64> = batch.iter().map(|n| n.seq).collect();
    let rows = timed(
        "notifications.record_all",
        db.query(
            &stmt,
            &[
                &users,
                &kinds,
                &conversations,
                &actors,
                &previews,
                &counts,
                &seqs,
            ],
        ),
    )
    .await?;
    rows.iter()
        .map(|r| Ok((UserId::parse(r.get(9))?, from_row(r))))
        .collect()
}

/// Records one notification (see [`record_all`]).
pub async fn record(
    db: &impl GenericClient,
    notification: NewNotification<'_>,
) -> Result<Notification, ChatError> {
    record_all(db, std::slice::from_ref(&notification))
        .await?
        .pop()
        .map(|(_, n)| n)
        .ok_or_else(|| ChatError::internal("recording a notification returned nothing"))
}

/// A page of `user`'s notifications, newest first, below `before` (an id),
/// whether more follow, and how many of all of theirs are unread — read in
/// one snapshot, so the count and the page agree.
pub async fn page(
    pool: &Pool,
    user: &UserId,
    before: Option<i64>,
    limit: i64,
) -> Result<(Vec<Notification>, bool, i64), ChatError> {
    let mut db = client(pool).await?;
    let tx = super::snapshot(&mut db).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND id < $2
             ORDER BY id DESC LIMIT $3"
        ))
        .await?;
    let rows = timed(
        "notifications.page",
        tx.query(
            &stmt,
            &[&user.as_str(), &before.unwrap_or(i64::MAX), &(limit + 1)],
        ),
    )
    .await?;
    let count = tx
        .prepare_cached("SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
        .await?;
    let unread: i64 = timed(
        "notifications.unread",
        tx.query_one(&count, &[&user.as_str()]),
    )
    .await?
    .get(0);
    tx.commit().await?;
    let has_more = rows.len() as i64 > limit;
    Ok((
        rows.iter().take(limit as usize).map(from_row).collect(),
        has_more,
        unread,
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
