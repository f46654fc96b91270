//! The `attachments` table: one row per file, its status and what is known
//! of its bytes. Reads for a caller join their participation, so an
//! outsider's look-up finds nothing.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{client, timed};
use crate::domain::{ChatError, UserId, attachments::AttachmentStatus};

/// A stored attachment.
#[derive(Clone, Debug)]
pub struct AttachmentRow {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub uploader_id: String,
    pub filename: String,
    pub content_type: String,
    pub declared_size: i64,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub status: AttachmentStatus,
    pub variants: Vec<String>,
    pub blocked_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub uploaded_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "a.id, a.conversation_id, a.uploader_id, a.filename, a.content_type, \
     a.declared_size, a.size, a.sha256, a.status, a.variants, a.blocked_reason, a.created_at, \
     a.uploaded_at";

fn from_row(r: &Row) -> Result<AttachmentRow, ChatError> {
    Ok(AttachmentRow {
        id: r.get(0),
        conversation_id: r.get(1),
        uploader_id: r.get(2),
        filename: r.get(3),
        content_type: r.get(4),
        declared_size: r.get(5),
        size: r.get(6),
        sha256: r.get(7),
        status: AttachmentStatus::parse(r.get(8))?,
        variants: r.get(9),
        blocked_reason: r.get(10),
        created_at: r.get(11),
        uploaded_at: r.get(12),
    })
}

/// Where `user` stands in a conversation, for starting an attachment.
pub struct Standing {
    pub participant: bool,
    /// A message request is open (pending or declined) in it.
    pub request_open: bool,
    /// A block stands between `user` and another participant.
    pub blocked: bool,
}

pub async fn standing(
    pool: &Pool,
    conversation: Uuid,
    user: &UserId,
) -> Result<Standing, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(concat!(
            "SELECT
                EXISTS (SELECT 1 FROM conversation_participants
                        WHERE conversation_id = $1 AND user_id = $2),
                EXISTS (SELECT 1 FROM conversation_participants
                        WHERE conversation_id = $1 AND request_state IN ('pending', 'declined')),
                EXISTS (SELECT 1 FROM conversation_participants o
                        JOIN conversations c ON c.id = o.conversation_id AND c.kind = 'direct'
                        WHERE o.conversation_id = $1 AND o.user_id <> $2
                          AND ",
            blocked_between!("$2", "o.user_id"),
            ")"
        ))
        .await?;
    let row = timed(
        "attachments.standing",
        db.query_one(&stmt, &[&conversation, &user.as_str()]),
    )
    .await?;
    Ok(Standing {
        participant: row.get(0),
        request_open: row.get(1),
        blocked: row.get(2),
    })
}

/// What a new attachment is.
pub struct NewAttachment<'a> {
    pub id: Uuid,
    pub conversation: Uuid,
    pub uploader: &'a UserId,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub declared_size: i64,
}

pub async fn insert(pool: &Pool, new: &NewAttachment<'_>) -> Result<AttachmentRow, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(&format!(
            "WITH a AS (
                 INSERT INTO attachments (id, conversation_id, uploader_id, filename, content_type, declared_size)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING *)
             SELECT {COLUMNS} FROM a"
        ))
        .await?;
    let row = timed(
        "attachments.insert",
        db.query_one(
            &stmt,
            &[
                &new.id,
                &new.conversation,
                &new.uploader.as_str(),
                &new.filename,
                &new.content_type,
                &new.declared_size,
            ],
        ),
    )
    .await?;
    from_row(&row)
}

/// The attachment `id` if `user` takes part in its conversation.
pub async fn for_participant(
    pool: &Pool,
    id: Uuid,
    user: &UserId,
) -> Result<Option<AttachmentRow>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM attachments a
             JOIN conversation_participants p ON p.conversation_id = a.conversation_id AND p.user_id = $2
             WHERE a.id = $1"
        ))
        .await?;
    let row = timed(
        "attachments.for_participant",
        db.query_opt(&stmt, &[&id, &user.as_str()]),
    )
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Those of `ids` that `sender` may send in `conversation`: their own,
/// completed (`pending_scan` or `available`), not sent in a message yet.
pub async fn sendable(
    pool: &Pool,
    conversation: Uuid,
    sender: &UserId,
    ids: &[Uuid],
) -> Result<Vec<AttachmentRow>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM attachments a
             WHERE a.id = ANY($1) AND a.conversation_id = $2 AND a.uploader_id = $3
               AND a.message_id IS NULL AND a.status IN ('pending_scan', 'available')
             ORDER BY a.id"
        ))
        .await?;
    let rows = timed(
        "attachments.sendable",
        db.query(&stmt, &[&ids, &conversation, &sender.as_str()]),
    )
    .await?;
    rows.iter().map(from_row).collect()
}

/// The attachment `id`, whoever asks (jobs, the upload endpoint).
pub async fn find(db: &impl GenericClient, id: Uuid) -> Result<Option<AttachmentRow>, ChatError> {
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM attachments a WHERE a.id = $1"
        ))
        .await?;
    let row = timed("attachments.find", db.query_opt(&stmt, &[&id])).await?;
    row.as_ref().map(from_row).transpose()
}

/// Records that the bytes of `id` arrived (once: false when they had).
pub async fn uploaded(pool: &Pool, id: Uuid) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "UPDATE attachments SET uploaded_at = now()
             WHERE id = $1 AND status = 'awaiting_upload' AND uploaded_at IS NULL",
        )
        .await?;
    Ok(timed("attachments.uploaded", db.execute(&stmt, &[&id])).await? == 1)
}

/// Moves `id` from `from` to `to` (with what is known by then); false when
/// it was not in `from` any more (someone else moved it).
pub struct Transition<'a> {
    pub id: Uuid,
    pub from: AttachmentStatus,
    pub to: AttachmentStatus,
    pub size: Option<i64>,
    pub sha256: Option<&'a str>,
    pub variants: &'a [String],
    pub blocked_reason: Option<&'a str>,
}

pub async fn transition(db: &impl GenericClient, t: &Transition<'_>) -> Result<bool, ChatError> {
    let stmt = db
        .prepare_cached(
            "UPDATE attachments SET status = $3,
                 size = COALESCE($4, size), sha256 = COALESCE($5, sha256),
                 variants = $6, blocked_reason = COALESCE($7, blocked_reason),
                 scanned_at = CASE WHEN $3 IN ('available', 'blocked') THEN now() ELSE scanned_at END,
                 deleted_at = CASE WHEN $3 = 'deleted' THEN now() ELSE deleted_at END
             WHERE id = $1 AND status = $2",
        )
        .await?;
    Ok(timed(
        "attachments.transition",
        db.execute(
            &stmt,
            &[
                &t.id,
                &t.from.as_str(),
                &t.to.as_str(),
                &t.size,
                &t.sha256,
                &t.variants,
                &t.blocked_reason,
            ],
        ),
    )
    .await?
        == 1)
}

/// Marks deleted, in the caller's transaction, what has outlived its time
/// (at most `limit`, rows taken with `SKIP LOCKED`): uploads never completed
/// since `abandoned_before`, images since `images_before`, other files since
/// `files_before` — except in a held conversation (`conversation_is_held`:
/// on legal hold, or with an open report). Answers the ids of those marked.
pub async fn expire(
    db: &impl GenericClient,
    abandoned_before: DateTime<Utc>,
    images_before: DateTime<Utc>,
    files_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, ChatError> {
    let stmt = db
        .prepare_cached(
            "WITH due AS (
                 SELECT id FROM attachments
                 WHERE status <> 'deleted'
                   AND ((status = 'awaiting_upload' AND created_at < $1)
                     OR (content_type LIKE 'image/%' AND created_at < $2)
                     OR created_at < $3)
                   AND NOT conversation_is_held(attachments.conversation_id)
                 ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE attachments a SET status = 'deleted', variants = '{}', deleted_at = now()
             FROM due WHERE a.id = due.id
             RETURNING a.id",
        )
        .await?;
    let rows = timed(
        "attachments.expire",
        db.query(
            &stmt,
            &[&abandoned_before, &images_before, &files_before, &limit],
        ),
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
