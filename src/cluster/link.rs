//! The node's two connections to Redis, and the names of everything it keeps
//! there.
//!
//! One multiplexed connection carries every command and publish of the node
//! (never a connection per user); one RESP3 connection carries its
//! subscriptions, whose messages arrive on one channel read by the node's
//! inbound loop (`cluster::node`). Both are `redis::aio::ConnectionManager`s,
//! which reconnect by themselves; the subscriber re-subscribes to every
//! channel after a reconnect. Commands time out quickly, so a Redis outage
//! degrades what depends on it instead of stalling requests.
//!
//! Every key and channel starts with the configured prefix, so two
//! deployments or two test runs can share one Redis:
//! `{prefix}:user:{userId}` (events for one user), `{prefix}:node:{nodeId}`
//! (commands forwarded to one node, and their answers),
//! `{prefix}:broadcast` (what every node must hear), `{prefix}:presence`
//! (whose presence changed), `{prefix}:owner:{id}` (who owns a
//! conversation), `{prefix}:presence:{userId}` (a user's presence).

use std::{sync::Mutex, time::Duration};

use redis::{
    Client, ProtocolVersion, PushInfo, RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// How long a Redis command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The node's connections and names in Redis.
pub struct RedisLink {
    prefix: String,
    node: String,
    client: Client,
    /// Both replaced as a whole when they stop answering or delivering (see
    /// `cluster::node`): a connection that went silent is not closed by
    /// anything else.
    commands: Mutex<ConnectionManager>,
    subscriber: Mutex<ConnectionManager>,
    pushes: UnboundedSender<PushInfo>,
}

impl RedisLink {
    /// Connects both connections; pushes (subscription messages and
    /// disconnection notices) arrive on the returned receiver.
    pub async fn connect(
        url: &str,
        prefix: &str,
        node: &str,
    ) -> RedisResult<(Self, UnboundedReceiver<PushInfo>)> {
        let info = redis::IntoConnectionInfo::into_connection_info(url)?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(resp3))?;
        let commands = ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
        let (pushes, received) = unbounded_channel();
        let subscriber = subscriber(&client, pushes.clone()).await?;
        let link = Self {
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            client,
            commands: Mutex::new(commands),
            subscriber: Mutex::new(subscriber),
            pushes,
        };
        Ok((link, received))
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A handle for commands (a clone of the one multiplexed connection;
    /// take a fresh one for each use, so a replaced connection is let go).
    pub fn commands(&self) -> ConnectionManager {
        current(&self.commands)
    }

    /// The subscriber connection (a clone sharing the one connection).
    pub fn subscriber(&self) -> ConnectionManager {
        current(&self.subscriber)
    }

    /// Opens both connections afresh, the subscriber subscribed to
    /// `channels`, and puts them in place of the old ones, which are dropped
    /// (their subscriptions end with them).
    pub async fn reconnect(&self, channels: &[String]) -> RedisResult<()> {
        let commands =
            ConnectionManager::new_with_config(self.client.clone(), manager_config()).await?;
        let mut fresh = subscriber(&self.client, self.pushes.clone()).await?;
        for chunk in channels.chunks(512) {
            fresh.subscribe(chunk).await?;
        }
        replace(&self.commands, commands);
        replace(&self.subscriber, fresh);
        Ok(())
    }

    /// `{prefix}:{rest}`.
    pub fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// The channel of events for one user.
    pub fn user_channel(&self, user: &str) -> String {
        self.key(format_args!("user:{user}"))
    }

    /// The channel of one node (forwarded commands and their answers).
    pub fn node_channel(&self, node: &str) -> String {
        self.key(format_args!("node:{node}"))
    }

    /// The channel every node listens to.
    pub fn broadcast_channel(&self) -> String {
        self.key(format_args!("broadcast"))
    }

    /// The channel on which nodes announce presence changes.
    pub fn presence_channel(&self) -> String {
        self.key(format_args!("presence"))
    }

    /// What a channel name means to this node, prefix removed.
    pub fn channel_suffix<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
    }
}

fn current(slot: &Mutex<ConnectionManager>) -> ConnectionManager {
    match slot.lock() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn replace(slot: &Mutex<ConnectionManager>, fresh: ConnectionManager) {
    match slot.lock() {
        Ok(mut guard) => *guard = fresh,
        Err(poisoned) => *poisoned.into_inner() = fresh,
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

async fn subscriber(
    client: &Client,
    pushes: UnboundedSender<PushInfo>,
) -> RedisResult<ConnectionManager> {
    let config = manager_config()
        .set_push_sender(pushes)
        .set_automatic_resubscription();
    ConnectionManager::new_with_config(client.clone(), config).await
}
