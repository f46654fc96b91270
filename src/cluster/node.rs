//! This node's membership of a cluster: its Redis link, the bus, its
//! conversation leases and forwarded calls, and two loops.
//!
//! * The inbound loop reads every message of the node's subscriptions and
//!   routes it: a user's channel to the bus, the node's own channel to the
//!   forwarder (requests, answers, probes), the broadcast channel to the
//!   [`NodeHandler`].
//! * The probe loop publishes a probe on the node's own channel every
//!   [`PROBE_EVERY`] and waits for it to come back. A probe that does not
//!   (Redis is down, or the subscription silently stopped delivering, a known
//!   failure of pub/sub behind failovers) marks the node degraded and opens a
//!   fresh subscriber connection; the first probe that returns after that
//!   re-subscribes every channel and tells every local client to resync (it
//!   may have missed events published meanwhile).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use redis::{AsyncCommands, PushInfo, PushKind, Value};
use tokio::sync::{mpsc::UnboundedReceiver, watch};

use super::{
    LocalSink,
    forward::{self, Forwarder},
    link::RedisLink,
    ownership::Leases,
    redis_bus::RedisBus,
    slots::ConnectionSlots,
};
use crate::{
    config::ClusterSettings,
    domain::{UserId, event::ServerEvent},
};

/// How often the node checks that its subscription delivers.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A node that has not probed for this long counts as gone (its connections
/// stop counting towards the per-user cap).
pub const ALIVE_WINDOW: Duration = Duration::from_secs(6);
/// How long a broadcast waits for the other nodes to confirm it.
pub const BROADCAST_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a probe may take to come back.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the application layer does with what other nodes send.
pub trait NodeHandler: Send + Sync + 'static {
    /// Runs a command forwarded by another node; returns its encoded answer.
    fn request(&self, body: Vec<u8>) -> BoxFuture<'static, Vec<u8>>;
    /// A notice another node broadcast (a cache to drop, a view to refresh).
    fn notice(&self, body: &[u8]);
    /// `user`'s presence changed somewhere in the cluster.
    fn presence_changed(&self, user: &UserId);
}

/// This node, as a member of the cluster.
pub struct Node {
    pub link: Arc<RedisLink>,
    pub bus: Arc<RedisBus>,
    pub leases: Leases,
    pub forwarder: Forwarder,
    sink: Arc<dyn LocalSink>,
    /// False while Redis is unreachable or the subscription does not deliver.
    healthy: AtomicBool,
    /// The newest probe that came back.
    probe_seen: watch::Sender<u64>,
    /// The nodes that probed within [`ALIVE_WINDOW`] (this one included),
    /// as of this node's last probe.
    alive: std::sync::RwLock<Vec<String>>,
    pub slots: ConnectionSlots,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Node {
    /// Connects to Redis as node `id` and starts the bus.
    pub async fn join(
        settings: &ClusterSettings,
        url: &str,
        id: &str,
        sink: Arc<dyn LocalSink>,
    ) -> anyhow::Result<(Arc<Self>, UnboundedReceiver<PushInfo>)> {
        let (link, pushes) = RedisLink::connect(url, &settings.redis_prefix, id).await?;
        let link = Arc::new(link);
        let mut subscriber = link.subscriber();
        subscriber.subscribe(&node_channels(&link)).await?;
        let node = Arc::new(Self {
            bus: RedisBus::start(link.clone(), sink.clone()),
            leases: Leases::new(settings.lease_ttl),
            forwarder: Forwarder::default(),
            link,
            sink,
            healthy: AtomicBool::new(true),
            probe_seen: watch::channel(0).0,
            alive: std::sync::RwLock::new(vec![id.to_owned()]),
            slots: ConnectionSlots::default(),
            tasks: Mutex::new(Vec::new()),
        });
        node.announce_alive().await?;
        Ok((node, pushes))
    }

    /// Starts the inbound and probe loops (stopped by [`Node::stop`]).
    pub fn start(
        self: &Arc<Self>,
        pushes: UnboundedReceiver<PushInfo>,
        handler: Arc<dyn NodeHandler>,
    ) {
        let inbound = tokio::spawn(self.clone().inbound(pushes, handler)).abort_handle();
        let probe = tokio::spawn(Self::probe_loop(Arc::downgrade(self))).abort_handle();
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.extend([inbound, probe]);
        }
    }

    /// Stops the loops and leaves the list of live nodes.
    pub async fn stop(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
        let left: redis::RedisResult<i64> = self
            .link
            .commands()
            .zrem(self.link.key(format_args!("nodes")), self.id())
            .await;
        if let Err(e) = left {
            tracing::debug!(error = %e, "could not leave the list of live nodes");
        }
    }

    /// The nodes alive as of this node's last probe (this one included).
    pub fn alive_nodes(&self) -> Vec<String> {
        match self.alive.read() {
            Ok(alive) => alive.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Records this node as alive in `{prefix}:nodes` (a sorted set scored by
    /// the time of each node's last probe) and reads which others are.
    async fn announce_alive(&self) -> redis::RedisResult<()> {
        let key = self.link.key(format_args!("nodes"));
        let now = chrono::Utc::now().timestamp_millis();
        let window = i64::try_from(ALIVE_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let (alive,): (Vec<String>,) = redis::pipe()
            .zadd(&key, self.id(), now)
            .ignore()
            .zrembyscore(&key, "-inf", now - 10 * window)
            .ignore()
            .zrangebyscore(&key, now - window, "+inf")
            .query_async(&mut self.link.commands())
            .await?;
        match self.alive.write() {
            Ok(mut known) => *known = alive,
            Err(poisoned) => *poisoned.into_inner() = alive,
        }
        Ok(())
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        self.link.node()
    }

    /// Whether Redis answers and the subscription delivers (readiness).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Tells every other node `body` (see [`NodeHandler::notice`]) and
    /// waits until each has applied it (at most [`BROADCAST_TIMEOUT`]), so
    /// that the very next request on any node sees it. Best effort beyond
    /// that: a node that misses it while Redis is away resyncs its clients,
    /// and caches expire by themselves.
    pub async fn broadcast(&self, body: &[u8]) {
        if !self
            .forwarder
            .broadcast(&self.link, body, BROADCAST_TIMEOUT)
            .await
        {
            metrics::counter!("parley_cluster_broadcasts_unconfirmed_total").increment(1);
        }
    }

    async fn inbound(
        self: Arc<Self>,
        mut pushes: UnboundedReceiver<PushInfo>,
        handler: Arc<dyn NodeHandler>,
    ) {
        while let Some(push) = pushes.recv().await {
            match push.kind {
                PushKind::Message => {
                    if let [channel, payload] = push.data.as_slice()
                        && let (Some(channel), Some(payload)) = (bytes(channel), bytes(payload))
                        && let Ok(channel) = std::str::from_utf8(channel)
                    {
                        self.route(channel, payload, &handler);
                    }
                }
                PushKind::Disconnection if self.healthy.swap(false, Ordering::Relaxed) => {
                    tracing::warn!("lost the Redis subscription; reconnecting");
                }
                _ => {}
            }
        }
    }

    fn route(&self, channel: &str, payload: &[u8], handler: &Arc<dyn NodeHandler>) {
        let Some(suffix) = self.link.channel_suffix(channel) else {
            return;
        };
        if let Some(user) = suffix.strip_prefix("user:") {
            self.bus.received(user, payload);
        } else if suffix == "presence" {
            if let Ok(user) = std::str::from_utf8(payload).map(UserId::parse)
                && let Ok(user) = user
            {
                handler.presence_changed(&user);
            }
        } else if suffix == "broadcast" {
            if let Some((from, id, body)) = forward::parse_broadcast(payload)
                && from != self.id()
            {
                handler.notice(body);
                let link = self.link.clone();
                tokio::spawn(async move { forward::confirm(&link, &from, id).await });
            }
        } else if let Some(id) = payload.strip_prefix(b"C ") {
            self.forwarder.confirmed(id);
        } else if let Some(rest) = payload.strip_prefix(b"A ") {
            self.forwarder.answered(rest);
        } else if let Some(rest) = payload.strip_prefix(b"Q ") {
            if let Some((id, from, body)) = forward::parse_request(rest) {
                let work = handler.request(body.to_vec());
                let link = self.link.clone();
                tokio::spawn(async move {
                    let answer = work.await;
                    forward::answer(&link, &from, id, &answer).await;
                });
            }
        } else if let Some(nonce) = payload.strip_prefix(b"P ")
            && let Some(nonce) = std::str::from_utf8(nonce).ok().and_then(|n| n.parse().ok())
        {
            self.probe_seen.send_replace(nonce);
        }
    }

    async fn probe_loop(node: std::sync::Weak<Self>) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut nonce: u64 = 0;
        loop {
            tick.tick().await;
            let Some(node) = node.upgrade() else {
                return;
            };
            nonce += 1;
            if node.probe(nonce).await {
                // Back after a disconnection the connection manager mended:
                // subscribe afresh too (users who connected meanwhile).
                if !node.healthy.load(Ordering::Relaxed) && node.reconnect().await {
                    node.recovered().await;
                }
                if let Err(e) = node.announce_alive().await {
                    tracing::debug!(error = %e, "could not announce this node");
                }
                continue;
            }
            if node.healthy.swap(false, Ordering::Relaxed) {
                metrics::counter!("parley_cluster_probe_failures_total").increment(1);
                tracing::warn!("Redis does not answer or deliver; reconnecting");
            }
            // Whether Redis is down or a connection went silent, open both
            // afresh (this fails, and is tried again next time, until Redis
            // answers), and probe the new ones at once.
            nonce += 1;
            if node.reconnect().await && node.probe(nonce).await {
                node.recovered().await;
            }
        }
    }

    /// Publishes probe `nonce` on this node's channel; whether it came back.
    async fn probe(&self, nonce: u64) -> bool {
        let mut seen = self.probe_seen.subscribe();
        let sent: redis::RedisResult<i64> = self
            .link
            .commands()
            .publish(self.link.node_channel(self.id()), format!("P {nonce}"))
            .await;
        sent.is_ok()
            && tokio::time::timeout(PROBE_TIMEOUT, seen.wait_for(|n| *n >= nonce))
                .await
                .is_ok_and(|r| r.is_ok())
    }

    /// Redis answers and delivers again: tell every local client to resync
    /// (events published meanwhile may never have arrived).
    async fn recovered(&self) {
        self.healthy.store(true, Ordering::Relaxed);
        metrics::counter!("parley_resync_requests_total", "kind" => "bus_recovered").increment(1);
        tracing::info!("Redis delivers again; telling local clients to resync");
        self.sink.deliver_to_all(
            ServerEvent::resync_required("realtime delivery was interrupted; call GET /chat/sync")
                .to_frame(),
        );
    }

    /// Opens both connections afresh, subscribed to every channel this node
    /// needs (users who connected while Redis was away included).
    async fn reconnect(&self) -> bool {
        let mut channels = node_channels(&self.link).to_vec();
        channels.extend(self.bus.user_channels());
        match self.link.reconnect(&channels).await {
            Ok(()) => {
                self.bus.mark_all_subscribed();
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not reconnect to Redis yet");
                false
            }
        }
    }
}

/// The channels every node listens to besides its users'.
fn node_channels(link: &RedisLink) -> [String; 3] {
    [
        link.node_channel(link.node()),
        link.broadcast_channel(),
        link.presence_channel(),
    ]
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}
