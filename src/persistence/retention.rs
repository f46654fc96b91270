//! What the retention jobs and erasure touch, in small batches that each
//! hold their locks briefly: conversations with messages past retention
//! (each remembers how far retention got: `retained_through_seq`), erased
//! users' messages, audit rows past retention, idle conversations. None of it
//! touches a held conversation (`conversation_is_held`, V16), except
//! auto-archive, which hides nothing.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use uuid::Uuid;

use super::{audit, client, timed};
use crate::domain::{ChatError, UserId};

/// Conversations, not held, whose oldest message not yet purged by
/// retention was sent before `cutoff` (at most `limit`), with how far
/// retention got in each.
pub async fn conversations_past(
    pool: &Pool,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, i64)>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT c.id, c.retained_through_seq FROM conversations c
             WHERE c.retained_through_seq < c.last_seq
               AND EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id
                           AND m.seq = c.retained_through_seq + 1 AND m.created_at < $1)
               AND NOT conversation_is_held(c.id)
             LIMIT $2",
        )
        .await?;
    let rows = timed(
        "retention.conversations_past",
        db.query(&stmt, &[&cutoff, &limit]),
    )
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The next messages of `conversation` after `seq`, in order, as long as
/// each was sent before `cutoff` (at most `limit`): ids and the last `seq`.
pub async fn next_past(
    db: &impl GenericClient,
    conversation: Uuid,
    seq: i64,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<(Vec<Uuid>, i64), ChatError> {
    let stmt = db
        .prepare_cached(
            "WITH batch AS (
                 SELECT id, seq, created_at FROM messages
                 WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $4
             )
             SELECT id, seq FROM batch
             WHERE seq < COALESCE((SELECT min(seq) FROM batch WHERE created_at >= $3), 9223372036854775807)
             ORDER BY seq",
        )
        .await?;
    let rows = timed(
        "retention.next_past",
        db.query(&stmt, &[&conversation, &seq, &cutoff, &limit]),
    )
    .await?;
    let last = rows.last().map_or(seq, |r| r.get(1));
    Ok((rows.iter().map(|r| r.get(0)).collect(), last))
}

/// Records that every message of `conversation` up to `seq` has been purged.
pub async fn retained_through(
    db: &impl GenericClient,
    conversation: Uuid,
    seq: i64,
) -> Result<(), ChatError> {
    let stmt = db
        .prepare_cached(
            "UPDATE conversations SET retained_through_seq = GREATEST(retained_through_seq, $2)
             WHERE id = $1",
        )
        .await?;
    timed(
        "retention.retained_through",
        db.execute(&stmt, &[&conversation, &seq]),
    )
    .await?;
    Ok(())
}

/// Messages of erased users (or of `user` only) whose bodies are still
/// there, outside held conversations (at most `limit`).
pub async fn erased_authors_messages(
    pool: &Pool,
    user: Option<&UserId>,
    limit: i64,
) -> Result<Vec<Uuid>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT m.id FROM users u JOIN messages m ON m.sender_id = u.id
             WHERE u.erased_at IS NOT NULL AND ($1::text IS NULL OR u.id = $1)
               AND m.purged_at IS NULL AND NOT conversation_is_held(m.conversation_id)
             LIMIT $2",
        )
        .await?;
    let user = user.map(UserId::as_str);
    let rows = timed(
        "retention.erased_authors_messages",
        db.query(&stmt, &[&user, &limit]),
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Deletes up to `limit` audit rows recorded before `cutoff`, except those
/// of held conversations, through the one path the append-only trigger
/// allows (V16); answers how many went.
pub async fn purge_audit(pool: &Pool, cutoff: DateTime<Utc>, limit: i64) -> Result<u64, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let allow = tx
        .prepare_cached("SELECT set_config('parley.audit_purge_before', $1, true)")
        .await?;
    tx.execute(&allow, &[&cutoff.to_rfc3339()]).await?;
    let stmt = tx
        .prepare_cached(
            "DELETE FROM audit_log WHERE id IN (
                 SELECT id FROM audit_log
                 WHERE at < $1 AND (conversation_id IS NULL OR NOT conversation_is_held(conversation_id))
                 ORDER BY id LIMIT $2)",
        )
        .await?;
    let deleted = timed(
        "retention.purge_audit",
        tx.execute(&stmt, &[&cutoff, &limit]),
    )
    .await?;
    tx.commit().await?;
    Ok(deleted)
}

/// Records, in the audit log itself, that audit retention removed `rows`
/// rows recorded before `cutoff`.
pub async fn record_audit_purge(
    pool: &Pool,
    cutoff: DateTime<Utc>,
    rows: u64,
) -> Result<(), ChatError> {
    let db = client(pool).await?;
    audit::record(
        &db,
        &audit::AuditEntry {
            actor: None,
            action: "audit.purged",
            target_type: "audit_log",
            target_id: "audit_log",
            conversation: None,
            details: serde_json::json!({ "before": cutoff, "rows": rows }),
        },
    )
    .await
}

/// A participant whose conversation was just archived for being idle.
pub struct AutoArchived {
    pub conversation: Uuid,
    pub user: UserId,
    pub unread_count: i64,
    pub last_read_seq: i64,
}

/// Archives (reason `auto`) up to `limit` participants' conversations whose
/// last activity was before `idle_before` and which they have not archived.
pub async fn auto_archive(
    pool: &Pool,
    idle_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<AutoArchived>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "WITH idle AS (
                 SELECT conversation_id, user_id FROM conversation_participants
                 WHERE archived_at IS NULL AND activity_at < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED
             )
             UPDATE conversation_participants p
             SET archived_at = now(), archive_reason = 'auto',
                 changed_tx = pg_current_xact_id()::text::bigint
             FROM idle WHERE p.conversation_id = idle.conversation_id AND p.user_id = idle.user_id
             RETURNING p.conversation_id, p.user_id, p.unread_count, p.last_read_seq",
        )
        .await?;
    let rows = timed(
        "retention.auto_archive",
        db.query(&stmt, &[&idle_before, &limit]),
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AutoArchived {
                conversation: r.get(0),
                user: UserId::parse(r.get(1))?,
                unread_count: i64::from(r.get::<_, i32>(2)),
                last_read_seq: r.get(3),
            })
        })
        .collect()
}
