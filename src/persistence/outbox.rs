//! The transactional outbox: follow-up jobs written with the action that
//! needs them (see `messages::insert_batch`, `reports::act`), taken by a
//! relay or an in-process runner with `FOR UPDATE SKIP LOCKED` (so several
//! nodes never take the same row), and the record of jobs already done (a
//! job delivered twice runs once).

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{client, timed};
use crate::domain::ChatError;

/// One follow-up job.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_id: Uuid,
    pub kind: String,
    pub payload: Value,
    /// Failed runs so far.
    #[serde(default)]
    pub attempts: i32,
    /// When the action that needs it was stored (for time-to-notification).
    pub created_at: DateTime<Utc>,
}

/// Adds a job in the caller's transaction.
pub async fn add(db: &impl GenericClient, kind: &str, payload: &Value) -> Result<(), ChatError> {
    let stmt = db
        .prepare_cached("INSERT INTO outbox (job_id, kind, payload) VALUES ($1, $2, $3)")
        .await?;
    timed(
        "outbox.add",
        db.execute(&stmt, &[&Uuid::now_v7(), &kind, payload]),
    )
    .await?;
    Ok(())
}

/// Takes up to `limit` jobs that are due, oldest first, locking their rows
/// for the caller's transaction (others skip them).
pub async fn take_due(db: &impl GenericClient, limit: i64) -> Result<Vec<(i64, Job)>, ChatError> {
    let stmt = db
        .prepare_cached(
            "SELECT id, job_id, kind, payload, attempts, created_at FROM outbox
             WHERE available_at <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let rows = timed("outbox.take_due", db.query(&stmt, &[&limit])).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Job {
                    job_id: r.get(1),
                    kind: r.get(2),
                    payload: r.get(3),
                    attempts: r.get(4),
                    created_at: r.get(5),
                },
            )
        })
        .collect())
}

/// Removes taken rows (handed on, or done).
pub async fn remove(db: &impl GenericClient, ids: &[i64]) -> Result<(), ChatError> {
    let stmt = db
        .prepare_cached("DELETE FROM outbox WHERE id = ANY($1)")
        .await?;
    timed("outbox.remove", db.execute(&stmt, &[&ids])).await?;
    Ok(())
}

/// Puts a failed row back, due again after `retry_in_ms`.
pub async fn postpone(
    db: &impl GenericClient,
    id: i64,
    retry_in_ms: i64,
    error: &str,
) -> Result<(), ChatError> {
    let stmt = db
        .prepare_cached(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $3,
                 available_at = now() + make_interval(secs => $2::bigint / 1000.0)
             WHERE id = $1",
        )
        .await?;
    timed(
        "outbox.postpone",
        db.execute(&stmt, &[&id, &retry_in_ms, &error]),
    )
    .await?;
    Ok(())
}

/// Records a job that failed `attempts` times (and, when it came from the
/// outbox, removes its row).
pub async fn bury(
    db: &impl GenericClient,
    job: &Job,
    attempts: i32,
    error: &str,
) -> Result<(), ChatError> {
    let stmt = db
        .prepare_cached(
            "WITH gone AS (DELETE FROM outbox WHERE job_id = $1)
             INSERT INTO dead_jobs (job_id, kind, payload, attempts, last_error)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id) DO NOTHING",
        )
        .await?;
    timed(
        "outbox.bury",
        db.execute(
            &stmt,
            &[&job.job_id, &job.kind, &job.payload, &attempts, &error],
        ),
    )
    .await?;
    Ok(())
}

/// A job that kept failing, as admins see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadJob {
    #[serde(skip)]
    pub id: i64,
    pub job_id: Uuid,
    pub kind: String,
    pub payload: Value,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub died_at: DateTime<Utc>,
}

/// Dead jobs, newest first, keyset-paged by id (`before` = the last id of
/// the previous page); whether there are more.
pub async fn dead(
    pool: &Pool,
    before: Option<i64>,
    limit: i64,
) -> Result<(Vec<DeadJob>, bool), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT id, job_id, kind, payload, attempts, last_error, died_at FROM dead_jobs
             WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .await?;
    let rows = timed("outbox.dead", db.query(&stmt, &[&before, &(limit + 1)])).await?;
    let has_more = rows.len() as i64 > limit;
    let items = rows
        .iter()
        .take(limit as usize)
        .map(|r| DeadJob {
            id: r.get(0),
            job_id: r.get(1),
            kind: r.get(2),
            payload: r.get(3),
            attempts: r.get(4),
            last_error: r.get(5),
            died_at: r.get(6),
        })
        .collect();
    Ok((items, has_more))
}

/// Moves a dead job back into the outbox, to run again from its first
/// attempt, in the caller's transaction; its kind, or `None` when there is
/// no such dead job.
pub async fn revive(db: &impl GenericClient, job_id: Uuid) -> Result<Option<String>, ChatError> {
    let stmt = db
        .prepare_cached(
            "WITH revived AS (DELETE FROM dead_jobs WHERE job_id = $1 RETURNING job_id, kind, payload)
             INSERT INTO outbox (job_id, kind, payload) SELECT job_id, kind, payload FROM revived
             ON CONFLICT (job_id) DO NOTHING RETURNING kind",
        )
        .await?;
    let row = timed("outbox.revive", db.query_opt(&stmt, &[&job_id])).await?;
    Ok(row.map(|r| r.get(0)))
}

/// Moves dead jobs of `kind` that died before `died_before` back into the
/// outbox (at most `limit`), in the caller's transaction; how many.
pub async fn revive_kind(
    db: &impl GenericClient,
    kind: &str,
    died_before: DateTime<Utc>,
    limit: i64,
) -> Result<u64, ChatError> {
    let stmt = db
        .prepare_cached(
            "WITH revived AS (
                 DELETE FROM dead_jobs WHERE job_id IN (
                     SELECT job_id FROM dead_jobs WHERE kind = $1 AND died_at < $2
                     ORDER BY died_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING job_id, kind, payload)
             INSERT INTO outbox (job_id, kind, payload) SELECT job_id, kind, payload FROM revived
             ON CONFLICT (job_id) DO NOTHING",
        )
        .await?;
    Ok(timed(
        "outbox.revive_kind",
        db.execute(&stmt, &[&kind, &died_before, &limit]),
    )
    .await?)
}

/// Marks `jobs` done in the caller's transaction; returns those that were
/// not done already (a repeated delivery is skipped).
pub async fn mark_done(db: &impl GenericClient, jobs: &[Uuid]) -> Result<Vec<Uuid>, ChatError> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO jobs_done (job_id) SELECT unnest($1::uuid[])
             ON CONFLICT DO NOTHING RETURNING job_id",
        )
        .await?;
    let rows = timed("outbox.mark_done", db.query(&stmt, &[&jobs])).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The backlog: rows waiting, and the age of the oldest in seconds.
pub async fn backlog(pool: &Pool) -> Result<(i64, f64), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM outbox",
        )
        .await?;
    let row = timed("outbox.backlog", db.query_one(&stmt, &[])).await?;
    Ok((row.get(0), row.get(1)))
}
