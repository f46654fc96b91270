//! Full-text search of the messages a user can see (`messages.search`, a
//! generated `tsvector` with a GIN index; the `parley_search` configuration
//! of migration V14: `simple` words, accents folded).

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::{
    KeysetCursor, client,
    messages::{MESSAGE_COLUMNS, message_from_row},
    timed,
};
use crate::domain::{ChatError, UserId, model::Message, search::SearchQuery};

/// Marks a snippet's highlighted words (control characters never occur in a
/// message body, so they cannot be confused with its text).
pub const HIGHLIGHT_START: char = '\u{2}';
pub const HIGHLIGHT_STOP: char = '\u{3}';

/// One message found, with the conversation's display fields and the
/// snippet (highlights between [`HIGHLIGHT_START`] and [`HIGHLIGHT_STOP`]).
pub struct Hit {
    pub message: Message,
    pub context_title: Option<String>,
    /// The other participant of a direct conversation.
    pub other_id: Option<String>,
    pub other_name: Option<String>,
    pub snippet: String,
}

/// Where and what to search.
pub struct Search<'a> {
    pub user: &'a UserId,
    pub query: &'a SearchQuery,
    /// One conversation of the user's, or all of them.
    pub conversation: Option<Uuid>,
    /// Also archived conversations and those with someone the user blocked.
    pub include_archived: bool,
    /// The last hit of the previous page.
    pub before: Option<KeysetCursor>,
    pub limit: i64,
}

/// Messages matching, newest first: never redacted ones, never in a request
/// the user declined; archived conversations and direct ones with someone
/// they blocked only when asked; in a thread, never those of a member they
/// block. Whether there are more.
///
/// The plan is chosen here, not left to chance: the conversations the user
/// may search first, then their messages, conversation by conversation
/// (`OFFSET 0` keeps the word match out of that scan), then the match. The
/// cost is bounded by what the user can see, however common the words are in
/// the whole database; matching through the GIN index instead reads every
/// message of the database with the word (tens of thousands for a common
/// one) and was two to three times slower at five million messages.
pub async fn messages(pool: &Pool, search: &Search<'_>) -> Result<(Vec<Hit>, bool), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(&format!(
            "WITH q AS (
                 SELECT CASE WHEN $3::text = '' THEN websearch_to_tsquery('parley_search', $2)
                        ELSE websearch_to_tsquery('parley_search', $2)
                             && to_tsquery('parley_search', $3 || ':*') END AS query),
             blocked AS MATERIALIZED (SELECT blocked_id FROM user_blocks WHERE blocker_id = $1),
             visible AS MATERIALIZED (
                 SELECT p.conversation_id, c.kind = 'group' AS thread FROM conversation_participants p
                 JOIN conversations c ON c.id = p.conversation_id
                 WHERE p.user_id = $1 AND ($4::uuid IS NULL OR p.conversation_id = $4)
                   AND p.request_state <> 'declined'
                   AND ($5 OR (p.archived_at IS NULL AND (c.kind = 'group' OR NOT EXISTS (
                        SELECT 1 FROM blocked b
                        JOIN conversation_participants o ON o.user_id = b.blocked_id
                        WHERE o.conversation_id = p.conversation_id))))),
             mine AS (
                 SELECT m.* FROM messages m
                 WHERE m.conversation_id = ANY (ARRAY(SELECT conversation_id FROM visible))
                   AND m.redacted_at IS NULL
                   AND NOT (m.conversation_id = ANY (ARRAY(SELECT conversation_id FROM visible WHERE thread))
                            AND m.sender_id = ANY (ARRAY(SELECT blocked_id FROM blocked)))
                   AND ($6::timestamptz IS NULL OR (m.created_at, m.id) < ($6, $7))
                 OFFSET 0),
             hits AS (
                 SELECT * FROM mine WHERE search @@ (SELECT query FROM q)
                 ORDER BY created_at DESC, id DESC LIMIT $8)
             SELECT {MESSAGE_COLUMNS}, ts_headline('parley_search', body, (SELECT query FROM q),
                        'StartSel=\"\u{2}\", StopSel=\"\u{3}\", MaxWords=30, MinWords=10, MaxFragments=1'),
                    context_title, other_id, other_name
             FROM (
                 SELECT hits.*, COALESCE(ctx.title, c.context_title) AS context_title,
                        o.id AS other_id, o.display_name AS other_name
                 FROM hits
                 JOIN conversations c ON c.id = hits.conversation_id
                 LEFT JOIN users o ON o.id = CASE WHEN c.user_low = $1 THEN c.user_high ELSE c.user_low END
                 LEFT JOIN contexts ctx ON ctx.context_type = c.context_type AND ctx.context_id = c.context_id
             ) AS messages
             ORDER BY created_at DESC, id DESC"
        ))
        .await?;
    let prefix = search.query.prefix.as_deref().unwrap_or_default();
    let (at, id) = match search.before {
        Some(c) => (Some(c.at), Some(c.id)),
        None => (None, None),
    };
    let rows = timed(
        "search.messages",
        db.query(
            &stmt,
            &[
                &search.user.as_str(),
                &search.query.words,
                &prefix,
                &search.conversation,
                &search.include_archived,
                &at,
                &id,
                &(search.limit + 1),
            ],
        ),
    )
    .await?;
    let has_more = rows.len() as i64 > search.limit;
    let hits = rows
        .iter()
        .take(search.limit as usize)
        .map(|r| Hit {
            message: message_from_row(r, 0),
            snippet: r.get(11),
            context_title: r.get(12),
            other_id: r.get(13),
            other_name: r.get(14),
        })
        .collect();
    Ok((hits, has_more))
}
