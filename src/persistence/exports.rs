//! Data exports (`data_exports`, V17): their lifecycle, and the one read that
//! gathers what Parley holds about a person — their profile and settings,
//! their conversations with the messages they can see (as they see them:
//! redacted ones as placeholders), the reports they filed and the blocks they
//! made.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    audit, client,
    messages::{MESSAGE_COLUMNS, message_from_row},
    outbox, timed,
};
use crate::domain::{ChatError, UserId};

/// The job kind of writing an export.
pub const EXPORT_JOB: &str = "user_export";

/// An export as its owner (or an admin) sees it.
#[derive(Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataExport {
    pub id: Uuid,
    pub user_id: String,
    /// `pending`, `running`, `ready`, `failed` or `expired`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Until when it can be downloaded (once ready).
    pub expires_at: Option<DateTime<Utc>>,
    /// Its size in bytes (once ready).
    pub size: Option<i64>,
    /// A short-lived link to the JSON document (once ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
}

const EXPORT_COLUMNS: &str = "id, user_id, status, created_at, finished_at, expires_at, size";

fn export_from_row(r: &Row) -> DataExport {
    DataExport {
        id: r.get(0),
        user_id: r.get(1),
        status: r.get(2),
        created_at: r.get(3),
        finished_at: r.get(4),
        expires_at: r.get(5),
        size: r.get(6),
        download_url: None,
    }
}

/// Starts an export of `user` requested by `requester` (its job queued in
/// the same transaction; an admin's request is audited) — or answers the one
/// already pending or running, so asking twice does the work once. `None`
/// when there is no such user.
pub async fn start(
    pool: &Pool,
    user: &UserId,
    requester: &UserId,
) -> Result<Option<DataExport>, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let lock = tx
        .prepare_cached("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .await?;
    if timed("exports.start", tx.query_opt(&lock, &[&user.as_str()]))
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let under_way = tx
        .prepare_cached(&format!(
            "SELECT {EXPORT_COLUMNS} FROM data_exports
             WHERE user_id = $1 AND status IN ('pending', 'running') LIMIT 1"
        ))
        .await?;
    if let Some(row) = tx.query_opt(&under_way, &[&user.as_str()]).await? {
        return Ok(Some(export_from_row(&row)));
    }
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO data_exports (id, user_id, requested_by) VALUES ($1, $2, $3)
             RETURNING {EXPORT_COLUMNS}"
        ))
        .await?;
    let id = Uuid::now_v7();
    let row = tx
        .query_one(&insert, &[&id, &user.as_str(), &requester.as_str()])
        .await?;
    outbox::add(&tx, EXPORT_JOB, &json!({ "exportId": id })).await?;
    if requester != user {
        audit::record(
            &tx,
            &audit::AuditEntry {
                actor: Some(requester.as_str()),
                action: "user.export_requested",
                target_type: "user",
                target_id: user.as_str(),
                conversation: None,
                details: json!({ "exportId": id }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some(export_from_row(&row)))
}

/// The export `id` of `user`.
pub async fn find(pool: &Pool, user: &UserId, id: Uuid) -> Result<Option<DataExport>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {EXPORT_COLUMNS} FROM data_exports WHERE id = $1 AND user_id = $2"
        ))
        .await?;
    let row = timed("exports.find", db.query_opt(&stmt, &[&id, &user.as_str()])).await?;
    Ok(row.as_ref().map(export_from_row))
}

/// Takes a pending export to write it (`running`); answers whose it is, or
/// `None` when it is not pending (done already by an earlier delivery).
pub async fn take(pool: &Pool, id: Uuid) -> Result<Option<UserId>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "UPDATE data_exports SET status = 'running'
             WHERE id = $1 AND status IN ('pending', 'running') RETURNING user_id",
        )
        .await?;
    let row = timed("exports.take", db.query_opt(&stmt, &[&id])).await?;
    row.map(|r| UserId::parse(r.get(0))).transpose()
}

/// Records how writing an export ended: ready (`size` bytes, until
/// `expires_at`) or failed.
pub async fn finish(
    pool: &Pool,
    id: Uuid,
    outcome: Result<(i64, DateTime<Utc>), &str>,
) -> Result<(), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "UPDATE data_exports SET finished_at = now(),
                 status = CASE WHEN $4::text IS NULL THEN 'ready' ELSE 'failed' END,
                 size = $2, expires_at = $3, error = $4
             WHERE id = $1",
        )
        .await?;
    let (size, expires_at, error) = match outcome {
        Ok((size, expires_at)) => (Some(size), Some(expires_at), None),
        Err(error) => (None, None, Some(error)),
    };
    timed(
        "exports.finish",
        db.execute(&stmt, &[&id, &size, &expires_at, &error]),
    )
    .await?;
    Ok(())
}

/// Marks expired (at most `limit`) the ready exports whose time is up;
/// answers their ids, whose documents are then deleted.
pub async fn expire(pool: &Pool, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "UPDATE data_exports SET status = 'expired' WHERE id IN (
                 SELECT id FROM data_exports WHERE status = 'ready' AND expires_at < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .await?;
    let rows = timed("exports.expire", db.query(&stmt, &[&now, &limit])).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Everything Parley holds about `user`, as one JSON document.
pub async fn gather(pool: &Pool, user: &UserId) -> Result<Value, ChatError> {
    let db = client(pool).await?;
    let profile = db
        .prepare_cached(
            "SELECT jsonb_build_object('id', id, 'displayName', display_name, 'role', role,
                        'email', email, 'verified', verified, 'createdAt', created_at),
                    settings
             FROM users WHERE id = $1",
        )
        .await?;
    let profile = timed("exports.gather", db.query_one(&profile, &[&user.as_str()])).await?;
    let reports = db
        .prepare_cached(
            "SELECT COALESCE(jsonb_agg(jsonb_build_object(
                 'id', id, 'reportedUserId', reported_user_id, 'conversationId', conversation_id,
                 'messageId', message_id, 'category', category, 'description', description,
                 'status', status, 'createdAt', created_at) ORDER BY created_at), '[]'::jsonb)
             FROM chat_reports WHERE reporter_id = $1",
        )
        .await?;
    let reports: Value = timed("exports.gather", db.query_one(&reports, &[&user.as_str()]))
        .await?
        .get(0);
    let blocks = db
        .prepare_cached(
            "SELECT COALESCE(jsonb_agg(jsonb_build_object('userId', blocked_id, 'createdAt', created_at)
                 ORDER BY created_at), '[]'::jsonb)
             FROM user_blocks WHERE blocker_id = $1",
        )
        .await?;
    let blocks: Value = timed("exports.gather", db.query_one(&blocks, &[&user.as_str()]))
        .await?
        .get(0);
    let conversations = conversations_of(&db, user).await?;
    Ok(json!({
        "exportedAt": Utc::now(),
        "profile": profile.get::<_, Value>(0),
        "settings": profile.get::<_, Value>(1),
        "conversations": conversations,
        "reports": reports,
        "blocks": blocks,
    }))
}

/// The user's conversations, each with its participants and every message
/// in it as the user sees it.
async fn conversations_of(db: &impl GenericClient, user: &UserId) -> Result<Vec<Value>, ChatError> {
    let stmt = db
        .prepare_cached(
            "SELECT c.id, jsonb_build_object('id', c.id, 'kind', c.kind,
                        'contextType', NULLIF(c.context_type, ''), 'contextId', NULLIF(c.context_id, ''),
                        'contextTitle', c.context_title, 'createdAt', c.created_at,
                        'requestState', p.request_state, 'muted', p.muted_at IS NOT NULL,
                        'archived', p.archived_at IS NOT NULL,
                        'participants', (SELECT jsonb_agg(jsonb_build_object(
                             'id', u.id, 'displayName', u.display_name, 'role', u.role) ORDER BY u.id)
                             FROM conversation_participants o JOIN users u ON u.id = o.user_id
                             WHERE o.conversation_id = c.id))
             FROM conversation_participants p JOIN conversations c ON c.id = p.conversation_id
             WHERE p.user_id = $1 ORDER BY c.created_at",
        )
        .await?;
    let messages = db
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY seq"
        ))
        .await?;
    let mut out = Vec::new();
    for row in timed("exports.conversations", db.query(&stmt, &[&user.as_str()])).await? {
        let id: Uuid = row.get(0);
        let mut conversation: Value = row.get(1);
        let rows = timed("exports.messages", db.query(&messages, &[&id])).await?;
        let messages: Vec<_> = rows.iter().map(|r| message_from_row(r, 0)).collect();
        conversation["messages"] = serde_json::to_value(messages)
            .map_err(|e| ChatError::internal(format!("export: {e}")))?;
        out.push(conversation);
    }
    Ok(out)
}
