//! The one way a command reaches a conversation's actor.
//!
//! [`Dispatcher::dispatch`] is the single place that decides where a
//! conversation's actor runs: today always on this node (found in the
//! directory, or spawned by the supervisor); with the cluster, this is where a
//! command for a conversation owned by another node travels there instead.
//! Every call is bounded by the configured timeout (a timeout is a 503, never
//! a hang) and retried once when the actor it reached was retiring
//! (passivated or failed), which is safe because sends are idempotent by
//! `clientMessageId` and reads never move back.

use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort, rpc::CallResult};

use crate::{
    actors::{
        conversation::{Command, ConversationMsg, Reply},
        supervisor::{ConversationDirectory, ConversationSupervisorMsg},
    },
    domain::{ChatError, ConversationId},
};

/// Routes commands to conversation actors; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    directory: ConversationDirectory,
    supervisor: ActorRef<ConversationSupervisorMsg>,
    call_timeout: Duration,
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
    ) -> Self {
        Self {
            directory,
            supervisor,
            call_timeout,
        }
    }

    /// Runs `command` in the conversation's actor and returns its answer.
    /// A command that only refreshes a live actor's view (see
    /// [`Command::needs_actor`]) is handed to the actor if it is live and not
    /// waited for.
    pub async fn dispatch(&self, id: ConversationId, command: Command) -> Result<Reply, ChatError> {
        if !command.needs_actor() {
            if let Some(actor) = self.directory.get(&id).map(|a| a.clone()) {
                // A retiring actor needs no update: its successor loads the truth.
                let _ = actor.send_message(ConversationMsg::Command(command, None));
            }
            return Ok(Reply::Done);
        }
        for _ in 0..2 {
            let actor = self.actor(id).await?;
            let command = command.clone();
            let attempt = call(&actor, self.call_timeout, |reply| {
                ConversationMsg::Command(command, Some(reply))
            })
            .await;
            if let Attempt::Done(result) = attempt {
                return result;
            }
        }
        Err(ChatError::unavailable(format!(
            "conversation {id} actor kept stopping"
        )))
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
    /// already in its mailbox (bounded by `grace`).
    pub async fn stop(&self, grace: Duration) {
        self.supervisor.drain_children();
        let deadline = tokio::time::Instant::now() + grace;
        while !self.directory.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.supervisor.stop(None);
    }

    async fn actor(&self, id: ConversationId) -> Result<ActorRef<ConversationMsg>, ChatError> {
        if let Some(actor) = self.directory.get(&id).map(|a| a.clone()) {
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
