//! Group commit for message writes. Conversation actors hand their write-
//! through to a [`GroupCommitter`] instead of running it alone: writes that
//! arrive together are written by one multi-row statement, so one commit (one
//! WAL flush) and one executor set-up serve many messages, while nothing is
//! acknowledged before its commit.
//!
//! Each message still gets its own answer. A repeated `clientMessageId` is not
//! an error (the insert does nothing), so it never spoils a batch; any other
//! failure inside a batch (a `seq` another writer took) fails the statement
//! and its messages are retried one by one, each with its own result.
//!
//! A conversation never has two writes in flight (its actor waits for each
//! answer), so concurrent batches never touch the same rows.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{
    client,
    messages::{self, InsertOutcome, NewMessage},
};
use crate::domain::ChatError;

/// Most messages in one transaction.
const MAX_BATCH: usize = 256;
/// Batches in flight at once (each holds one pooled connection).
const CONCURRENT_BATCHES: usize = 4;
/// Writes waiting for a batch, before senders wait for room.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<InsertOutcome, ChatError>>;

/// Handle to the group-commit writer; cheap to clone.
#[derive(Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<(NewMessage, Reply)>,
}

impl GroupCommitter {
    /// Starts the writer task.
    pub fn start(pool: Pool) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, jobs));
        Self { queue }
    }

    /// Writes one message as part of the next batch; resolves after its commit.
    pub async fn insert(&self, message: NewMessage) -> Result<InsertOutcome, ChatError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((message, reply))
            .await
            .map_err(|_| ChatError::unavailable("message writer stopped"))?;
        answer
            .await
            .map_err(|_| ChatError::unavailable("message writer dropped a write"))?
    }
}

async fn run(pool: Pool, mut jobs: mpsc::Receiver<(NewMessage, Reply)>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_BATCHES));
    while let Some(first) = jobs.recv().await {
        // Wait for a free slot first: while waiting, more writes queue up and
        // join this batch — that is the group in group commit.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            write_batch(&pool, batch).await;
            drop(slot);
        });
    }
}

async fn write_batch(pool: &Pool, batch: Vec<(NewMessage, Reply)>) {
    metrics::histogram!("parley_group_commit_batch_size").record(batch.len() as f64);
    if batch.len() > 1 {
        match try_together(pool, &batch).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, size = batch.len(), "batch failed; writing its messages one by one")
            }
        }
    }
    for (message, reply) in batch {
        let _ = reply.send(messages::insert(pool, message).await);
    }
}

/// All of `batch` as one statement (so one transaction, one commit and one
/// executor set-up); all or nothing.
async fn try_together(
    pool: &Pool,
    batch: &[(NewMessage, Reply)],
) -> Result<Vec<InsertOutcome>, ChatError> {
    let db = client(pool).await?;
    let messages: Vec<NewMessage> = batch.iter().map(|(m, _)| m.clone()).collect();
    messages::insert_batch(&db, &messages)
        .await
        .map_err(|e| match e {
            messages::BatchError::SeqTaken => {
                ChatError::unavailable("a seq of the batch was taken")
            }
            messages::BatchError::Failed(e) => e,
        })
}
