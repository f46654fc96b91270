//! `user_blocks`: global blocks between two users, audited.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::json;
use uuid::Uuid;

use super::{
    audit::{self, AuditEntry},
    client, timed,
};
use crate::domain::{ChatError, UserId, model::UserSummary};

/// Blocks `blocked` for `blocker`; false when it already was.
pub async fn block(pool: &Pool, blocker: &UserId, blocked: &UserId) -> Result<bool, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO user_blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .await?;
    let created = timed(
        "blocks.block",
        tx.execute(&stmt, &[&blocker.as_str(), &blocked.as_str()]),
    )
    .await?
        == 1;
    if created {
        audit::record(&tx, &user_entry(blocker, "block.created", blocked)).await?;
    }
    tx.commit().await?;
    Ok(created)
}

/// Lifts a block; false when there was none.
pub async fn unblock(pool: &Pool, blocker: &UserId, blocked: &UserId) -> Result<bool, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let stmt = tx
        .prepare_cached("DELETE FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2")
        .await?;
    let removed = timed(
        "blocks.unblock",
        tx.execute(&stmt, &[&blocker.as_str(), &blocked.as_str()]),
    )
    .await?
        == 1;
    if removed {
        audit::record(&tx, &user_entry(blocker, "block.removed", blocked)).await?;
    }
    tx.commit().await?;
    Ok(removed)
}

fn user_entry<'a>(actor: &'a UserId, action: &'a str, target: &'a UserId) -> AuditEntry<'a> {
    AuditEntry {
        actor: Some(actor.as_str()),
        action,
        target_type: "user",
        target_id: target.as_str(),
        conversation: None,
        details: json!({}),
    }
}

/// The users `blocker` blocks, newest first.
pub async fn list(
    pool: &Pool,
    blocker: &UserId,
) -> Result<Vec<(UserSummary, DateTime<Utc>)>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT u.id, u.display_name, u.role, u.verified, b.created_at FROM user_blocks b
             JOIN users u ON u.id = b.blocked_id WHERE b.blocker_id = $1 ORDER BY b.created_at DESC",
        )
        .await?;
    let rows = timed("blocks.list", db.query(&stmt, &[&blocker.as_str()])).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                UserSummary {
                    id: r.get(0),
                    name: r.get(1),
                    role: r.get(2),
                    verified: r.get(3),
                },
                r.get(4),
            )
        })
        .collect())
}

/// Whether either of the two users blocks the other.
pub async fn between(pool: &Pool, a: &UserId, b: &UserId) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(concat!("SELECT ", blocked_between!("$1", "$2")))
        .await?;
    Ok(timed(
        "blocks.between",
        db.query_one(&stmt, &[&a.as_str(), &b.as_str()]),
    )
    .await?
    .get(0))
}

/// The conversations the two users share (the actors to tell about a block).
pub async fn shared_conversations(
    pool: &Pool,
    a: &UserId,
    b: &UserId,
) -> Result<Vec<Uuid>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT p.conversation_id FROM conversation_participants p
             JOIN conversation_participants q ON q.conversation_id = p.conversation_id
             WHERE p.user_id = $1 AND q.user_id = $2",
        )
        .await?;
    let rows = timed(
        "blocks.shared_conversations",
        db.query(&stmt, &[&a.as_str(), &b.as_str()]),
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
