//! The `conversations` and `conversation_participants` tables: find-or-create
//! of a direct conversation, the caller's view of one conversation, the inbox,
//! and the state a conversation actor rebuilds itself from.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{
    KeysetCursor, audit,
    batch::{BatchJob, BatchLimits},
    client,
    messages::message_from_row,
    timed,
};
use crate::domain::{
    ChatError, ConversationId, UserId,
    model::{Conversation, ConversationContext, DirectPair, RequestState, UserSummary},
};

/// Columns of a conversation as seen by participant `p` (with the other user
/// `o` and the last message `m`), in the order [`view_from_row`] reads them.
const VIEW_COLUMNS: &str = concat!("c.id, c.kind, c.context_type, c.context_id,
    COALESCE(ctx.title, c.context_title), COALESCE(ctx.subtitle, c.context_subtitle), c.last_seq, c.last_message_at, c.created_at,
    p.unread_count, p.last_read_seq, p.activity_at,
    o.id, o.display_name, o.role,
    m.id, m.conversation_id, m.seq, m.sender_id, m.kind, m.body, m.client_message_id, m.created_at, m.metadata, m.redacted_at IS NOT NULL,
    ", crate::persistence::messages::attachments_of!("m.id"), ",
    CASE WHEN COALESCE((me.settings->>'readReceipts')::boolean, false)
          AND COALESCE((o.settings->>'readReceipts')::boolean, false)
          AND NOT ", blocked_between!("me.id", "o.id"), "
         THEN op.last_read_seq END,
    p.request_state, p.muted_at IS NOT NULL, p.archived_at IS NOT NULL, c.member_count,
    o.verified, op.request_state");

/// Joins for [`VIEW_COLUMNS`]; `me` is the caller, `o` and `op` the other
/// user and their participant row in a direct conversation (none in a
/// thread), `m` the last message the caller may see (in a thread, not one
/// of a member the caller blocks).
const VIEW_FROM: &str = concat!("conversation_participants p
    JOIN conversations c ON c.id = p.conversation_id
    JOIN users me ON me.id = p.user_id
    LEFT JOIN users o ON o.id = CASE WHEN c.user_low = p.user_id THEN c.user_high ELSE c.user_low END
    LEFT JOIN conversation_participants op ON op.conversation_id = c.id AND op.user_id = o.id
    LEFT JOIN LATERAL (
        SELECT * FROM messages lm WHERE lm.conversation_id = c.id AND lm.seq <= c.last_seq
          AND NOT (c.kind = 'group' AND ", blocks!("p.user_id", "lm.sender_id"), ")
        ORDER BY lm.seq DESC LIMIT 1) m ON true
    LEFT JOIN contexts ctx ON ctx.context_type = c.context_type AND ctx.context_id = c.context_id");

/// Index of `p.changed_tx`, selected after [`VIEW_COLUMNS`] by the sync query.
const SYNC_CHANGED_TX_COLUMN: usize = 33;

/// Who sees a conversation in lists: once it has a message, or if they started it.
const VISIBLE: &str = "(c.last_seq > 0 OR c.created_by = p.user_id)";

/// Which slice of the caller's conversations to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxFilter {
    /// Conversations with activity (or that the caller started), except
    /// message requests waiting for the caller and archived ones.
    Inbox,
    /// The inbox, only those with unread messages.
    Unread,
    /// Message requests waiting for the caller's answer.
    Requests,
    /// Conversations the caller archived.
    Archived,
}

impl InboxFilter {
    fn as_str(self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Unread => "unread",
            Self::Requests => "requests",
            Self::Archived => "archived",
        }
    }
}

/// One page of the inbox and the cursor of its last row.
pub struct InboxPage {
    pub items: Vec<Conversation>,
    pub next_cursor: Option<KeysetCursor>,
}

/// The direct conversation of `pair` in `context`, if it exists.
pub async fn find_direct(
    pool: &Pool,
    pair: &DirectPair,
    context: Option<&ConversationContext>,
) -> Result<Option<ConversationId>, ChatError> {
    let db = client(pool).await?;
    find_direct_on(&db, pair, context).await
}

/// [`find_direct`] on a given connection.
async fn find_direct_on(
    db: &impl GenericClient,
    pair: &DirectPair,
    context: Option<&ConversationContext>,
) -> Result<Option<ConversationId>, ChatError> {
    let (ctx_type, ctx_id) = context.map_or(("", ""), |c| (c.kind.as_str(), c.id.as_str()));
    let stmt = db
        .prepare_cached(
            "SELECT id FROM conversations
             WHERE kind = 'direct' AND user_low = $1 AND user_high = $2 AND context_type = $3 AND context_id = $4",
        )
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&pair.low.as_str(), &pair.high.as_str(), &ctx_type, &ctx_id];
    let row = timed("conversations.find", db.query_opt(&stmt, &params)).await?;
    Ok(row.map(|r| ConversationId(r.get(0))))
}

/// Finds the direct conversation of `pair` in `context`, or creates it with
/// both participants. Returns the id and whether it was created. Safe under
/// concurrent calls: the unique index decides, the loser reads the winner's row.
pub async fn find_or_create_direct(
    pool: &Pool,
    creator: &UserId,
    pair: &DirectPair,
    context: Option<&ConversationContext>,
) -> Result<(ConversationId, bool), ChatError> {
    let (ctx_type, ctx_id) = context.map_or(("", ""), |c| (c.kind.as_str(), c.id.as_str()));
    let (title, subtitle) = context.map_or((None, None), |c| {
        (c.title.as_deref(), c.subtitle.as_deref())
    });
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO conversations
               (id, kind, user_low, user_high, context_type, context_id, context_title, context_subtitle, created_by)
             VALUES ($1, 'direct', $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .await?;
    let new_id = ConversationId::new();
    let inserted = timed(
        "conversations.insert",
        tx.query_opt(
            &insert,
            &[
                &new_id.0,
                &pair.low.as_str(),
                &pair.high.as_str(),
                &ctx_type,
                &ctx_id,
                &title,
                &subtitle,
                &creator.as_str(),
            ],
        ),
    )
    .await?;
    if inserted.is_some() {
        let participants = tx
            .prepare_cached(
                "INSERT INTO conversation_participants (conversation_id, user_id, role_snapshot)
                 SELECT $1, id, role FROM users WHERE id IN ($2, $3)",
            )
            .await?;
        tx.execute(
            &participants,
            &[&new_id.0, &pair.low.as_str(), &pair.high.as_str()],
        )
        .await?;
        let other = if &pair.low == creator {
            &pair.high
        } else {
            &pair.low
        };
        audit::record(
            &tx,
            &audit::AuditEntry {
                actor: Some(creator.as_str()),
                action: "conversation.created",
                target_type: "user",
                target_id: other.as_str(),
                conversation: Some(new_id.0),
                details: serde_json::json!({ "contextType": ctx_type, "contextId": ctx_id }),
            },
        )
        .await?;
        tx.commit().await?;
        return Ok((new_id, true));
    }
    tx.rollback().await?;
    // Same connection: holding one while waiting for a second can exhaust the pool.
    let existing = find_direct_on(&db, pair, context)
        .await?
        .ok_or_else(|| ChatError::internal("conversation vanished after a conflicting insert"))?;
    Ok((existing, false))
}

/// The conversation as `user` sees it; `None` when it does not exist or
/// `user` is not a participant (callers answer 404 either way).
pub async fn view_for_user(
    pool: &Pool,
    id: ConversationId,
    user: &UserId,
) -> Result<Option<Conversation>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {VIEW_COLUMNS} FROM {VIEW_FROM} WHERE p.conversation_id = $1 AND p.user_id = $2"
        ))
        .await?;
    let row = timed(
        "conversations.view",
        db.query_opt(&stmt, &[&id.0, &user.as_str()]),
    )
    .await?;
    Ok(row.as_ref().map(view_from_row))
}

/// Whether `message` belongs to the conversation.
pub async fn has_message(
    pool: &Pool,
    id: ConversationId,
    message: Uuid,
) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1 AND conversation_id = $2)",
        )
        .await?;
    Ok(timed(
        "conversations.has_message",
        db.query_one(&stmt, &[&message, &id.0]),
    )
    .await?
    .get(0))
}

/// Whether `user` takes part in the conversation.
pub async fn is_participant(
    pool: &Pool,
    id: ConversationId,
    user: &UserId,
) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM conversation_participants WHERE conversation_id = $1 AND user_id = $2)",
        )
        .await?;
    let row = timed(
        "conversations.is_participant",
        db.query_one(&stmt, &[&id.0, &user.as_str()]),
    )
    .await?;
    Ok(row.get(0))
}

/// A page of `user`'s conversations, most recent activity first. A
/// conversation without messages is listed only for the user who started it,
/// so nobody finds empty threads from strangers in their inbox.
pub async fn inbox(
    pool: &Pool,
    user: &UserId,
    filter: InboxFilter,
    after: Option<KeysetCursor>,
    limit: i64,
) -> Result<InboxPage, ChatError> {
    let db = client(pool).await?;
    let filter = filter.as_str();
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {VIEW_COLUMNS} FROM {VIEW_FROM}
             WHERE p.user_id = $1
               AND {VISIBLE}
               AND CASE $2::text
                   WHEN 'requests' THEN p.request_state = 'pending'
                   WHEN 'archived' THEN p.archived_at IS NOT NULL
                   ELSE p.request_state NOT IN ('pending', 'declined') AND p.archived_at IS NULL
                        AND ($2 <> 'unread' OR p.unread_count > 0) END
               AND ($3::timestamptz IS NULL OR (p.activity_at, p.conversation_id) < ($3, $4))
             ORDER BY p.activity_at DESC, p.conversation_id DESC
             LIMIT $5"
        ))
        .await?;
    let (cursor_at, cursor_id) = after.map_or((None, None), |c| (Some(c.at), Some(c.id)));
    let rows = timed(
        "conversations.inbox",
        db.query(
            &stmt,
            &[
                &user.as_str(),
                &filter,
                &cursor_at,
                &cursor_id,
                &(limit + 1),
            ],
        ),
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next_cursor = if has_more {
        rows.last().map(|r| KeysetCursor {
            at: r.get(11),
            id: r.get(0),
        })
    } else {
        None
    };
    Ok(InboxPage {
        items: rows.iter().map(view_from_row).collect(),
        next_cursor,
    })
}

/// Position in the stream of changes to a user's conversations: a
/// transaction id watermark (see the V2 migration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncCursor(pub i64);

impl SyncCursor {
    /// Opaque text form: `t<transaction id>`.
    pub fn encode(&self) -> String {
        format!("t{}", self.0)
    }

    /// Only what [`SyncCursor::encode`] writes is read back.
    pub fn decode(raw: &str) -> Result<Self, ChatError> {
        let cursor = raw
            .strip_prefix('t')
            .and_then(|n| n.parse().ok())
            .filter(|n: &i64| *n >= 0)
            .map(Self)
            .ok_or_else(|| {
                ChatError::invalid("invalid_cursor", "the cursor is not one this server issued")
            })?;
        super::exactly_as_issued(raw, cursor, Self::encode)
    }

    /// The cursor as the OpenAPI document states it.
    pub fn schema() -> utoipa::openapi::Object {
        crate::domain::schema::matching(
            "^t(0|[1-9][0-9]{0,17})$",
            19,
            "The `cursor` of the previous sync; absent for a full sync",
        )
    }
}

/// The conversations that changed since a cursor, and the cursor to use next.
pub struct SyncPage {
    pub items: Vec<Conversation>,
    /// Threads the user was removed from since the cursor.
    pub removed: Vec<Uuid>,
    pub cursor: SyncCursor,
    pub has_more: bool,
}

/// Every conversation of `user` whose view changed at or after `since` (all of
/// them without a cursor). Runs in one repeatable-read snapshot: the next
/// cursor is that snapshot's xmin, so a change still in flight now is
/// returned next time rather than skipped. Under concurrent writes a
/// conversation may be returned twice; clients upsert by id.
pub async fn changed_since(
    pool: &Pool,
    user: &UserId,
    since: Option<SyncCursor>,
    limit: i64,
) -> Result<SyncPage, ChatError> {
    let mut db = client(pool).await?;
    let tx = super::snapshot(&mut db).await?;
    let watermark: i64 = tx
        .query_one(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            &[],
        )
        .await?
        .get(0);
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {VIEW_COLUMNS}, p.changed_tx FROM {VIEW_FROM}
             WHERE p.user_id = $1 AND {VISIBLE} AND p.changed_tx >= $2
             ORDER BY p.changed_tx, p.conversation_id
             LIMIT $3"
        ))
        .await?;
    let from = since.map_or(0, |c| c.0);
    let rows = timed(
        "conversations.sync",
        tx.query(&stmt, &[&user.as_str(), &from, &(limit + 1)]),
    )
    .await?;
    // Without a cursor the client replaces its whole list: nothing to drop.
    let removed = match since {
        Some(since) => {
            let departures = tx
                .prepare_cached(
                    "SELECT conversation_id FROM thread_departures
                     WHERE user_id = $1 AND changed_tx >= $2 ORDER BY changed_tx LIMIT 500",
                )
                .await?;
            timed(
                "conversations.sync_departures",
                tx.query(&departures, &[&user.as_str(), &since.0]),
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
        }
        None => Vec::new(),
    };
    tx.commit().await?;
    let has_more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    // A full page continues from its last change; otherwise from the watermark.
    let cursor = match rows.last() {
        Some(last) if has_more => SyncCursor(last.get(SYNC_CHANGED_TX_COLUMN)),
        _ => SyncCursor(watermark),
    };
    Ok(SyncPage {
        items: rows.iter().map(view_from_row).collect(),
        removed,
        cursor,
        has_more,
    })
}

/// Which of `candidates` are in contact with `user` (the people whose
/// presence `user` may see): they share a conversation that neither of them
/// holds as a pending or declined request, and that has messages or a
/// context the platform registered for both (a thread, an application);
/// never an empty conversation someone merely opened; and no block stands
/// between them either way.
pub async fn contacts_among(
    pool: &Pool,
    user: &UserId,
    candidates: &[UserId],
) -> Result<Vec<UserId>, ChatError> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(concat!(
            "SELECT DISTINCT other.user_id FROM conversation_participants mine
             JOIN conversation_participants other ON other.conversation_id = mine.conversation_id
             JOIN conversations c ON c.id = mine.conversation_id
             WHERE mine.user_id = $1 AND other.user_id = ANY($2) AND other.user_id <> $1
               AND mine.request_state IN ('none', 'accepted') AND other.request_state IN ('none', 'accepted')
               AND (c.last_seq > 0 OR c.context_type <> '')
               AND NOT ",
            blocked_between!("$1", "other.user_id")
        ))
        .await?;
    let ids: Vec<&str> = candidates.iter().map(UserId::as_str).collect();
    let rows = timed(
        "conversations.contacts_among",
        db.query(&stmt, &[&user.as_str(), &ids]),
    )
    .await?;
    rows.iter().map(|r| UserId::parse(r.get(0))).collect()
}

/// Whether the two users already talk: a conversation between them, other
/// than `except`, with messages and no request pending or declined.
pub async fn connected(
    pool: &Pool,
    a: &UserId,
    b: &UserId,
    except: ConversationId,
) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT EXISTS (
                 SELECT 1 FROM conversation_participants pa
                 JOIN conversation_participants pb ON pb.conversation_id = pa.conversation_id AND pb.user_id = $2
                 JOIN conversations c ON c.id = pa.conversation_id
                 WHERE pa.user_id = $1 AND c.id <> $3 AND c.last_seq > 0
                   AND pa.request_state IN ('none', 'accepted') AND pb.request_state IN ('none', 'accepted'))",
        )
        .await?;
    let row = timed(
        "conversations.connected",
        db.query_one(&stmt, &[&a.as_str(), &b.as_str(), &except.0]),
    )
    .await?;
    Ok(row.get(0))
}

/// Answers a message request for `user` and records it in the audit log.
pub async fn set_request_state(
    pool: &Pool,
    id: ConversationId,
    user: &UserId,
    state: RequestState,
) -> Result<(), ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE conversation_participants
             SET request_state = $3, changed_tx = pg_current_xact_id()::text::bigint
             WHERE conversation_id = $1 AND user_id = $2",
        )
        .await?;
    timed(
        "conversations.set_request_state",
        tx.execute(&stmt, &[&id.0, &user.as_str(), &state.as_str()]),
    )
    .await?;
    let action = format!("request.{}", state.as_str());
    audit::record(
        &tx,
        &audit::AuditEntry {
            actor: Some(user.as_str()),
            action: &action,
            target_type: "conversation",
            target_id: &id.to_string(),
            conversation: Some(id.0),
            details: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A per-user flag on a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParticipantFlag {
    /// No notifications for new messages.
    Muted,
    /// Out of the inbox and the badge, and no notifications, until unarchived.
    Archived,
}

/// Sets or clears `flag` for `user`; returns their unread count and read
/// pointer, or `None` when `user` is not a participant. Archiving is audited.
pub async fn set_flag(
    pool: &Pool,
    id: ConversationId,
    user: &UserId,
    flag: ParticipantFlag,
    on: bool,
) -> Result<Option<(i64, i64)>, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let sql = match flag {
        ParticipantFlag::Muted => {
            "UPDATE conversation_participants
             SET muted_at = CASE WHEN $3 THEN COALESCE(muted_at, now()) END,
                 changed_tx = pg_current_xact_id()::text::bigint
             WHERE conversation_id = $1 AND user_id = $2 RETURNING unread_count, last_read_seq"
        }
        ParticipantFlag::Archived => {
            "UPDATE conversation_participants
             SET archived_at = CASE WHEN $3 THEN COALESCE(archived_at, now()) END,
                 archive_reason = CASE WHEN $3 THEN 'user' END,
                 changed_tx = pg_current_xact_id()::text::bigint
             WHERE conversation_id = $1 AND user_id = $2 RETURNING unread_count, last_read_seq"
        }
    };
    let stmt = tx.prepare_cached(sql).await?;
    let row = timed(
        "conversations.set_flag",
        tx.query_opt(&stmt, &[&id.0, &user.as_str(), &on]),
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if flag == ParticipantFlag::Archived {
        audit::record(
            &tx,
            &audit::AuditEntry {
                actor: Some(user.as_str()),
                action: if on {
                    "conversation.archived"
                } else {
                    "conversation.unarchived"
                },
                target_type: "conversation",
                target_id: &id.to_string(),
                conversation: Some(id.0),
                details: serde_json::json!({}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some((i64::from(row.get::<_, i32>(0)), row.get(1))))
}

/// Loading each connecting user's unread count per conversation (non-zero,
/// not archived), as a batched job: one query per burst of connects.
pub struct UnreadCounts;

impl BatchJob for UnreadCounts {
    type Item = UserId;
    type Output = Vec<(Uuid, i64)>;
    const NAME: &'static str = "unread_counts";
    const LIMITS: BatchLimits = BatchLimits::PER_CONNECT;

    async fn run_batch(
        &self,
        pool: &Pool,
        users: &[UserId],
    ) -> Result<Vec<Vec<(Uuid, i64)>>, ChatError> {
        let db = client(pool).await?;
        let stmt = db
            .prepare_cached(
                "SELECT user_id, conversation_id, unread_count FROM conversation_participants
                 WHERE user_id = ANY($1) AND unread_count > 0 AND archived_at IS NULL",
            )
            .await?;
        let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let rows = timed("conversations.unread_counts", db.query(&stmt, &[&ids])).await?;
        let mut by_user: std::collections::HashMap<String, Vec<(Uuid, i64)>> =
            std::collections::HashMap::new();
        for row in &rows {
            by_user
                .entry(row.get(0))
                .or_default()
                .push((row.get(1), i64::from(row.get::<_, i32>(2))));
        }
        Ok(users
            .iter()
            .map(|user| by_user.get(user.as_str()).cloned().unwrap_or_default())
            .collect())
    }
}

/// What a conversation actor needs to serialise sends and reads.
#[derive(Clone, Debug)]
pub struct ConversationSnapshot {
    /// The owner epoch this actor took: its message writes carry it, and
    /// fail once another actor has taken a newer one.
    pub owner_epoch: i64,
    pub last_seq: i64,
    /// Registered as pre-accepted by its context: never a message request.
    pub pre_accepted: bool,
    /// A context thread (`group`), not a direct conversation.
    pub group: bool,
    /// The blocks between its participants, as (blocker, blocked).
    pub blocks: Vec<(UserId, UserId)>,
    pub participants: Vec<ParticipantSnapshot>,
}

/// One participant's read state.
#[derive(Clone, Debug)]
pub struct ParticipantSnapshot {
    pub user_id: UserId,
    pub last_read_seq: i64,
    pub unread_count: i64,
    pub last_read_at: Option<DateTime<Utc>>,
    pub request_state: RequestState,
    /// Archived conversations do not count towards the unread badge.
    pub archived: bool,
    /// Archived for being idle: the next message brings it back.
    pub auto_archived: bool,
    /// Their role in a context thread (`None` in a direct conversation).
    pub thread_role: Option<String>,
}

/// Takes a conversation over for a new actor: the next owner epoch (which
/// fences off any older actor of it, on this node or another, from writing
/// messages), then its live state; `None` when it does not exist. Taking the
/// epoch waits for a write of the previous owner that is in flight, so the
/// state read afterwards includes it. The next `seq` follows the highest
/// stored message, so an actor rebuilt after a rival writer took a `seq`
/// resumes after it instead of colliding again.
pub async fn take_over(
    pool: &Pool,
    id: ConversationId,
) -> Result<Option<ConversationSnapshot>, ChatError> {
    let db = client(pool).await?;
    let epoch = db
        .prepare_cached(
            "UPDATE conversations SET owner_epoch = owner_epoch + 1 WHERE id = $1 RETURNING owner_epoch",
        )
        .await?;
    let Some(epoch) = timed("conversations.take_over", db.query_opt(&epoch, &[&id.0])).await?
    else {
        return Ok(None);
    };
    let conv = db
        .prepare_cached(
            "SELECT GREATEST(c.last_seq, COALESCE((SELECT max(seq) FROM messages WHERE conversation_id = c.id), 0)),
                    c.pre_accepted OR COALESCE((SELECT ctx.pre_accepted FROM contexts ctx
                 WHERE ctx.context_type = c.context_type AND ctx.context_id = c.context_id), false),
                    c.kind = 'group'
             FROM conversations c WHERE c.id = $1",
        )
        .await?;
    let Some(row) = timed("conversations.snapshot", db.query_opt(&conv, &[&id.0])).await? else {
        return Ok(None);
    };
    let parts = db
        .prepare_cached(
            "SELECT user_id, last_read_seq, unread_count, last_read_at, request_state, archived_at IS NOT NULL,
                    COALESCE(archive_reason = 'auto', false), thread_role
             FROM conversation_participants WHERE conversation_id = $1 ORDER BY user_id",
        )
        .await?;
    let rows = timed("conversations.snapshot", db.query(&parts, &[&id.0])).await?;
    let participants = rows
        .iter()
        .map(|r| {
            Ok(ParticipantSnapshot {
                user_id: UserId::parse(r.get(0))?,
                last_read_seq: r.get(1),
                unread_count: i64::from(r.get::<_, i32>(2)),
                last_read_at: r.get(3),
                request_state: RequestState::parse(r.get(4)),
                archived: r.get(5),
                auto_archived: r.get(6),
                thread_role: r.get(7),
            })
        })
        .collect::<Result<Vec<_>, ChatError>>()?;
    let blocks = blocks_among_on(&db, id).await?;
    Ok(Some(ConversationSnapshot {
        owner_epoch: epoch.get(0),
        last_seq: row.get(0),
        pre_accepted: row.get(1),
        group: row.get(2),
        blocks,
        participants,
    }))
}

/// The blocks between the participants of `id`, as (blocker, blocked).
pub async fn blocks_among(
    pool: &Pool,
    id: ConversationId,
) -> Result<Vec<(UserId, UserId)>, ChatError> {
    let db = client(pool).await?;
    blocks_among_on(&db, id).await
}

async fn blocks_among_on(
    db: &impl GenericClient,
    id: ConversationId,
) -> Result<Vec<(UserId, UserId)>, ChatError> {
    let stmt = db
        .prepare_cached(
            "SELECT b.blocker_id, b.blocked_id FROM user_blocks b
             JOIN conversation_participants p1 ON p1.conversation_id = $1 AND p1.user_id = b.blocker_id
             JOIN conversation_participants p2 ON p2.conversation_id = $1 AND p2.user_id = b.blocked_id",
        )
        .await?;
    timed("conversations.blocks_among", db.query(&stmt, &[&id.0]))
        .await?
        .iter()
        .map(|r| Ok((UserId::parse(r.get(0))?, UserId::parse(r.get(1))?)))
        .collect()
}

fn view_from_row(r: &Row) -> Conversation {
    let ctx_type: String = r.get(2);
    let context = (!ctx_type.is_empty()).then(|| ConversationContext {
        kind: ctx_type,
        id: r.get(3),
        title: r.get(4),
        subtitle: r.get(5),
    });
    let last_message = r
        .get::<_, Option<Uuid>>(15)
        .map(|_| message_from_row(r, 15));
    Conversation {
        id: r.get(0),
        kind: r.get(1),
        context,
        last_seq: r.get(6),
        last_message_at: r.get(7),
        created_at: r.get(8),
        unread_count: i64::from(r.get::<_, i32>(9)),
        last_read_seq: r.get(10),
        other_participant: r.get::<_, Option<String>>(12).map(|id| UserSummary {
            id,
            name: r.get(13),
            role: r.get(14),
            verified: r.get(31),
        }),
        member_count: i64::from(r.get::<_, i32>(30)),
        last_message,
        other_last_read_seq: r.get(26),
        request_state: r.get(27),
        other_request_state: r.get(32),
        muted: r.get(28),
        archived: r.get(29),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_cursors_round_trip_and_reject_garbage() {
        assert_eq!(
            SyncCursor::decode(&SyncCursor(42).encode()).unwrap(),
            SyncCursor(42)
        );
        for bad in ["", "42", "t", "t-1", "tx"] {
            assert_eq!(
                SyncCursor::decode(bad).unwrap_err().code(),
                "invalid_cursor"
            );
        }
    }
}

/// A conversation's legal hold, as admins see it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub conversation_id: Uuid,
    pub held_at: chrono::DateTime<chrono::Utc>,
    pub held_by: String,
    pub reason: String,
}

/// Puts `conversation` on hold (or changes the reason of its hold), with
/// the audit record, in one transaction; `None` when there is no such
/// conversation.
pub async fn hold(
    pool: &Pool,
    conversation: Uuid,
    admin: &UserId,
    reason: &str,
) -> Result<Option<Hold>, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE conversations SET held_at = COALESCE(held_at, now()), held_by = $2, hold_reason = $3
             WHERE id = $1 RETURNING held_at",
        )
        .await?;
    let Some(row) = timed(
        "conversations.hold",
        tx.query_opt(&stmt, &[&conversation, &admin.as_str(), &reason]),
    )
    .await?
    else {
        return Ok(None);
    };
    super::audit::record(
        &tx,
        &super::audit::AuditEntry {
            actor: Some(admin.as_str()),
            action: "conversation.held",
            target_type: "conversation",
            target_id: &conversation.to_string(),
            conversation: Some(conversation),
            details: serde_json::json!({ "reason": reason }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Hold {
        conversation_id: conversation,
        held_at: row.get(0),
        held_by: admin.to_string(),
        reason: reason.to_owned(),
    }))
}

/// Releases `conversation`'s hold, audited; false when it was not held.
pub async fn release(pool: &Pool, conversation: Uuid, admin: &UserId) -> Result<bool, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE conversations SET held_at = NULL, held_by = NULL, hold_reason = NULL
             WHERE id = $1 AND held_at IS NOT NULL",
        )
        .await?;
    if timed("conversations.release", tx.execute(&stmt, &[&conversation])).await? == 0 {
        return Ok(false);
    }
    super::audit::record(
        &tx,
        &super::audit::AuditEntry {
            actor: Some(admin.as_str()),
            action: "conversation.released",
            target_type: "conversation",
            target_id: &conversation.to_string(),
            conversation: Some(conversation),
            details: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// `conversation`'s hold, if it is held.
pub async fn hold_of(pool: &Pool, conversation: Uuid) -> Result<Option<Hold>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT held_at, held_by, hold_reason FROM conversations
             WHERE id = $1 AND held_at IS NOT NULL",
        )
        .await?;
    let row = timed(
        "conversations.hold_of",
        db.query_opt(&stmt, &[&conversation]),
    )
    .await?;
    Ok(row.map(|r| Hold {
        conversation_id: conversation,
        held_at: r.get(0),
        held_by: r.get::<_, Option<String>>(1).unwrap_or_default(),
        reason: r.get::<_, Option<String>>(2).unwrap_or_default(),
    }))
}

/// The participants of `conversation` (who hear of what changes in it).
pub async fn participant_ids(
    db: &impl GenericClient,
    conversation: Uuid,
) -> Result<Vec<UserId>, ChatError> {
    let stmt = db
        .prepare_cached("SELECT user_id FROM conversation_participants WHERE conversation_id = $1")
        .await?;
    let rows = timed(
        "conversations.participant_ids",
        db.query(&stmt, &[&conversation]),
    )
    .await?;
    rows.iter().map(|r| UserId::parse(r.get(0))).collect()
}
