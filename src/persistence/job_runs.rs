//! The daily jobs' schedule (`scheduled_jobs`: when each runs next, and the
//! lease of whoever runs it now) and their history (`job_runs`).
//!
//! A run starts by taking its job's lease in Postgres, so one job runs once
//! across a cluster, and with nothing more than Postgres on a single node.
//! A runner renews the lease as it goes; one that crashed lets it lapse, and
//! the next run marks the crashed run `interrupted` and carries on from
//! where the data says it stopped (every job works in small, idempotent
//! batches).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use utoipa::ToSchema;

use super::{client, timed};
use crate::domain::ChatError;

/// Why a run started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Its daily time came.
    Schedule,
    /// An admin asked (`POST /admin/jobs/:name/run`).
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
        }
    }
}

/// Records that `job` runs next at `next_run_at`, unless it is already due
/// sooner (a run missed while no node was up stays due).
pub async fn schedule(pool: &Pool, job: &str, next_run_at: DateTime<Utc>) -> Result<(), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "INSERT INTO scheduled_jobs (name, next_run_at) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE
                 SET next_run_at = LEAST(scheduled_jobs.next_run_at, EXCLUDED.next_run_at)",
        )
        .await?;
    timed(
        "job_runs.schedule",
        db.execute(&stmt, &[&job, &next_run_at]),
    )
    .await?;
    Ok(())
}

/// Takes `job`'s lease for `runner` and records a new run: only when nobody
/// holds the lease and, for a scheduled run, the job is due. A run whose
/// runner let the lease lapse is marked `interrupted`. Answers the new run's
/// id, or `None` when the job is running elsewhere (or not due).
pub async fn claim(
    pool: &Pool,
    job: &str,
    runner: &str,
    lease: Duration,
    trigger: Trigger,
    requested_by: Option<&str>,
) -> Result<Option<i64>, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let take = tx
        .prepare_cached(
            "UPDATE scheduled_jobs SET lease_until = now() + make_interval(secs => $3), leased_by = $2
             WHERE name = $1 AND (lease_until IS NULL OR lease_until < now())
               AND ($4 OR next_run_at <= now())
             RETURNING name",
        )
        .await?;
    let due_only = trigger == Trigger::Schedule;
    let taken = timed(
        "job_runs.claim",
        tx.query_opt(&take, &[&job, &runner, &lease.as_secs_f64(), &!due_only]),
    )
    .await?;
    if taken.is_none() {
        return Ok(None);
    }
    let interrupted = tx
        .prepare_cached(
            "UPDATE job_runs SET status = 'interrupted', finished_at = now(),
                 error = 'the runner stopped before finishing; the next run carried on'
             WHERE job = $1 AND status = 'running'",
        )
        .await?;
    tx.execute(&interrupted, &[&job]).await?;
    let start = tx
        .prepare_cached(
            "INSERT INTO job_runs (job, trigger, requested_by) VALUES ($1, $2, $3) RETURNING id",
        )
        .await?;
    let run = tx
        .query_one(&start, &[&job, &trigger.as_str(), &requested_by])
        .await?;
    tx.commit().await?;
    Ok(Some(run.get(0)))
}

/// Extends `runner`'s lease of `job` and adds `rows` to the run's count;
/// `false` when the lease was lost (the run must stop).
pub async fn progress(
    pool: &Pool,
    job: &str,
    run: i64,
    runner: &str,
    lease: Duration,
    rows: u64,
) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "WITH lease AS (
                 UPDATE scheduled_jobs SET lease_until = now() + make_interval(secs => $4)
                 WHERE name = $1 AND leased_by = $3 RETURNING name
             )
             UPDATE job_runs SET rows_touched = rows_touched + $5
             WHERE id = $2 AND EXISTS (SELECT 1 FROM lease)",
        )
        .await?;
    let rows = i64::try_from(rows).unwrap_or(i64::MAX);
    let updated = timed(
        "job_runs.progress",
        db.execute(&stmt, &[&job, &run, &runner, &lease.as_secs_f64(), &rows]),
    )
    .await?;
    Ok(updated == 1)
}

/// Ends a run (`error`: why it failed) and gives the lease back; a
/// scheduled run also moves the job's next run to `next_run_at`.
pub async fn finish(
    pool: &Pool,
    job: &str,
    run: i64,
    runner: &str,
    error: Option<&str>,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<(), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "WITH lease AS (
                 UPDATE scheduled_jobs SET lease_until = NULL, leased_by = NULL,
                     next_run_at = COALESCE($5, next_run_at)
                 WHERE name = $1 AND leased_by = $3
             )
             UPDATE job_runs SET finished_at = now(), error = $4,
                 status = CASE WHEN $4::text IS NULL THEN 'succeeded' ELSE 'failed' END
             WHERE id = $2 AND status = 'running'",
        )
        .await?;
    timed(
        "job_runs.finish",
        db.execute(&stmt, &[&job, &run, &runner, &error, &next_run_at]),
    )
    .await?;
    Ok(())
}

/// One run of a job, as admins see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    pub id: i64,
    /// `schedule` or `manual`.
    pub trigger: String,
    pub requested_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `succeeded`, `failed` or `interrupted`.
    pub status: String,
    pub rows_touched: i64,
    pub error: Option<String>,
}

/// A job's schedule and its latest runs.
pub struct JobState {
    pub name: String,
    pub next_run_at: Option<DateTime<Utc>>,
    pub running: bool,
    pub runs: Vec<JobRun>,
}

/// The state of each of `jobs`, with its latest `recent` runs, newest first.
pub async fn list(pool: &Pool, jobs: &[&str], recent: i64) -> Result<Vec<JobState>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT j.name, s.next_run_at, COALESCE(s.lease_until > now(), false)
             FROM unnest($1::text[]) WITH ORDINALITY AS j(name, position)
             LEFT JOIN scheduled_jobs s ON s.name = j.name ORDER BY j.position",
        )
        .await?;
    let runs = db
        .prepare_cached(
            "SELECT id, trigger, requested_by, started_at, finished_at, status, rows_touched, error
             FROM job_runs WHERE job = $1 ORDER BY id DESC LIMIT $2",
        )
        .await?;
    let jobs: Vec<String> = jobs.iter().map(|j| (*j).to_owned()).collect();
    let mut states = Vec::new();
    for row in timed("job_runs.list", db.query(&stmt, &[&jobs])).await? {
        let name: String = row.get(0);
        let recent_runs = timed("job_runs.list", db.query(&runs, &[&name, &recent])).await?;
        states.push(JobState {
            next_run_at: row.get(1),
            running: row.get(2),
            runs: recent_runs
                .iter()
                .map(|r| JobRun {
                    id: r.get(0),
                    trigger: r.get(1),
                    requested_by: r.get(2),
                    started_at: r.get(3),
                    finished_at: r.get(4),
                    status: r.get(5),
                    rows_touched: r.get(6),
                    error: r.get(7),
                })
                .collect(),
            name,
        });
    }
    Ok(states)
}
