//! Group commit for message writes. Conversation actors hand their write-
//! through to the [`GroupCommitter`] instead of running it alone: writes that
//! arrive together are written by one multi-row statement
//! ([`messages::insert_batch`]), so one commit (one WAL flush) and one
//! executor set-up serve many messages, while nothing is acknowledged before
//! its commit.
//!
//! Each message still gets its own answer. A repeated `clientMessageId` is not
//! an error (the insert does nothing), so it never spoils a batch; any other
//! failure inside a batch (a `seq` another writer took) fails the statement
//! and its messages are retried one by one, each with its own result.
//!
//! A conversation never has two writes in flight (its actor waits for each
//! answer), so concurrent batches never touch the same rows.

use deadpool_postgres::Pool;

use super::{
    batch::{BatchJob, BatchLimits, Batcher},
    client,
    messages::{self, BatchError, InsertOutcome, NewMessage},
};
use crate::domain::ChatError;

/// The message writer shared by every conversation actor of this node.
pub type GroupCommitter = Batcher<MessageWrites>;

/// Writing messages, as a batched job.
pub struct MessageWrites;

impl BatchJob for MessageWrites {
    type Item = NewMessage;
    type Output = InsertOutcome;
    const NAME: &'static str = "messages";
    /// Most messages in one transaction, batches in flight (each holds one
    /// pooled connection), and writes waiting before senders wait for room.
    const LIMITS: BatchLimits = BatchLimits {
        max_batch: 256,
        concurrent: 4,
        queue: 8192,
    };

    async fn run_batch(
        &self,
        pool: &Pool,
        items: &[NewMessage],
    ) -> Result<Vec<InsertOutcome>, ChatError> {
        let db = client(pool).await?;
        messages::insert_batch(&db, items)
            .await
            .map_err(|e| match e {
                BatchError::SeqTaken => ChatError::unavailable("a seq of the batch was taken"),
                BatchError::Failed(e) => e,
            })
    }

    async fn run_one(&self, pool: &Pool, item: NewMessage) -> Result<InsertOutcome, ChatError> {
        messages::insert(pool, item).await
    }
}
