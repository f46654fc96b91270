//! The outbox run by the node itself (no broker configured): due rows are
//! taken in a transaction (`FOR UPDATE SKIP LOCKED`), run, and removed; a
//! failed one is postponed by [`super::retry_delay`] and, after
//! [`super::MAX_ATTEMPTS`] runs, moved to `dead_jobs`.

use std::time::Duration;

use futures_util::{StreamExt, stream};

use crate::{
    chat::ChatCore,
    domain::ChatError,
    persistence::{client, outbox},
};

/// How long the runner waits when the outbox had nothing due.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Runs the outbox until the task is aborted.
pub fn start(chat: ChatCore) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match run_due(&chat).await {
                Ok(n) if n as i64 >= super::BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.chain(), "running the outbox failed"),
            }
            tokio::time::sleep(IDLE_WAIT).await;
        }
    })
}

/// Runs one batch of due jobs — the message jobs together, the others
/// [`super::CONCURRENT`] at a time; returns how many it took.
async fn run_due(chat: &ChatCore) -> Result<usize, ChatError> {
    let mut db = client(chat.pool()).await?;
    let tx = db.transaction().await?;
    let due = outbox::take_due(&tx, super::BATCH).await?;
    // Message jobs together (a few statements for the whole batch); whatever
    // is left — other kinds, or every one of them if the batch failed — one
    // by one, with its own retries.
    let (messages, others): (Vec<_>, Vec<_>) = due
        .iter()
        .cloned()
        .partition(|(_, job)| job.kind == "message_created");
    let mut done = Vec::new();
    let message_jobs: Vec<outbox::Job> = messages.iter().map(|(_, job)| job.clone()).collect();
    let one_by_one = match chat.run_message_jobs(&message_jobs).await {
        Ok(()) => {
            super::counted("message_created", "done", message_jobs.len() as u64);
            done.extend(messages.iter().map(|(id, _)| *id));
            others
        }
        Err(e) => {
            tracing::warn!(error = %e.chain(), "a batch of message jobs failed; running them one by one");
            due.clone()
        }
    };
    let outcomes: Vec<(i64, outbox::Job, Result<(), ChatError>)> = stream::iter(one_by_one)
        .map(|(id, job)| {
            let chat = chat.clone();
            async move {
                let outcome = chat.run_job(&job).await;
                (id, job, outcome)
            }
        })
        .buffer_unordered(super::CONCURRENT)
        .collect()
        .await;
    for (id, job, outcome) in outcomes {
        match outcome {
            Ok(()) => {
                super::counted(&job.kind, "done", 1);
                done.push(id);
            }
            Err(e) if job.attempts + 1 >= super::MAX_ATTEMPTS => {
                tracing::warn!(error = %e.chain(), job = %job.job_id, kind = %job.kind, "job dead-lettered");
                super::counted(&job.kind, "dead", 1);
                outbox::bury(&tx, &job, job.attempts + 1, &e.chain()).await?;
            }
            Err(e) => {
                super::counted(&job.kind, "retry", 1);
                let wait = super::retry_delay(job.attempts + 1);
                outbox::postpone(
                    &tx,
                    id,
                    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
                    &e.chain(),
                )
                .await?;
            }
        }
    }
    outbox::remove(&tx, &done).await?;
    tx.commit().await?;
    Ok(due.len())
}
