//! Conversations: open (find or create), the inbox, one conversation, the
//! answer to a message request, mute and archive, and the sync feed.

use super::{ChatCore, page_limit, unexpected};
use crate::{
    actors::conversation::{Command, Reply},
    cluster::limits::LimitKind,
    domain::{
        ChatError, ConversationId, UserId,
        event::UnreadUpdate,
        model::{Conversation, ConversationContext, DirectPair, Page},
    },
    persistence::{
        KeysetCursor, contexts,
        conversations::{self, InboxFilter, ParticipantFlag, SyncCursor, SyncPage},
        users::{self, UserProfile},
    },
};

/// Default and largest page of the inbox.
/// The inbox's views (`GET /chat/conversations?filter=`).
const INBOX_FILTERS: [&str; 4] = ["inbox", "unread", "requests", "archived"];

/// The inbox filter as the OpenAPI document states it.
pub fn inbox_filter_schema() -> utoipa::openapi::Object {
    crate::domain::schema::one_of(
        &INBOX_FILTERS,
        "`inbox` (default), `unread`, `requests` (message requests waiting for you) or `archived`",
    )
}

const INBOX_DEFAULT_LIMIT: i64 = 20;
const INBOX_MAX_LIMIT: i64 = 100;
/// Default and largest number of conversations in one sync answer.
const SYNC_DEFAULT_LIMIT: i64 = 500;
const SYNC_MAX_LIMIT: i64 = 500;

impl ChatCore {
    /// Finds or creates the direct conversation of `caller` with
    /// `participant` in `context`; true when it was created. Finding is free;
    /// only starting a new conversation is limited and refused to suspended
    /// users. A context must be registered for both users (its registered
    /// title and subtitle are used), and some roles may only start
    /// conversations inside one.
    pub async fn open_direct(
        &self,
        caller: &UserProfile,
        participant: &str,
        context: Option<&ConversationContext>,
    ) -> Result<(Conversation, bool), ChatError> {
        let participant = UserId::parse(participant)?;
        let pair = DirectPair::new(caller.id.clone(), participant.clone())?;
        let context = match context {
            Some(context) => Some(self.registered_context(context, &pair).await?),
            None if self.require_context_for.contains(&caller.role) => {
                return Err(ChatError::forbidden(
                    "context_required",
                    "you can start a conversation only about an application or booking (a context)",
                ));
            }
            None => None,
        };
        let (id, created) =
            match conversations::find_direct(&self.pool, &pair, context.as_ref()).await? {
                Some(existing) => (existing, false),
                None => {
                    self.safety.check_may_post(&caller.id).await?;
                    // Limited before the lookup: probing which ids exist is slow.
                    self.safety
                        .check_limit(&caller.id, LimitKind::NewConversations)
                        .await?;
                    if users::find(&self.pool, &participant).await?.is_none() {
                        return Err(ChatError::NotFound {
                            what: "participant",
                        });
                    }
                    conversations::find_or_create_direct(
                        &self.pool,
                        &caller.id,
                        &pair,
                        context.as_ref(),
                    )
                    .await?
                }
            };
        let view = conversations::view_for_user(&self.pool, id, &caller.id)
            .await?
            .ok_or_else(|| ChatError::internal(format!("conversation {id} vanished")))?;
        Ok((view, created))
    }

    /// The registered context a creation request names, if both participants
    /// may talk in it (403 otherwise), with its registered banner.
    async fn registered_context(
        &self,
        requested: &ConversationContext,
        pair: &DirectPair,
    ) -> Result<ConversationContext, ChatError> {
        requested.validate()?;
        let registered = contexts::find(&self.pool, &requested.kind, &requested.id).await?;
        let allowed = registered.as_ref().is_some_and(|r| {
            [&pair.low, &pair.high]
                .iter()
                .all(|user| r.allowed_user_ids.iter().any(|id| id == user.as_str()))
        });
        match registered {
            Some(r) if allowed => Ok(ConversationContext {
                kind: r.kind,
                id: r.id,
                title: r.title,
                subtitle: r.subtitle,
            }),
            _ => Err(ChatError::forbidden(
                "context_not_allowed",
                "that context is not registered for both of you",
            )),
        }
    }

    /// The caller's conversations, most recent activity first: `filter` is
    /// `inbox` (default), `unread`, `requests` or `archived`.
    pub async fn inbox(
        &self,
        caller: &UserId,
        filter: Option<&str>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<Conversation>, ChatError> {
        self.safety.check_limit(caller, LimitKind::Reads).await?;
        let filter = match filter {
            None | Some("inbox") => InboxFilter::Inbox,
            Some("unread") => InboxFilter::Unread,
            Some("requests") => InboxFilter::Requests,
            Some("archived") => InboxFilter::Archived,
            Some(_) => {
                return Err(ChatError::invalid(
                    "invalid_filter",
                    "filter must be one of: inbox, unread, requests, archived",
                ));
            }
        };
        let cursor = cursor.map(KeysetCursor::decode).transpose()?;
        let limit = page_limit(limit, INBOX_DEFAULT_LIMIT, INBOX_MAX_LIMIT)?;
        let page = conversations::inbox(&self.pool, caller, filter, cursor, limit).await?;
        Ok(Page::new(page.items, page.next_cursor.map(|c| c.encode())))
    }

    /// One conversation the caller takes part in (`not_found` otherwise).
    pub async fn conversation(
        &self,
        caller: &UserId,
        id: ConversationId,
    ) -> Result<Conversation, ChatError> {
        self.safety.check_limit(caller, LimitKind::Reads).await?;
        self.view(caller, id).await
    }

    /// The caller's view of a conversation, or `not_found`.
    async fn view(&self, caller: &UserId, id: ConversationId) -> Result<Conversation, ChatError> {
        conversations::view_for_user(&self.pool, id, caller)
            .await?
            .ok_or_else(ChatError::conversation_not_found)
    }

    /// The caller accepts (or declines) the message request made to them;
    /// a declined requester who keeps making unwelcome requests is flagged.
    pub async fn answer_request(
        &self,
        caller: &UserId,
        id: ConversationId,
        accept: bool,
    ) -> Result<Conversation, ChatError> {
        let command = Command::Respond {
            user: caller.clone(),
            accept,
        };
        let requesters = match self.dispatcher.dispatch(id, command).await? {
            Reply::Responded(requesters) => requesters,
            other => return Err(unexpected(other)),
        };
        if !accept {
            for requester in &requesters {
                self.safety.request_declined(requester, id.0).await;
            }
        }
        self.view(caller, id).await
    }

    /// Mutes or archives (or the reverse) a conversation for the caller. An
    /// archived conversation leaves the caller's unread badge at once.
    pub async fn set_flag(
        &self,
        caller: &UserId,
        id: ConversationId,
        flag: ParticipantFlag,
        on: bool,
    ) -> Result<Conversation, ChatError> {
        let (unread_count, last_read_seq) =
            conversations::set_flag(&self.pool, id, caller, flag, on)
                .await?
                .ok_or_else(ChatError::conversation_not_found)?;
        if flag == ParticipantFlag::Archived {
            let command = Command::SetArchived {
                user: caller.clone(),
                archived: on,
                auto: false,
            };
            self.dispatcher.dispatch(id, command).await?;
            let update = UnreadUpdate {
                conversation_id: id.0,
                unread_count,
                last_read_seq,
                in_badge: !on,
                removed: false,
            };
            self.bus.publish_unread(caller, update);
        }
        self.view(caller, id).await
    }

    /// Every conversation of the caller that changed since the cursor.
    pub async fn sync(
        &self,
        caller: &UserId,
        since: Option<&str>,
        limit: Option<i64>,
    ) -> Result<SyncPage, ChatError> {
        self.safety.check_limit(caller, LimitKind::Reads).await?;
        let since = since.map(SyncCursor::decode).transpose()?;
        let limit = page_limit(limit, SYNC_DEFAULT_LIMIT, SYNC_MAX_LIMIT)?;
        metrics::counter!("parley_resync_requests_total", "kind" => "sync").increment(1);
        conversations::changed_since(&self.pool, caller, since, limit).await
    }
}
