//! Commands travelling to the node that owns their conversation, and their
//! answers coming back: request/response over the nodes' own channels
//! (`{prefix}:node:{nodeId}`), matched by a correlation id.
//!
//! A request is `Q {id} {fromNode}\n{body}`, its answer `A {id}\n{body}`;
//! the bodies are the application layer's business (JSON of a command and of
//! its result). A broadcast to every node is `{fromNode} {id}\n{body}` on
//! the broadcast channel, confirmed by each node with `C {id}` once applied. A call that gets no answer within its timeout is a 503: the
//! client retries, which is safe (sends are idempotent by `clientMessageId`).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use dashmap::DashMap;
use redis::AsyncCommands;
use tokio::sync::oneshot;

use super::link::RedisLink;
use crate::domain::ChatError;

/// Why a forwarded call brought no answer.
#[derive(Debug)]
pub enum ForwardError {
    /// Nobody listens on that node's channel: the node is gone (its
    /// connections to Redis closed), so its leases mean nothing.
    NotListening,
    /// Redis failed, or the node did not answer in time.
    Failed(ChatError),
}

/// Requests this node sent and waits on, by correlation id.
#[derive(Default)]
pub struct Forwarder {
    next: AtomicU64,
    waiting: DashMap<u64, oneshot::Sender<Vec<u8>>>,
    /// Broadcasts waiting for the other nodes to confirm them.
    confirming: DashMap<u64, tokio::sync::mpsc::UnboundedSender<()>>,
}

/// Removes a request from the waiting lists however the call ends.
struct Waiting<'a> {
    forwarder: &'a Forwarder,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.forwarder.waiting.remove(&self.id);
        self.forwarder.confirming.remove(&self.id);
    }
}

impl Forwarder {
    /// Sends `body` to `node` and waits (at most `timeout`) for its answer.
    pub async fn call(
        &self,
        link: &RedisLink,
        node: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ForwardError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.waiting.insert(id, answer);
        let _waiting = Waiting {
            forwarder: self,
            id,
        };
        let mut request = format!("Q {id} {}\n", link.node()).into_bytes();
        request.extend_from_slice(body);
        let receivers: i64 = link
            .commands()
            .publish(link.node_channel(node), request)
            .await
            .map_err(|e| {
                ForwardError::Failed(ChatError::unavailable(format!(
                    "forwarding to node {node}: {e}"
                )))
            })?;
        if receivers == 0 {
            return Err(ForwardError::NotListening);
        }
        metrics::counter!("parley_forwarded_commands_total").increment(1);
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(ForwardError::Failed(ChatError::unavailable(
                "forwarded call dropped",
            ))),
            Err(_) => Err(ForwardError::Failed(ChatError::unavailable(format!(
                "node {node} did not answer in time"
            )))),
        }
    }

    /// Publishes `{thisNode} {id}\n{body}` on the broadcast channel and waits
    /// (at most `timeout`) until every other node that heard it confirms
    /// (`C {id}` on this node's channel) that it applied it. Returns whether
    /// all did.
    pub async fn broadcast(&self, link: &RedisLink, body: &[u8], timeout: Duration) -> bool {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (confirm, mut confirmed) = tokio::sync::mpsc::unbounded_channel();
        self.confirming.insert(id, confirm);
        let _waiting = Waiting {
            forwarder: self,
            id,
        };
        let mut payload = format!("{} {id}\n", link.node()).into_bytes();
        payload.extend_from_slice(body);
        let heard: i64 = match link
            .commands()
            .publish(link.broadcast_channel(), payload)
            .await
        {
            Ok(heard) => heard,
            Err(e) => {
                tracing::warn!(error = %e, "could not broadcast to the cluster");
                return false;
            }
        };
        // This node hears its own broadcast too, and ignores it.
        let others = heard.saturating_sub(1);
        let all = async {
            for _ in 0..others {
                confirmed.recv().await;
            }
        };
        tokio::time::timeout(timeout, all).await.is_ok()
    }

    /// A node confirmed broadcast `id` (`C {id}`, the leading `C ` removed).
    pub fn confirmed(&self, id: &[u8]) {
        if let Some(id) = std::str::from_utf8(id)
            .ok()
            .and_then(|id| id.parse::<u64>().ok())
            && let Some(confirm) = self.confirming.get(&id)
        {
            let _ = confirm.send(());
        }
    }

    /// An answer arrived: `A {id}\n{body}` with the leading `A ` removed.
    pub fn answered(&self, rest: &[u8]) {
        let Some((id, body)) = split_header(rest) else {
            return;
        };
        let Some(id) = id.first().and_then(|id| id.parse::<u64>().ok()) else {
            return;
        };
        if let Some((_, waiter)) = self.waiting.remove(&id) {
            let _ = waiter.send(body.to_vec());
        }
    }
}

/// A request received: `Q {id} {fromNode}\n{body}` with the leading `Q `
/// removed. Returns the correlation id, the sender and the body.
pub fn parse_request(rest: &[u8]) -> Option<(u64, String, &[u8])> {
    let (header, body) = split_header(rest)?;
    let [id, from] = header.as_slice() else {
        return None;
    };
    Some((id.parse().ok()?, (*from).to_owned(), body))
}

/// Sends the answer to request `id` back to node `to`.
pub async fn answer(link: &RedisLink, to: &str, id: u64, body: &[u8]) {
    let mut payload = format!("A {id}\n").into_bytes();
    payload.extend_from_slice(body);
    let sent: redis::RedisResult<i64> = link
        .commands()
        .publish(link.node_channel(to), payload)
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, node = to, "could not answer a forwarded command");
    }
}

/// Confirms broadcast `id` to the node that sent it.
pub async fn confirm(link: &RedisLink, to: &str, id: u64) {
    let sent: redis::RedisResult<i64> = link
        .commands()
        .publish(link.node_channel(to), format!("C {id}"))
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, node = to, "could not confirm a broadcast");
    }
}

/// Splits a broadcast `{fromNode} {id}\n{body}` into its sender, id and body.
pub fn parse_broadcast(payload: &[u8]) -> Option<(String, u64, &[u8])> {
    let (header, body) = split_header(payload)?;
    let [from, id] = header.as_slice() else {
        return None;
    };
    Some(((*from).to_owned(), id.parse().ok()?, body))
}

/// Splits `"{word} {word}…\n{body}"` into its header words and body.
fn split_header(bytes: &[u8]) -> Option<(Vec<&str>, &[u8])> {
    let at = bytes.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..at]).ok()?;
    Some((header.split(' ').collect(), &bytes[at + 1..]))
}
