//! Jobs through RabbitMQ (`lapin`).
//!
//! Topology, declared at every (re)connection, names under the configured
//! prefix `P` (default `parley`): a durable direct exchange `P`; the durable
//! work queue `P.notifications`; delay queues `P.notifications.retry.{N}s`
//! whose messages expire after N seconds back into the work queue (their
//! dead-letter target); and `P.dead` for jobs that failed
//! [`super::MAX_ATTEMPTS`] times (also recorded in `dead_jobs` for admins).
//!
//! * The relay takes due outbox rows in a transaction, publishes each as a
//!   persistent message with publisher confirms, and deletes the rows (commits)
//!   only once every message is confirmed: a crash or a broker outage leaves
//!   them in the outbox, to be published again (consumers dedupe by job id).
//! * Consumers take at most `prefetch` messages at once — the message jobs
//!   among what has arrived run as one batch (`ChatCore::run_message_jobs`),
//!   the others each on its own — and ack each after its work is done; a
//!   failure republishes the job (its attempt count up) to the delay queue for
//!   its next try, or to `P.dead`, then acks the original.
//!
//! Both reconnect by themselves (after [`RECONNECT_WAIT`]) when the broker
//! goes away; meanwhile actions keep succeeding and the outbox grows.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use tokio::sync::Semaphore;

use crate::{
    chat::ChatCore,
    config::JobSettings,
    persistence::{client, outbox},
};

/// How long the relay and consumers wait before reconnecting to the broker.
const RECONNECT_WAIT: Duration = Duration::from_secs(1);
/// How long the relay waits when the outbox had nothing due.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Routing key of the work queue.
const WORK: &str = "notifications";

/// Where the broker is, and the names of its queues.
#[derive(Clone)]
pub struct Broker {
    url: String,
    prefix: String,
    prefetch: u16,
}

impl Broker {
    /// Checks that the broker answers and declares the topology.
    pub async fn connect(url: &str, settings: &JobSettings) -> anyhow::Result<Self> {
        let broker = Self {
            url: url.to_owned(),
            prefix: settings.amqp_prefix.clone(),
            prefetch: settings.prefetch,
        };
        let (connection, channel) = broker.open().await?;
        let _ = channel.close(200, "topology declared".into()).await;
        let _ = connection.close(200, "topology declared".into()).await;
        Ok(broker)
    }

    /// Starts the relay and one consumer; both run until aborted.
    pub fn start(&self, chat: ChatCore) -> Vec<tokio::task::AbortHandle> {
        let relay = {
            let (broker, chat) = (self.clone(), chat.clone());
            tokio::spawn(async move {
                loop {
                    if let Err(e) = broker.relay(&chat).await {
                        tracing::warn!(error = %e, "outbox relay lost the broker; reconnecting");
                    }
                    tokio::time::sleep(RECONNECT_WAIT).await;
                }
            })
        };
        let consumer = {
            let broker = self.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = broker.consume(&chat).await {
                        tracing::warn!(error = %e, "job consumer lost the broker; reconnecting");
                    }
                    tokio::time::sleep(RECONNECT_WAIT).await;
                }
            })
        };
        vec![relay.abort_handle(), consumer.abort_handle()]
    }

    fn exchange(&self) -> String {
        self.prefix.clone()
    }

    fn work_queue(&self) -> String {
        format!("{}.{WORK}", self.prefix)
    }

    fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.{WORK}.retry.{}s", self.prefix, delay.as_secs())
    }

    fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Connects and declares everything (idempotent); returns the connection
    /// and a channel in confirm mode.
    async fn open(&self) -> lapin::Result<(Connection, Channel)> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                self.exchange().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(self.work_queue().into(), durable, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                self.work_queue().into(),
                self.exchange().into(),
                WORK.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for attempt in 1..super::MAX_ATTEMPTS {
            let delay = super::retry_delay(attempt);
            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(self.exchange().into()),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(WORK.into()),
            );
            channel
                .queue_declare(self.retry_queue(delay).into(), durable, arguments)
                .await?;
        }
        channel
            .queue_declare(self.dead_queue().into(), durable, FieldTable::default())
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((connection, channel))
    }

    /// Publishes `job` to `routing_key` on `exchange` and waits for the
    /// broker's confirm.
    async fn publish(
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        job: &outbox::Job,
    ) -> anyhow::Result<()> {
        let confirm = Self::send(channel, exchange, routing_key, job).await?;
        Self::confirmed(confirm, job).await
    }

    /// Publishes `job` (persistent, its id as the message id); the broker's
    /// confirm is to be awaited.
    async fn send(
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        job: &outbox::Job,
    ) -> anyhow::Result<PublisherConfirm> {
        let body = serde_json::to_vec(job)?;
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(job.job_id.to_string().into());
        Ok(channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await?)
    }

    /// Waits for the broker's confirm of `job`; an error unless it is an ack.
    async fn confirmed(confirm: PublisherConfirm, job: &outbox::Job) -> anyhow::Result<()> {
        if !confirm.await?.is_ack() {
            anyhow::bail!("the broker refused job {}", job.job_id);
        }
        Ok(())
    }

    /// Hands due outbox rows to the broker until the connection fails.
    async fn relay(&self, chat: &ChatCore) -> anyhow::Result<()> {
        let (_connection, channel) = self.open().await?;
        loop {
            let mut db = client(chat.pool()).await?;
            let tx = db.transaction().await?;
            let due = outbox::take_due(&tx, super::BATCH).await?;
            if due.is_empty() {
                drop(tx);
                drop(db);
                tokio::time::sleep(IDLE_WAIT).await;
                continue;
            }
            // The whole batch is sent, then its confirms awaited: one round
            // trip to the broker per batch, not per job.
            let mut confirms = Vec::with_capacity(due.len());
            for (_, job) in &due {
                confirms.push(Self::send(&channel, &self.exchange(), WORK, job).await?);
            }
            for (confirm, (_, job)) in confirms.into_iter().zip(&due) {
                Self::confirmed(confirm, job).await?;
            }
            let ids: Vec<i64> = due.iter().map(|(id, _)| *id).collect();
            outbox::remove(&tx, &ids).await?;
            tx.commit().await?;
            metrics::counter!("parley_outbox_relayed_total").increment(ids.len() as u64);
        }
    }

    /// Runs jobs from the work queue until the connection fails.
    async fn consume(&self, chat: &ChatCore) -> anyhow::Result<()> {
        let (_connection, channel) = self.open().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let deliveries = channel
            .basic_consume(
                self.work_queue().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        // What has arrived is taken together: the message jobs among it run as
        // one batch (as the in-process runner does), awaited before the next
        // chunk is taken, so that what arrives meanwhile makes the next batch
        // (a task per chunk would run many small batches at once and drain
        // the database pool). The other kinds run on tasks of their own, at
        // most `CONCURRENT` at a time. At most `prefetch` jobs are
        // unacknowledged: that bounds the work in hand.
        let others = Arc::new(Semaphore::new(super::CONCURRENT));
        let mut arrivals = deliveries.ready_chunks(usize::from(self.prefetch));
        while let Some(arrived) = arrivals.next().await {
            let mut messages = Vec::new();
            for delivery in arrived {
                let delivery = delivery?;
                match serde_json::from_slice::<outbox::Job>(&delivery.data) {
                    Ok(job) if job.kind == "message_created" => messages.push((delivery, job)),
                    Ok(job) => {
                        let permit = others.clone().acquire_owned().await?;
                        let (broker, chat, channel) = (self.clone(), chat.clone(), channel.clone());
                        tokio::spawn(async move {
                            let handled = broker.run(&chat, &channel, job).await;
                            acknowledge(&delivery, handled).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable job dropped");
                        acknowledge(&delivery, Ok(())).await;
                    }
                }
            }
            if messages.is_empty() {
                continue;
            }
            let jobs: Vec<outbox::Job> = messages.iter().map(|(_, job)| job.clone()).collect();
            match chat.run_message_jobs(&jobs).await {
                Ok(()) => {
                    super::counted("message_created", "done", jobs.len() as u64);
                    for (delivery, _) in &messages {
                        acknowledge(delivery, Ok(())).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e.chain(), "a batch of message jobs failed; running them one by one");
                    for (delivery, job) in messages {
                        let handled = self.run(chat, &channel, job).await;
                        acknowledge(&delivery, handled).await;
                    }
                }
            }
        }
        anyhow::bail!("the broker cancelled the consumer")
    }

    /// Runs one job; a failure sends it on to its next try, or to the dead
    /// letters. Errors only when the broker does (the delivery is then
    /// redelivered: the job runs at most once anyway).
    async fn run(
        &self,
        chat: &ChatCore,
        channel: &Channel,
        job: outbox::Job,
    ) -> anyhow::Result<()> {
        let Err(e) = chat.run_job(&job).await else {
            super::counted(&job.kind, "done", 1);
            return Ok(());
        };
        let mut next = job;
        next.attempts += 1;
        if next.attempts >= super::MAX_ATTEMPTS {
            tracing::warn!(error = %e.chain(), job = %next.job_id, kind = %next.kind, "job dead-lettered");
            super::counted(&next.kind, "dead", 1);
            let db = client(chat.pool()).await?;
            outbox::bury(&db, &next, next.attempts, &e.chain()).await?;
            Self::publish(channel, "", &self.dead_queue(), &next).await
        } else {
            super::counted(&next.kind, "retry", 1);
            let delay = super::retry_delay(next.attempts);
            Self::publish(channel, "", &self.retry_queue(delay), &next).await
        }
    }
}

/// Acknowledges a delivery whose job was handled (run, or handed on to its
/// next try); one that was not (the broker failed) stays unacknowledged and
/// is redelivered — and runs at most once anyway.
async fn acknowledge(delivery: &lapin::message::Delivery, handled: anyhow::Result<()>) {
    if let Err(e) = handled {
        tracing::warn!(error = %e, "a job could not be handed on; it will be redelivered");
    } else if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %e, "a job could not be acknowledged; it will be redelivered");
    }
}
