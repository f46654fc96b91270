//! The append-only `audit_log`: who did what to whom, when, in which context.
//! Rows are written inside the transaction of the change they record (so an
//! audited action cannot happen unrecorded), and only ever inserted — the
//! database itself refuses UPDATE, DELETE and TRUNCATE (V3 migration).

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{client, timed};
use crate::domain::ChatError;

/// One audited action, about to be recorded.
pub struct AuditEntry<'a> {
    /// Who did it (`None` for the system itself, e.g. automated signals).
    pub actor: Option<&'a str>,
    /// What: `block.created`, `report.created`, `moderation.suspend`, …
    pub action: &'a str,
    /// On what: `user`, `conversation`, `report`, `message`, `context`.
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub conversation: Option<Uuid>,
    pub details: serde_json::Value,
}

/// Records `entry` using `db`, typically the transaction of the audited change.
pub async fn record(db: &impl GenericClient, entry: &AuditEntry<'_>) -> Result<(), ChatError> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO audit_log (actor_id, action, target_type, target_id, conversation_id, details)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &entry.actor,
            &entry.action,
            &entry.target_type,
            &entry.target_id,
            &entry.conversation,
            &entry.details,
        ],
    )
    .await?;
    Ok(())
}

/// A recorded action as admins see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub conversation_id: Option<Uuid>,
    pub details: serde_json::Value,
}

/// Filters of the audit listing; each is optional.
pub struct AuditFilter<'a> {
    pub actor: Option<&'a str>,
    pub target: Option<&'a str>,
    pub action: Option<&'a str>,
}

/// Newest first, keyset-paged by id (`before` = the last id of the previous page).
pub async fn list(
    pool: &Pool,
    filter: &AuditFilter<'_>,
    before: Option<i64>,
    limit: i64,
) -> Result<(Vec<AuditRow>, bool), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT id, at, actor_id, action, target_type, target_id, conversation_id, details FROM audit_log
             WHERE ($1::text IS NULL OR actor_id = $1) AND ($2::text IS NULL OR target_id = $2)
               AND ($3::text IS NULL OR action = $3) AND ($4::bigint IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5",
        )
        .await?;
    let rows = timed(
        "audit.list",
        db.query(
            &stmt,
            &[
                &filter.actor,
                &filter.target,
                &filter.action,
                &before,
                &(limit + 1),
            ],
        ),
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let items = rows
        .iter()
        .take(limit as usize)
        .map(|r| AuditRow {
            id: r.get(0),
            at: r.get(1),
            actor_id: r.get(2),
            action: r.get(3),
            target_type: r.get(4),
            target_id: r.get(5),
            conversation_id: r.get(6),
            details: r.get(7),
        })
        .collect();
    Ok((items, has_more))
}
