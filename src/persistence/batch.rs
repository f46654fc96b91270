//! Batched database work: callers hand in items one by one; a writer task
//! takes everything that queued up meanwhile and runs one statement for the
//! lot, so one round trip (and, for writes, one commit and one WAL flush)
//! serves many callers, while each caller still gets its own answer.
//!
//! Used for message writes (group commit), the upsert of users seen for the
//! first time, and the unread counts a user actor starts from: the three
//! things a burst of sends or connects asks of Postgres once per item.
//!
//! A batch that fails as a whole is retried item by item, so one bad item
//! never spoils the answers of the others.

use std::{future::Future, sync::Arc};

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::domain::ChatError;

/// One kind of batched work.
pub trait BatchJob: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Output: Send + 'static;
    /// A name for metrics and logs.
    const NAME: &'static str;
    /// How large its batches get and how many run at once.
    const LIMITS: BatchLimits;

    /// Runs the whole batch, all or nothing: one output per item, in order.
    fn run_batch(
        &self,
        pool: &Pool,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Output>, ChatError>> + Send;

    /// Runs one item alone (a batch of one, or the retry of a failed batch).
    fn run_one(
        &self,
        pool: &Pool,
        item: Self::Item,
    ) -> impl Future<Output = Result<Self::Output, ChatError>> + Send {
        async move {
            self.run_batch(pool, std::slice::from_ref(&item))
                .await?
                .pop()
                .ok_or_else(|| ChatError::internal(format!("{} returned no output", Self::NAME)))
        }
    }
}

/// How large batches get and how many run at once.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Most items in one batch.
    pub max_batch: usize,
    /// Batches in flight at once (each holds one pooled connection).
    pub concurrent: usize,
    /// Items waiting for a batch before submitters wait for room.
    pub queue: usize,
}

impl BatchLimits {
    /// For work done once per connecting user (sign-in, unread counts): large
    /// batches for a reconnect storm, two at a time so a storm leaves the
    /// pool to everything else.
    pub const PER_CONNECT: Self = Self {
        max_batch: 512,
        concurrent: 2,
        queue: 8192,
    };
}

/// Where an item's answer goes.
enum Reply<O> {
    /// A caller awaits it.
    Wait(oneshot::Sender<Result<O, ChatError>>),
    /// Nobody waits: the answer is handed to this function (run by the writer).
    Then(Box<dyn FnOnce(Result<O, ChatError>) + Send>),
}

impl<O> Reply<O> {
    fn send(self, result: Result<O, ChatError>) {
        match self {
            Self::Wait(tx) => {
                let _ = tx.send(result);
            }
            Self::Then(then) => then(result),
        }
    }
}

/// Handle to a batching writer; cheap to clone.
pub struct Batcher<J: BatchJob> {
    queue: mpsc::Sender<(J::Item, Reply<J::Output>)>,
}

impl<J: BatchJob> Clone for Batcher<J> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<J: BatchJob> Batcher<J> {
    /// Starts the writer task.
    pub fn start(pool: Pool, job: J) -> Self {
        let (queue, items) = mpsc::channel(J::LIMITS.queue);
        tokio::spawn(run(pool, Arc::new(job), J::LIMITS, items));
        Self { queue }
    }

    /// Runs `item` as part of the next batch and returns its own answer.
    pub async fn submit(&self, item: J::Item) -> Result<J::Output, ChatError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, Reply::Wait(reply)))
            .await
            .map_err(|_| ChatError::unavailable(format!("{} writer stopped", J::NAME)))?;
        answer
            .await
            .map_err(|_| ChatError::unavailable(format!("{} writer dropped an item", J::NAME)))?
    }

    /// Runs `item` as part of the next batch without waiting; `then` gets the
    /// answer (an error at once when the queue is full).
    pub fn submit_then(
        &self,
        item: J::Item,
        then: impl FnOnce(Result<J::Output, ChatError>) + Send + 'static,
    ) {
        if let Err(refused) = self.queue.try_send((item, Reply::Then(Box::new(then)))) {
            let (_, reply) = refused.into_inner();
            reply.send(Err(ChatError::unavailable(format!(
                "{} queue is full",
                J::NAME
            ))));
        }
    }
}

async fn run<J: BatchJob>(
    pool: Pool,
    job: Arc<J>,
    limits: BatchLimits,
    mut items: mpsc::Receiver<(J::Item, Reply<J::Output>)>,
) {
    let slots = Arc::new(Semaphore::new(limits.concurrent));
    while let Some(first) = items.recv().await {
        // Wait for a free slot first: while waiting, more items queue up and
        // join this batch — that is the group in group commit.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < limits.max_batch {
            match items.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let (pool, job) = (pool.clone(), job.clone());
        tokio::spawn(async move {
            write(&pool, job.as_ref(), batch).await;
            drop(slot);
        });
    }
}

async fn write<J: BatchJob>(pool: &Pool, job: &J, batch: Vec<(J::Item, Reply<J::Output>)>) {
    metrics::histogram!("parley_batch_size", "job" => J::NAME).record(batch.len() as f64);
    let (items, replies): (Vec<J::Item>, Vec<Reply<J::Output>>) = batch.into_iter().unzip();
    if items.len() > 1 {
        match job.run_batch(pool, &items).await {
            Ok(outputs) if outputs.len() == items.len() => {
                for (reply, output) in replies.into_iter().zip(outputs) {
                    reply.send(Ok(output));
                }
                return;
            }
            Ok(_) => tracing::error!(
                job = J::NAME,
                "a batch returned the wrong number of outputs"
            ),
            Err(e) => {
                tracing::debug!(job = J::NAME, error = %e.chain(), size = items.len(), "batch failed; running its items one by one")
            }
        }
    }
    for (item, reply) in items.into_iter().zip(replies) {
        reply.send(job.run_one(pool, item).await);
    }
}
