//! Messages: send, history, the read pointer, and typing signals.

use super::{ChatCore, page_limit, unexpected};
use crate::{
    actors::conversation::{Command, Reply, SendCommand, SendOutcome},
    cluster::limits::LimitKind,
    domain::{
        ChatError, ConversationId, UserId,
        model::{Message, Page, ReadState},
        text,
    },
    persistence::{
        conversations,
        messages::{self, PageDirection},
        notifications,
    },
};

/// Default and largest page of history.
const HISTORY_DEFAULT_LIMIT: i64 = 50;
const HISTORY_MAX_LIMIT: i64 = 100;

impl ChatCore {
    /// Sends a message: checks the body, the sender's standing and rate,
    /// then lets the conversation's actor store it. `created` is false for
    /// an idempotent repeat. The retry of a message that was stored gets the
    /// original whatever was refused since (a block, a suspension, a request
    /// still waiting, the rate limit — looked up only then, so sends cost no
    /// extra query), and a refused retry counts as no violation. Within the
    /// quota, a retry's unit is given back: a retry costs nothing.
    pub async fn send(
        &self,
        conversation: ConversationId,
        sender: &UserId,
        body: &str,
        client_message_id: &str,
        attachment_ids: &[uuid::Uuid],
    ) -> Result<SendOutcome, ChatError> {
        text::validate_client_message_id(client_message_id)?;
        // With files, a message may say nothing else.
        let body = if !attachment_ids.is_empty() && body.trim().is_empty() {
            String::new()
        } else {
            text::sanitize_body(body)?
        };
        let original = || async {
            let found = self
                .stored_original(conversation, sender, client_message_id)
                .await;
            if let Ok(Some(_)) = &found {
                metrics::counter!("parley_messages_deduplicated_total").increment(1);
            }
            found
        };
        if let Err(refused) = self.safety.check_may_post(sender).await {
            return original().await?.ok_or(refused);
        }
        let attachments = self
            .attachments_to_send(conversation, sender, attachment_ids)
            .await?;
        if let Err(retry_after) = self.safety.try_limit(sender, LimitKind::Messages).await {
            if let Some(stored) = original().await? {
                return Ok(stored);
            }
            return Err(self
                .safety
                .refused(sender, LimitKind::Messages, retry_after)
                .await);
        }
        let command = Command::Send(SendCommand {
            sender: sender.clone(),
            body,
            client_message_id: client_message_id.to_owned(),
            attachments,
        });
        let outcome = match self.dispatcher.dispatch(conversation, command).await {
            Ok(Reply::Sent(outcome)) => Ok(outcome),
            Ok(other) => Err(unexpected(other)),
            // Refused now (a block since, say): a retry still gets its original.
            Err(refused @ ChatError::Forbidden { .. }) => original().await?.ok_or(refused),
            Err(e) => Err(e),
        };
        match &outcome {
            Ok(o) if o.created => metrics::counter!("parley_messages_sent_total").increment(1),
            Ok(_) => {
                metrics::counter!("parley_messages_deduplicated_total").increment(1);
                self.safety.refund_limit(sender, LimitKind::Messages).await;
            }
            Err(e) => {
                metrics::counter!("parley_send_failures_total", "reason" => e.code()).increment(1)
            }
        }
        if let Ok(o) = &outcome
            && o.opened_request
        {
            let links = o.message.links.as_ref().map_or(0, |l| l.urls.len());
            self.safety
                .request_sent(sender, conversation.0, links)
                .await;
        }
        outcome
    }

    /// The message `sender` already stored under `client_message_id` in
    /// `conversation`, as a repeat's outcome; 409 when that id names a
    /// message of theirs in another conversation.
    async fn stored_original(
        &self,
        conversation: ConversationId,
        sender: &UserId,
        client_message_id: &str,
    ) -> Result<Option<SendOutcome>, ChatError> {
        match messages::find_by_client_id(&self.pool, sender, client_message_id).await? {
            Some(message) if message.conversation_id == conversation.0 => Ok(Some(SendOutcome {
                message,
                created: false,
                opened_request: false,
                accepted_request: false,
            })),
            Some(_) => Err(ChatError::client_message_id_reused()),
            None => Ok(None),
        }
    }

    /// A page of a conversation's messages by `seq`, always in ascending
    /// order: the newest, those `after` a seq (catching up), or those
    /// `before` one (scrolling back). Only participants may read.
    pub async fn history(
        &self,
        caller: &UserId,
        id: ConversationId,
        after: Option<i64>,
        before: Option<i64>,
        limit: Option<i64>,
    ) -> Result<Page<Message>, ChatError> {
        self.safety.check_limit(caller, LimitKind::Reads).await?;
        // Both: the messages between them, oldest first (the page after
        // `after`, ending before `before`).
        let (direction, until) = match (after, before) {
            (None, None) => (PageDirection::Latest, None),
            (Some(after), None) if after >= 0 => (PageDirection::After(after), None),
            (None, Some(before)) if before >= 0 => (PageDirection::Before(before), None),
            (Some(after), Some(before)) if after >= 0 && before >= 0 => {
                (PageDirection::After(after), Some(before))
            }
            _ => {
                return Err(ChatError::invalid(
                    "invalid_query",
                    "after and before must be zero or positive",
                ));
            }
        };
        let limit = page_limit(limit, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)?;
        if matches!(direction, PageDirection::After(_)) {
            // Catching up after a gap or a reconnect (the client algorithm in the README).
            metrics::counter!("parley_resync_requests_total", "kind" => "history_after")
                .increment(1);
        }
        if !conversations::is_participant(&self.pool, id, caller).await? {
            return Err(ChatError::conversation_not_found());
        }
        let mut page = messages::page(&self.pool, id, caller, direction, limit).await?;
        if let Some(until) = until
            && let Some(cut) = page.items.iter().position(|m| m.seq >= until)
        {
            page.items.truncate(cut);
            page.has_more = false;
        }
        let edge = match direction {
            PageDirection::After(_) => page.items.last(),
            _ => page.items.first(),
        };
        let next_cursor = page
            .has_more
            .then(|| edge.map(|m| m.seq.to_string()))
            .flatten();
        Ok(Page::new(page.items, next_cursor))
    }

    /// Moves `user`'s read pointer forward to `seq` (clamped to the last
    /// message). Once nothing is left unread, the conversation's
    /// `new_message` notification is read too.
    pub async fn mark_read(
        &self,
        conversation: ConversationId,
        user: &UserId,
        seq: i64,
    ) -> Result<ReadState, ChatError> {
        if seq < 0 {
            return Err(ChatError::invalid(
                "invalid_seq",
                "seq must be zero or positive",
            ));
        }
        let command = Command::MarkRead {
            user: user.clone(),
            seq,
        };
        let read = match self.dispatcher.dispatch(conversation, command).await? {
            Reply::Read(read) => read,
            other => return Err(unexpected(other)),
        };
        if read.unread_count == 0 {
            notifications::conversation_read(&self.pool, user, conversation.0).await?;
        }
        Ok(read)
    }

    /// Relays a typing signal to the other participants (throttled; nothing
    /// crosses a block). `not_found` unless `user` takes part. A live actor
    /// checks that itself; otherwise participation is checked (and counted
    /// as a read) before any actor is started, so that signals for other
    /// people's or made-up conversations load nothing.
    pub async fn typing(
        &self,
        conversation: ConversationId,
        user: &UserId,
        started: bool,
    ) -> Result<(), ChatError> {
        if !self.dispatcher.is_live(conversation) {
            self.safety.check_limit(user, LimitKind::Reads).await?;
            if !conversations::is_participant(&self.pool, conversation, user).await? {
                return Err(ChatError::conversation_not_found());
            }
        }
        let command = Command::Typing {
            user: user.clone(),
            started,
        };
        self.dispatcher
            .dispatch(conversation, command)
            .await
            .map(drop)
    }
}
