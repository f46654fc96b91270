//! The daily housekeeping jobs, visible and controllable: message retention
//! (bodies purged, messages kept redacted so histories have no holes), audit
//! retention, auto-archive of idle conversations, attachment retention and
//! the clean-up of expired data exports.
//!
//! Each job runs once a day at `PARLEY_JOBS_DAILY_AT` (UTC), once per
//! cluster (a lease in `scheduled_jobs`), or when an admin asks. A run works
//! in small batches, each its own short transaction, and records its
//! progress in `job_runs` as it goes; the work itself is idempotent and
//! remembered in the data (a conversation's `retained_through_seq`, a
//! message's `purged_at`, an archived participant), so a run that crashed is
//! simply carried on by the next one.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::ChatCore;
use crate::{
    actors::conversation::Command,
    domain::{
        ChatError, ConversationId, UserId,
        event::{ServerEvent, UnreadUpdate},
        housekeeping::{ScheduledJob, next_daily_run, retention_cutoff},
        model::Message,
    },
    persistence::{
        audit, client,
        job_runs::{self, JobRun, Trigger},
        messages::{self, PurgeReason},
        retention,
    },
};

/// How long a runner holds a job's lease without renewing it (each batch
/// renews it): a crashed runner's job is free again after this.
const LEASE: Duration = Duration::from_secs(300);
/// Most rows one batch touches (one short transaction each).
const BATCH: i64 = 500;
/// Conversations looked at per round of message retention.
const CONVERSATIONS_PER_ROUND: i64 = 100;
/// Runs of each job `GET /admin/jobs` shows.
const RECENT_RUNS: i64 = 10;

/// A job as admins see it: its schedule and its latest runs.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    pub name: String,
    /// When it runs: `daily at HH:MM UTC`, or `on request only`.
    pub schedule: String,
    pub next_run_at: Option<DateTime<Utc>>,
    /// A run holds the job's lease now (on this node or another).
    pub running: bool,
    /// Newest first.
    pub recent_runs: Vec<JobRun>,
}

/// A run an admin started.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedRun {
    pub job: String,
    pub run_id: i64,
}

/// Counts what a run touched, renewing its lease as it goes; a run that
/// lost its lease stops. Erasure, which is not a scheduled run, counts
/// with [`Progress::untracked`].
pub(super) struct Progress {
    run: Option<(ScheduledJob, i64)>,
    pub(super) total: u64,
}

impl Progress {
    pub(super) fn untracked() -> Self {
        Self {
            run: None,
            total: 0,
        }
    }

    async fn add(&mut self, chat: &ChatCore, rows: u64) -> Result<(), ChatError> {
        self.total += rows;
        let Some((job, run)) = self.run else {
            return Ok(());
        };
        if job_runs::progress(&chat.pool, job.name(), run, &chat.runner_id, LEASE, rows).await? {
            Ok(())
        } else {
            Err(ChatError::unavailable(format!(
                "{} lost its lease to another runner",
                job.name()
            )))
        }
    }
}

impl ChatCore {
    /// When each job runs next, by the configured time of day (a run that
    /// is already due stays due; never when the jobs run only on request).
    pub async fn schedule_jobs(&self) -> Result<(), ChatError> {
        for job in ScheduledJob::ALL {
            self.schedule(job).await?;
        }
        Ok(())
    }

    async fn schedule(&self, job: ScheduledJob) -> Result<(), ChatError> {
        job_runs::schedule(&self.pool, job.name(), self.next_run()).await
    }

    /// When the daily jobs run next (never, when they run only on request).
    fn next_run(&self) -> DateTime<Utc> {
        self.retention
            .daily_at
            .map_or(DateTime::<Utc>::MAX_UTC, |at| {
                next_daily_run(Utc::now(), at)
            })
    }

    /// Runs, one after another, every job that is due and not running
    /// elsewhere; answers how many ran. Every node calls this each minute.
    pub async fn run_due_jobs(&self) -> Result<usize, ChatError> {
        let mut ran = 0;
        for job in ScheduledJob::ALL {
            let claimed = job_runs::claim(
                &self.pool,
                job.name(),
                &self.runner_id,
                LEASE,
                Trigger::Schedule,
                None,
            )
            .await?;
            if let Some(run) = claimed {
                self.run_claimed(job, run, Trigger::Schedule).await;
                ran += 1;
            }
        }
        Ok(ran)
    }

    /// Starts a run of the job `name` now, in the background (audited):
    /// 404 for an unknown job, 409 `job_running` while a run holds its lease.
    pub async fn run_job_now(&self, admin: &UserId, name: &str) -> Result<StartedRun, ChatError> {
        let job = ScheduledJob::parse(name).ok_or(ChatError::NotFound { what: "job" })?;
        self.schedule(job).await?;
        let run = job_runs::claim(
            &self.pool,
            job.name(),
            &self.runner_id,
            LEASE,
            Trigger::Manual,
            Some(admin.as_str()),
        )
        .await?
        .ok_or_else(|| ChatError::Conflict {
            code: "job_running",
            message: format!("{name} is running; wait for this run to finish"),
        })?;
        audit::record(
            &client(&self.pool).await?,
            &audit::AuditEntry {
                actor: Some(admin.as_str()),
                action: "job.run_requested",
                target_type: "job",
                target_id: job.name(),
                conversation: None,
                details: serde_json::json!({ "runId": run }),
            },
        )
        .await?;
        let chat = self.clone();
        tokio::spawn(async move { chat.run_claimed(job, run, Trigger::Manual).await });
        Ok(StartedRun {
            job: job.name().to_owned(),
            run_id: run,
        })
    }

    /// Each job with its schedule and latest runs.
    pub async fn jobs(&self) -> Result<Vec<JobStatus>, ChatError> {
        let names = ScheduledJob::ALL.map(ScheduledJob::name);
        let schedule = self.retention.daily_at.map_or_else(
            || "on request only".to_owned(),
            |at| format!("daily at {} UTC", at.format("%H:%M")),
        );
        let states = job_runs::list(&self.pool, &names, RECENT_RUNS).await?;
        Ok(states
            .into_iter()
            .map(|state| JobStatus {
                name: state.name,
                schedule: schedule.clone(),
                next_run_at: self.retention.daily_at.and(state.next_run_at),
                running: state.running,
                recent_runs: state.runs,
            })
            .collect())
    }

    /// Does a claimed run and records how it ended; a scheduled run also
    /// moves the job to its next day.
    async fn run_claimed(&self, job: ScheduledJob, run: i64, trigger: Trigger) {
        let mut progress = Progress {
            run: Some((job, run)),
            total: 0,
        };
        let outcome = self.do_job(job, &mut progress).await;
        let error = outcome.as_ref().err().map(|e| e.chain().to_string());
        match &error {
            None => tracing::info!(job = job.name(), rows = progress.total, "job finished"),
            Some(error) => tracing::warn!(job = job.name(), %error, "job failed"),
        }
        metrics::counter!("parley_scheduled_jobs_total", "job" => job.name(),
            "outcome" => if error.is_none() { "succeeded" } else { "failed" })
        .increment(1);
        let next = (trigger == Trigger::Schedule).then(|| self.next_run());
        if let Err(e) = job_runs::finish(
            &self.pool,
            job.name(),
            run,
            &self.runner_id,
            error.as_deref(),
            next,
        )
        .await
        {
            tracing::warn!(job = job.name(), error = %e.chain(), "could not record the end of a run");
        }
    }

    async fn do_job(&self, job: ScheduledJob, progress: &mut Progress) -> Result<(), ChatError> {
        let now = self.safety.clock().now();
        match job {
            ScheduledJob::MessageRetention => {
                if let Some(cutoff) = retention_cutoff(now, self.retention.message_days) {
                    self.retain_messages(cutoff, progress).await?;
                }
                self.purge_erased_messages(None, progress).await
            }
            ScheduledJob::AuditRetention => {
                match retention_cutoff(now, self.retention.audit_days) {
                    Some(cutoff) => self.retain_audit(cutoff, progress).await,
                    None => Ok(()),
                }
            }
            ScheduledJob::AutoArchive => {
                match retention_cutoff(now, self.retention.auto_archive_days) {
                    Some(idle_before) => self.auto_archive(idle_before, progress).await,
                    None => Ok(()),
                }
            }
            ScheduledJob::AttachmentRetention => loop {
                let deleted = self.expire_attachments().await?;
                progress.add(self, deleted as u64).await?;
                if (deleted as i64) < super::attachments::EXPIRY_BATCH {
                    return Ok(());
                }
            },
            ScheduledJob::ExportCleanup => loop {
                let deleted = self.clean_up_exports().await?;
                progress.add(self, deleted as u64).await?;
                if deleted == 0 {
                    return Ok(());
                }
            },
        }
    }

    /// Purges, conversation by conversation and in `seq` order, the
    /// messages sent before `cutoff`, except in held conversations.
    async fn retain_messages(
        &self,
        cutoff: DateTime<Utc>,
        progress: &mut Progress,
    ) -> Result<(), ChatError> {
        loop {
            let round =
                retention::conversations_past(&self.pool, cutoff, CONVERSATIONS_PER_ROUND).await?;
            if round.is_empty() {
                return Ok(());
            }
            for (conversation, mut through) in round {
                loop {
                    let mut db = client(&self.pool).await?;
                    let tx = db.transaction().await?;
                    let (ids, last) =
                        retention::next_past(&tx, conversation, through, cutoff, BATCH).await?;
                    if ids.is_empty() {
                        break;
                    }
                    let purged = messages::purge(&tx, &ids, PurgeReason::Retention).await?;
                    retention::retained_through(&tx, conversation, last).await?;
                    tx.commit().await?;
                    self.publish_purged(purged).await?;
                    progress.add(self, ids.len() as u64).await?;
                    through = last;
                    if (ids.len() as i64) < BATCH {
                        break;
                    }
                }
            }
        }
    }

    /// Purges the messages of erased users (or of `user` only), except in
    /// held conversations, counting them in `progress`.
    pub(super) async fn purge_erased_messages(
        &self,
        user: Option<&UserId>,
        progress: &mut Progress,
    ) -> Result<(), ChatError> {
        loop {
            let ids = retention::erased_authors_messages(&self.pool, user, BATCH).await?;
            if ids.is_empty() {
                return Ok(());
            }
            let mut db = client(&self.pool).await?;
            let tx = db.transaction().await?;
            let purged = messages::purge(&tx, &ids, PurgeReason::Erasure).await?;
            tx.commit().await?;
            let count = purged.len() as u64;
            self.publish_purged(purged).await?;
            progress.add(self, count).await?;
        }
    }

    /// Tells each purged message's participants (`message.updated`).
    async fn publish_purged(&self, purged: Vec<Message>) -> Result<(), ChatError> {
        let mut by_conversation: HashMap<Uuid, Vec<Message>> = HashMap::new();
        for message in purged {
            by_conversation
                .entry(message.conversation_id)
                .or_default()
                .push(message);
        }
        for (conversation, purged) in by_conversation {
            let participants = self.participants_of(conversation).await?;
            for message in purged {
                self.publish(&participants, ServerEvent::MessageUpdated(message));
            }
        }
        Ok(())
    }

    /// Deletes the audit rows recorded before `cutoff` (except those of held
    /// conversations), then records that it did.
    async fn retain_audit(
        &self,
        cutoff: DateTime<Utc>,
        progress: &mut Progress,
    ) -> Result<(), ChatError> {
        let before = progress.total;
        loop {
            let deleted = retention::purge_audit(&self.pool, cutoff, BATCH).await?;
            progress.add(self, deleted).await?;
            if deleted < BATCH as u64 {
                break;
            }
        }
        let deleted = progress.total - before;
        if deleted > 0 {
            retention::record_audit_purge(&self.pool, cutoff, deleted).await?;
        }
        Ok(())
    }

    /// Archives (reason `auto`) every conversation idle since `idle_before`
    /// for each participant who has not archived it; the next message
    /// brings it back to their inbox.
    async fn auto_archive(
        &self,
        idle_before: DateTime<Utc>,
        progress: &mut Progress,
    ) -> Result<(), ChatError> {
        loop {
            let archived = retention::auto_archive(&self.pool, idle_before, BATCH).await?;
            let count = archived.len();
            for one in archived {
                let command = Command::SetArchived {
                    user: one.user.clone(),
                    archived: true,
                    auto: true,
                };
                self.dispatcher
                    .dispatch(ConversationId(one.conversation), command)
                    .await?;
                let update = UnreadUpdate {
                    conversation_id: one.conversation,
                    unread_count: one.unread_count,
                    last_read_seq: one.last_read_seq,
                    in_badge: false,
                    removed: false,
                };
                self.bus.publish_unread(&one.user, update);
            }
            progress.add(self, count as u64).await?;
            if (count as i64) < BATCH {
                return Ok(());
            }
        }
    }
}
