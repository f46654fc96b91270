//! The asynchronous half: follow-up jobs that the outbox holds (written in
//! the same transaction as the action that needs them) run here, through
//! `ChatCore::run_job` — the same handlers whichever way a job arrives.
//!
//! * With `PARLEY_AMQP_URL` ([`amqp`]): a relay hands outbox rows to
//!   RabbitMQ (persistent messages, publisher confirms; a row is deleted only
//!   once its message is confirmed) and consumers run them with bounded
//!   prefetch, acking after the work, retrying through delay queues with
//!   growing delays, and dead-lettering after [`MAX_ATTEMPTS`].
//! * Without ([`in_process`]): the node runs the outbox itself, with the same
//!   retries and dead-lettering, so one node with only Postgres still sends
//!   notifications.
//!
//! Several nodes may run either at once: rows are taken `FOR UPDATE SKIP
//! LOCKED`, and a job records its id when it runs, so one delivered twice
//! (at-least-once is the contract) runs once.

pub mod amqp;
pub mod in_process;

use std::time::Duration;

use crate::{chat::ChatCore, config::JobSettings};

/// The running job machinery of this node; stopped with [`Jobs::stop`].
pub struct Jobs {
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Jobs {
    /// Starts the relay and consumers (with a broker) or the in-process
    /// runner, the due-email pass, the revival of failed scans and the
    /// daily jobs' scheduler.
    pub async fn start(chat: &ChatCore, settings: &JobSettings) -> anyhow::Result<Self> {
        let mut tasks = match &settings.amqp_url {
            Some(url) => {
                let broker = amqp::Broker::connect(url.expose(), settings).await?;
                tracing::info!(prefix = %settings.amqp_prefix, "jobs run through RabbitMQ");
                broker.start(chat.clone())
            }
            None => vec![in_process::start(chat.clone()).abort_handle()],
        };
        tasks.push(send_emails(chat.clone()).abort_handle());
        tasks.push(revive_failed_scans(chat.clone()).abort_handle());
        tasks.push(run_daily_jobs(chat.clone()).abort_handle());
        Ok(Self { tasks })
    }

    /// Stops relaying and consuming (unfinished jobs stay in the outbox or
    /// the queue, for another node or the next start; the tasks' broker
    /// connections close with them).
    pub fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Counts `n` jobs of `kind` that ended `outcome` (`done`, `retry`, `dead`).
fn counted(kind: &str, outcome: &'static str, n: u64) {
    metrics::counter!("parley_jobs_total", "kind" => kind.to_owned(), "outcome" => outcome)
        .increment(n);
}

/// How often a node looks for notification emails that are due.
const EMAIL_PASS: Duration = Duration::from_secs(1);
/// How often a node revives failed scans, and looks for daily jobs that are due.
const MINUTE: Duration = Duration::from_secs(60);

/// Sends due notification emails, on every node (rows are taken with
/// `SKIP LOCKED`), until aborted.
fn send_emails(chat: ChatCore) -> tokio::task::JoinHandle<()> {
    every(EMAIL_PASS, "sending notification emails", move || {
        let chat = chat.clone();
        async move { chat.send_due_emails().await }
    })
}

/// Tries again the scans that failed every attempt, on every node, until aborted.
fn revive_failed_scans(chat: ChatCore) -> tokio::task::JoinHandle<()> {
    every(MINUTE, "reviving failed scans", move || {
        let chat = chat.clone();
        async move { chat.revive_failed_scans().await }
    })
}

/// The scheduler of the daily jobs (`chat::housekeeping`): records when each
/// runs next, then looks each minute for those that are due. Every node
/// does; a job's lease lets one of them run it.
fn run_daily_jobs(chat: ChatCore) -> tokio::task::JoinHandle<()> {
    every(MINUTE, "running daily jobs", move || {
        let chat = chat.clone();
        async move {
            chat.schedule_jobs().await?;
            chat.run_due_jobs().await
        }
    })
}

/// Runs `pass` every `period` (a late tick waits, never bunches up) until
/// aborted; a failure is logged as `what` failing.
fn every<F, Fut, T>(period: Duration, what: &'static str, pass: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, crate::domain::ChatError>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = pass().await {
                tracing::warn!(error = %e.chain(), "{what} failed");
            }
        }
    })
}

/// Runs of a job before it is dead-lettered.
pub const MAX_ATTEMPTS: i32 = 5;

/// How long to wait before retrying a job that failed `attempts` times: 1 s,
/// 4 s, 16 s, 64 s.
pub fn retry_delay(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(1, 4) - 1).unwrap_or(0);
    Duration::from_secs(4u64.pow(exponent))
}

/// Most outbox rows taken at once.
const BATCH: i64 = 200;
/// Jobs a node runs at once (each holds a pooled connection while it runs).
const CONCURRENT: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time() {
        let delays: Vec<u64> = (1..=5).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, vec![1, 4, 16, 64, 64]);
    }
}
