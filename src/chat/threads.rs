//! Context threads: one group conversation per business context, its
//! members set by the host platform (`PUT /internal/contexts/...` with a
//! `thread`), opened by its members, and told about the context's events
//! through system messages. Everything else — sends, reads, typing, mute,
//! archive, reports, notifications, sync, search — is the same code as for
//! direct conversations, per member.

use std::collections::HashMap;

use super::{ChatCore, unexpected};
use crate::{
    actors::conversation::{Command, Reply, SendOutcome},
    domain::{
        ChatError, ConversationId, UserId,
        model::{Conversation, ConversationContext, Message},
        text,
        thread::{ThreadMember, validate_event, validate_members},
    },
    persistence::{
        conversations,
        threads::{self, MemberView},
        users,
    },
};

impl ChatCore {
    /// Creates the thread of a registered context, or updates its members
    /// to exactly `members`: newcomers join (and read its whole history),
    /// those missing leave at once. Returns the thread and the system
    /// messages that say what changed (none for a repeated call).
    pub async fn set_thread(
        &self,
        context: &ConversationContext,
        members: &[ThreadMember],
    ) -> Result<(ConversationId, Vec<Message>), ChatError> {
        validate_members(members, self.max_thread_members)?;
        let ids: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
        let mut names = users::names(&self.pool, &ids).await?;
        if let Some(unknown) = ids.iter().find(|id| !names.contains_key(**id)) {
            return Err(ChatError::invalid(
                "unknown_user",
                format!(
                    "user {unknown} is not known here: create it first (PUT /internal/users/:id)"
                ),
            ));
        }
        let (id, _) = threads::find_or_create(&self.pool, context).await?;
        // Leavers are named in their system message too.
        let current = self.participants_of(id.0).await?;
        let leavers: Vec<&str> = current
            .iter()
            .map(UserId::as_str)
            .filter(|u| !ids.contains(u))
            .collect();
        names.extend(users::names(&self.pool, &leavers).await?);
        let names: HashMap<UserId, String> = names
            .into_iter()
            .filter_map(|(id, name)| Some((UserId::parse(&id).ok()?, name)))
            .collect();
        let command = Command::SetMembers {
            members: members.to_vec(),
            names,
        };
        match self.dispatcher.dispatch(id, command).await? {
            Reply::Members(said) => Ok((id, said)),
            other => Err(unexpected(other)),
        }
    }

    /// The caller opens the thread of `context` (found, never created: the
    /// platform creates threads). 403 unless the caller is a member, whether
    /// or not the context has a thread, so outsiders learn nothing.
    pub async fn open_thread(
        &self,
        caller: &UserId,
        context: &ConversationContext,
    ) -> Result<Conversation, ChatError> {
        context.validate()?;
        let not_member = || {
            ChatError::forbidden(
                "not_a_member",
                "you are not a member of that context's thread",
            )
        };
        let id = threads::find(&self.pool, &context.kind, &context.id)
            .await?
            .ok_or_else(not_member)?;
        conversations::view_for_user(&self.pool, id, caller)
            .await?
            .ok_or_else(not_member)
    }

    /// Posts the platform's system message (`event`: its kind, such as
    /// `booking.confirmed`) to a thread; idempotent by `client_message_id`.
    pub async fn post_system_message(
        &self,
        conversation: ConversationId,
        event: &str,
        body: &str,
        client_message_id: Option<&str>,
    ) -> Result<SendOutcome, ChatError> {
        validate_event(event)?;
        let body = text::sanitize_body(body)?;
        let client_message_id = match client_message_id {
            Some(id) => {
                text::validate_client_message_id(id)?;
                id.to_owned()
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        if !threads::is_thread(&self.pool, conversation).await? {
            return Err(ChatError::conversation_not_found());
        }
        let command = Command::PostSystem {
            event: event.to_owned(),
            body,
            client_message_id,
        };
        match self.dispatcher.dispatch(conversation, command).await? {
            Reply::Sent(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// The members of a conversation the caller takes part in, with their
    /// roles and (where receipts are shared) how far each has read: what
    /// "seen by 3 of 5" is counted from.
    pub async fn members(
        &self,
        caller: &UserId,
        conversation: ConversationId,
    ) -> Result<Vec<MemberView>, ChatError> {
        self.safety
            .check_limit(caller, crate::cluster::limits::LimitKind::Reads)
            .await?;
        threads::members(&self.pool, conversation, caller)
            .await?
            .ok_or_else(ChatError::conversation_not_found)
    }
}
