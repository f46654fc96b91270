//! Search: the messages a user can see that match what they typed.

use uuid::Uuid;

use super::{ChatCore, page_limit};
use crate::{
    cluster::limits::LimitKind,
    domain::{
        ChatError, UserId,
        model::Page,
        search::{HitConversation, SearchHit, SearchQuery, split_highlights},
    },
    persistence::{
        KeysetCursor,
        search::{self, HIGHLIGHT_START, HIGHLIGHT_STOP, Search},
    },
};

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 50;

/// What to search.
pub struct SearchRequest<'a> {
    pub query: &'a str,
    pub conversation: Option<Uuid>,
    pub include_archived: bool,
    pub cursor: Option<&'a str>,
    pub limit: Option<i64>,
}

impl ChatCore {
    /// Messages of `user`'s conversations (or of one) matching the query,
    /// newest first (see [`search::messages`] for what is left out). Asking
    /// about a conversation that is not theirs finds nothing.
    pub async fn search(
        &self,
        user: &UserId,
        request: &SearchRequest<'_>,
    ) -> Result<Page<SearchHit>, ChatError> {
        let query = SearchQuery::parse(request.query)?;
        let limit = page_limit(request.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
        let before = request.cursor.map(KeysetCursor::decode).transpose()?;
        self.safety.check_limit(user, LimitKind::Reads).await?;
        let Some(query) = query else {
            return Ok(Page::new(Vec::new(), None));
        };
        let (hits, has_more) = search::messages(
            &self.pool,
            &Search {
                user,
                query: &query,
                conversation: request.conversation,
                include_archived: request.include_archived,
                before,
                limit,
            },
        )
        .await?;
        let next_cursor = has_more
            .then(|| {
                hits.last().map(|h| {
                    KeysetCursor {
                        at: h.message.created_at,
                        id: h.message.id,
                    }
                    .encode()
                })
            })
            .flatten();
        let items = hits
            .into_iter()
            .map(|hit| {
                let (snippet, highlights) =
                    split_highlights(&hit.snippet, HIGHLIGHT_START, HIGHLIGHT_STOP);
                SearchHit {
                    conversation: HitConversation {
                        id: hit.message.conversation_id,
                        context_title: hit.context_title,
                        other_participant_id: hit.other_id,
                        other_participant_name: hit.other_name,
                    },
                    message: hit.message,
                    snippet,
                    highlights,
                }
            })
            .collect();
        Ok(Page::new(items, next_cursor))
    }
}
