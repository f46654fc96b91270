//! The one way a command reaches a conversation's actor.
//!
//! [`Dispatcher::dispatch`] is the single place that decides where a
//! conversation's actor runs. On a single node: here (found in the
//! directory, or spawned by the supervisor). In a cluster: here when the
//! actor is live here; otherwise the node that holds the conversation's lease
//! (`cluster::ownership`), taking the lease when nobody does — and a command
//! for a conversation owned by another node travels there over Redis and its
//! answer comes back (`cluster::forward`). When Redis does not answer, the
//! command runs here: Postgres fences a second owner (the owner epoch), so a
//! Redis outage costs realtime delivery across nodes, never a write.
//!
//! Every call is bounded by the configured timeout (a timeout is a 503, never
//! a hang) and retried once when the actor it reached was retiring
//! (passivated, failed or fenced out) or the lease moved on the way, which is
//! safe because sends are idempotent by `clientMessageId` and reads never
//! move back.
//!
//! Commands that only refresh a live actor's view (block, archive) are
//! applied to the live actor here and to the owner's, if another node owns it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;

use ractor::{ActorRef, RpcReplyPort, rpc::CallResult};

use super::wire::Forwarded;
use crate::{
    actors::{
        conversation::{Command, ConversationMsg, Reply},
        supervisor::{ConversationDirectory, ConversationSupervisorMsg, live_conversation},
    },
    cluster::{forward::ForwardError, node::Node, ownership::Owner},
    domain::{ChatError, ConversationId, error::WireError},
};

/// Routes commands to conversation actors; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    directory: ConversationDirectory,
    supervisor: ActorRef<ConversationSupervisorMsg>,
    call_timeout: Duration,
    /// This node's membership of a cluster (`None`: a single node).
    cluster: Option<Arc<Node>>,
    /// Conversations recently found owned by another node, and when: their
    /// commands are forwarded without asking Redis again while the entry is
    /// younger than [`OWNER_MEMORY`] (a wrong guess costs one retry).
    known_owners: Arc<DashMap<ConversationId, (String, Instant)>>,
}

/// How long a conversation's owner elsewhere is remembered.
const OWNER_MEMORY: Duration = Duration::from_secs(2);
/// Most owners remembered (the memory is dropped whole beyond it).
const OWNER_MEMORY_CAPACITY: usize = 100_000;

/// Where a command runs.
enum Route {
    Here,
    There(String),
}

/// The outcome of one actor call that may be retried.
pub(super) enum Attempt<T> {
    Done(Result<T, ChatError>),
    /// The actor stopped before answering: retry against a fresh one.
    ActorGone,
}

/// Calls `actor`, bounded by `timeout`.
pub(super) async fn call<M: Send + 'static, T: Send + 'static>(
    actor: &ActorRef<M>,
    timeout: Duration,
    build: impl FnOnce(RpcReplyPort<Result<T, ChatError>>) -> M,
) -> Attempt<T> {
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(result)) => Attempt::Done(result),
        Ok(CallResult::Timeout) => {
            Attempt::Done(Err(ChatError::unavailable("actor call timed out")))
        }
        Ok(CallResult::SenderError) | Err(_) => Attempt::ActorGone,
    }
}

impl Dispatcher {
    pub fn new(
        directory: ConversationDirectory,
        supervisor: ActorRef<ConversationSupervisorMsg>,
        call_timeout: Duration,
        cluster: Option<Arc<Node>>,
    ) -> Self {
        Self {
            directory,
            supervisor,
            call_timeout,
            cluster,
            known_owners: Arc::new(DashMap::new()),
        }
    }

    /// Runs `command` in the conversation's actor, wherever it runs, and
    /// returns its answer. A command that only refreshes a live actor's view
    /// (see [`Command::needs_actor`]) is handed to the live actor here, and
    /// to the owner's if another node holds the lease; it starts no actor.
    pub async fn dispatch(&self, id: ConversationId, command: Command) -> Result<Reply, ChatError> {
        if !command.needs_actor() {
            self.refresh(id, command.clone());
            // The owner elsewhere applies it before this call returns, so
            // the very next command there sees it.
            if let Some(node) = &self.cluster
                && let Ok(Some(owner)) = node.leases.holder(&node.link, id).await
                && owner != node.id()
                && let Attempt::Done(Err(e)) = self.forward(&owner, id, command).await
            {
                tracing::warn!(error = %e.chain(), conversation = %id, "could not refresh the owner's view");
            }
            return Ok(Reply::Done);
        }
        for _ in 0..2 {
            let outcome = match self.route(id).await {
                Route::Here => self.call_here(id, command.clone()).await,
                Route::There(node) => self.forward(&node, id, command.clone()).await,
            };
            if let Attempt::Done(result) = outcome {
                return result;
            }
        }
        Err(ChatError::unavailable(format!(
            "conversation {id} actor kept stopping or moving"
        )))
    }

    /// Runs a command another node forwarded here because this node holds
    /// the conversation's lease; answers `conversation_moved` when it no
    /// longer does (the sender then routes afresh).
    pub async fn dispatch_forwarded(&self, forwarded: Forwarded) -> Result<Reply, ChatError> {
        let Forwarded {
            conversation: id,
            command,
        } = forwarded;
        if !command.needs_actor() {
            self.refresh(id, command);
            return Ok(Reply::Done);
        }
        for _ in 0..2 {
            if let Route::There(_) = self.route(id).await {
                return Err(ChatError::conversation_moved());
            }
            if let Attempt::Done(result) = self.call_here(id, command.clone()).await {
                return result;
            }
        }
        Err(ChatError::unavailable(format!(
            "conversation {id} actor kept stopping"
        )))
    }

    /// Hands a view refresh to the conversation's actor if it is live here.
    pub fn refresh(&self, id: ConversationId, command: Command) {
        if let Some(actor) = self.directory.get(&id).map(|a| a.clone()) {
            // A retiring actor needs no update: its successor loads the truth.
            let _ = actor.send_message(ConversationMsg::Command(command, None));
        }
    }

    /// Where the conversation's actor runs: here if it is live here or
    /// nobody else holds its lease (or Redis does not answer).
    async fn route(&self, id: ConversationId) -> Route {
        let Some(node) = &self.cluster else {
            return Route::Here;
        };
        if live_conversation(&self.directory, id).is_some() {
            return Route::Here;
        }
        if let Some(owner) = self
            .known_owners
            .get(&id)
            .filter(|known| known.1.elapsed() < OWNER_MEMORY)
            .map(|known| known.0.clone())
        {
            return Route::There(owner);
        }
        match node.leases.claim(&node.link, id).await {
            Ok(Owner::Here) => Route::Here,
            Ok(Owner::There(owner)) => {
                if self.known_owners.len() >= OWNER_MEMORY_CAPACITY {
                    self.known_owners.clear();
                }
                self.known_owners
                    .insert(id, (owner.clone(), Instant::now()));
                Route::There(owner)
            }
            Err(e) => {
                metrics::counter!("parley_lease_failures_total").increment(1);
                tracing::debug!(error = %e, conversation = %id, "lease unavailable; running here");
                Route::Here
            }
        }
    }

    async fn call_here(&self, id: ConversationId, command: Command) -> Attempt<Reply> {
        let actor = match self.actor(id).await {
            Ok(actor) => actor,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let attempt = call(&actor, self.call_timeout, |reply| {
            ConversationMsg::Command(command, Some(reply))
        })
        .await;
        match attempt {
            // Fenced out by a newer owner: once it is gone, route afresh.
            Attempt::Done(Err(e)) if e.is_moved() => {
                let _ = actor
                    .stop_and_wait(Some("fenced out".into()), Some(self.call_timeout))
                    .await;
                Attempt::ActorGone
            }
            attempt => attempt,
        }
    }

    /// Sends the command to `owner` and waits for its answer; retried (as
    /// [`Attempt::ActorGone`]) when the owner no longer holds the lease.
    async fn forward(&self, owner: &str, id: ConversationId, command: Command) -> Attempt<Reply> {
        let attempt = self.forward_once(owner, id, command).await;
        let doubtful = match &attempt {
            Attempt::ActorGone => true,
            Attempt::Done(result) => result.as_ref().is_err_and(ChatError::is_server_failure),
        };
        if doubtful {
            // The owner moved, vanished or failed: ask Redis again next time.
            self.known_owners.remove(&id);
        }
        attempt
    }

    async fn forward_once(
        &self,
        owner: &str,
        id: ConversationId,
        command: Command,
    ) -> Attempt<Reply> {
        let Some(node) = &self.cluster else {
            return Attempt::ActorGone;
        };
        let request = Forwarded {
            conversation: id,
            command,
        };
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(e) => {
                return Attempt::Done(Err(ChatError::internal(format!("encoding a command: {e}"))));
            }
        };
        let answer = match node
            .forwarder
            .call(&node.link, owner, &body, self.call_timeout)
            .await
        {
            Ok(answer) => Ok(answer),
            Err(ForwardError::Failed(e)) => Err(e),
            Err(ForwardError::NotListening) => {
                // The owner is gone: end its lease so this node takes over.
                if let Err(e) = node.leases.release(&node.link, owner, &[id]).await {
                    return Attempt::Done(Err(ChatError::unavailable(format!(
                        "taking {id} over from node {owner}: {e}"
                    ))));
                }
                return Attempt::ActorGone;
            }
        };
        let decoded = answer.and_then(|body| {
            serde_json::from_slice::<Result<Reply, WireError>>(&body)
                .map_err(|e| ChatError::internal(format!("decoding a forwarded answer: {e}")))
        });
        match decoded {
            Ok(Ok(reply)) => Attempt::Done(Ok(reply)),
            Ok(Err(wire)) => {
                let e = ChatError::from(wire);
                if e.is_moved() {
                    Attempt::ActorGone
                } else {
                    Attempt::Done(Err(e))
                }
            }
            Err(e) => Attempt::Done(Err(e)),
        }
    }

    /// The conversations whose actors are live on this node.
    pub fn live_ids(&self) -> Vec<ConversationId> {
        self.directory.iter().map(|entry| *entry.key()).collect()
    }

    /// Stops the live actor of `id` here (its lease went to another node).
    pub fn retire(&self, id: ConversationId) {
        if let Some(actor) = self.directory.get(&id).map(|a| a.clone()) {
            actor.stop(Some("lease lost".into()));
        }
    }

    /// Number of live conversation actors on this node.
    pub fn live(&self) -> usize {
        self.directory.len()
    }

    /// Whether the conversation currently has a live actor on this node.
    pub fn is_live(&self, id: ConversationId) -> bool {
        self.directory.contains_key(&id)
    }

    /// Stops every conversation actor: each first processes the commands
    /// already in its mailbox (bounded by `grace`). In a cluster the node then
    /// gives up its leases, so that other nodes take the conversations over
    /// at once instead of when the leases expire.
    pub async fn stop(&self, grace: Duration) {
        let owned = self.live_ids();
        self.supervisor.drain_children();
        let deadline = tokio::time::Instant::now() + grace;
        while !self.directory.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.supervisor.stop(None);
        if let Some(node) = &self.cluster
            && let Err(e) = node.leases.release(&node.link, node.id(), &owned).await
        {
            tracing::warn!(error = %e, "could not release conversation leases; they expire by themselves");
        }
    }

    async fn actor(&self, id: ConversationId) -> Result<ActorRef<ConversationMsg>, ChatError> {
        if let Some(actor) = live_conversation(&self.directory, id) {
            return Ok(actor);
        }
        match call(&self.supervisor, self.call_timeout, |reply| {
            ConversationSupervisorMsg::GetOrSpawn(id, reply)
        })
        .await
        {
            Attempt::Done(result) => result,
            Attempt::ActorGone => Err(ChatError::unavailable("conversation supervisor stopped")),
        }
    }
}
