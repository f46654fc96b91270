//! The `messages` table and the write-through of a send.
//!
//! A send is one SQL statement (so one implicit transaction and one round trip),
//! the same for one message and for a group-commit batch: it inserts the
//! message, advances the conversation's `last_seq`, bumps the other
//! participants' unread counts, moves the sender's own read pointer to the new
//! message and applies the request-state change the actor decided. The two unique constraints do the rest: a repeated
//! `(sender, clientMessageId)` inserts nothing, and a taken
//! `(conversation, seq)` means another writer owns the conversation.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{audit, client, timed, violated_constraint};
use crate::domain::{
    ChatError, ConversationId, UserId,
    attachments::{Attachment, visible_variants},
    model::{Message, MessageKind, MessageLinks, REDACTED_BODY, RequestChange, RequestState},
};

/// The attachments of message `$m` as a JSON array of
/// [`crate::domain::attachments::Attachment`]s (their current status).
macro_rules! attachments_of {
    ($m:literal) => {
        concat!(
            "(SELECT COALESCE(jsonb_agg(jsonb_build_object(
                 'id', a.id, 'conversationId', a.conversation_id, 'uploaderId', a.uploader_id,
                 'filename', a.filename, 'contentType', a.content_type,
                 'size', COALESCE(a.size, a.declared_size), 'status', a.status,
                 'variants', a.variants, 'createdAt', a.created_at) ORDER BY a.id), '[]'::jsonb)
             FROM attachments a WHERE a.message_id = ",
            $m,
            ")"
        )
    };
}
pub(crate) use attachments_of;

/// Columns of a message, in the order [`message_from_row`] reads them (from
/// a table or sub-query named `messages`).
pub(crate) const MESSAGE_COLUMNS: &str = concat!(
    "id, conversation_id, seq, sender_id, kind, body, client_message_id, created_at, metadata, redacted_at IS NOT NULL, ",
    attachments_of!("messages.id")
);

/// Reads a message from `row`, starting at column `at`, as participants see
/// it: a redacted message's body is replaced by a placeholder.
pub fn message_from_row(row: &Row, at: usize) -> Message {
    let mut message = original_from_row(row, at);
    if message.redacted {
        message.body = REDACTED_BODY.to_owned();
        message.links = None;
        message.attachments = Vec::new();
    }
    message
}

/// Reads a message with its original body (moderators only).
fn original_from_row(row: &Row, at: usize) -> Message {
    let metadata = row.get::<_, Option<serde_json::Value>>(at + 8);
    Message {
        id: row.get(at),
        conversation_id: row.get(at + 1),
        seq: row.get(at + 2),
        sender_id: row.get(at + 3),
        kind: row.get(at + 4),
        body: row.get(at + 5),
        client_message_id: row.get(at + 6),
        created_at: row.get(at + 7),
        links: metadata.as_ref().and_then(MessageLinks::from_metadata),
        system: metadata
            .as_ref()
            .and_then(|m| m.get("system"))
            .and_then(|s| serde_json::from_value(s.clone()).ok()),
        redacted: row.get::<_, Option<bool>>(at + 9).unwrap_or(false),
        attachments: row
            .get::<_, Option<serde_json::Value>>(at + 10)
            .and_then(|json| serde_json::from_value::<Vec<Attachment>>(json).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|mut a| {
                a.variants = visible_variants(a.status, std::mem::take(&mut a.variants));
                a
            })
            .collect(),
    }
}

/// A message about to be written at a position the actor has chosen, with
/// what it changes in the conversation's request states.
#[derive(Clone)]
pub struct NewMessage {
    pub conversation: ConversationId,
    /// The owner epoch of the actor writing it (see `conversations::take_over`).
    pub owner_epoch: i64,
    pub seq: i64,
    pub sender: UserId,
    pub kind: MessageKind,
    pub body: String,
    pub client_message_id: String,
    pub links: Option<MessageLinks>,
    pub request_change: RequestChange,
    /// Linked to the message in the same statement.
    pub attachments: Vec<Attachment>,
}

impl NewMessage {
    /// The message as stored under `id` at `created_at`.
    fn stored(&self, id: Uuid, created_at: DateTime<Utc>) -> Message {
        Message {
            id,
            conversation_id: self.conversation.0,
            seq: self.seq,
            sender_id: self.sender.to_string(),
            kind: self.kind.as_str().to_owned(),
            body: self.body.clone(),
            client_message_id: self.client_message_id.clone(),
            created_at,
            links: self.links.clone(),
            redacted: false,
            attachments: self.attachments.clone(),
            system: None,
        }
    }
}

/// What the write-through did.
pub enum InsertOutcome {
    /// Committed at the requested `seq` (boxed: a message is large, the
    /// other outcomes carry nothing).
    Inserted(Box<Message>),
    /// The sender already used this `clientMessageId`; nothing was written.
    DuplicateClientId,
    /// Another writer already committed this `seq`: the caller's view of the
    /// conversation is stale and must be rebuilt from the database.
    SeqTaken,
    /// Another actor took the conversation over (a newer owner epoch):
    /// nothing was written, and the caller must stop acting for it.
    FencedOut,
}

/// Writes one message and its side effects atomically (a batch of one).
pub async fn insert(pool: &Pool, new: NewMessage) -> Result<InsertOutcome, ChatError> {
    let db = client(pool).await?;
    match insert_batch(&db, std::slice::from_ref(&new)).await {
        Ok(mut outcomes) => outcomes
            .pop()
            .ok_or_else(|| ChatError::internal("a batch of one came back empty")),
        Err(BatchError::SeqTaken) => Ok(InsertOutcome::SeqTaken),
        Err(BatchError::Failed(e)) => Err(e),
    }
}

/// Why a batch wrote nothing.
pub enum BatchError {
    /// One of its `seq`s was taken by another writer.
    SeqTaken,
    Failed(ChatError),
}

impl From<ChatError> for BatchError {
    fn from(e: ChatError) -> Self {
        Self::Failed(e)
    }
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        if violated_constraint(&e) == Some("messages_conversation_seq_key") {
            Self::SeqTaken
        } else {
            Self::Failed(e.into())
        }
    }
}

/// Writes messages as one statement (executor set-up is paid once, not per
/// message): each message, the conversation's `last_seq`, every
/// participant's unread count and activity, the sender's read pointer, the
/// request states the message changes, and its follow-up job in the outbox
/// (`message_created`: notifications), so a message and its follow-up are
/// committed together or not at all. A repeated `clientMessageId`
/// inserts nothing and comes back as [`InsertOutcome::DuplicateClientId`];
/// a message whose owner epoch is no longer the conversation's inserts
/// nothing and comes back as [`InsertOutcome::FencedOut`] (the epoch is
/// checked under a share lock of the conversation row, so a takeover either
/// waits for this write or this write sees it); a taken `seq` fails the
/// whole statement. The batch must not hold two messages of one conversation.
pub async fn insert_batch(
    db: &impl GenericClient,
    batch: &[NewMessage],
) -> Result<Vec<InsertOutcome>, BatchError> {
    let stmt = db
        .prepare_cached(concat!(
            "WITH input AS (
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::jsonb[], $9::text[], $10::text[], $11::bigint[], $12::text[])
                     AS t(id, conversation_id, seq, sender_id, kind, body, client_message_id, metadata,
                          sender_request_state, recipient_request_state, owner_epoch, attachment_ids)
             ), fence AS (
                 SELECT c.id FROM conversations c JOIN input i
                     ON i.conversation_id = c.id AND c.owner_epoch = i.owner_epoch
                 FOR SHARE OF c
             ), ins AS (
                 INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, client_message_id, metadata)
                 SELECT id, conversation_id, seq, sender_id, kind, body, client_message_id, metadata FROM input
                 WHERE conversation_id IN (SELECT id FROM fence)
                 ON CONFLICT (sender_id, client_message_id) DO NOTHING
                 RETURNING id, conversation_id, seq, sender_id, created_at
             ), written AS (
                 SELECT ins.*, input.sender_request_state, input.recipient_request_state
                 FROM ins JOIN input USING (id)
             ), conv AS (
                 UPDATE conversations c SET last_seq = w.seq, last_message_at = w.created_at
                 FROM written w WHERE c.id = w.conversation_id
             ), parts AS (
                 UPDATE conversation_participants p SET
                     unread_count = CASE WHEN p.user_id = w.sender_id THEN 0
                         WHEN ", blocks!("p.user_id", "w.sender_id"), "
                         THEN p.unread_count ELSE p.unread_count + 1 END,
                     last_read_seq = CASE WHEN p.user_id = w.sender_id THEN w.seq ELSE p.last_read_seq END,
                     last_read_at = CASE WHEN p.user_id = w.sender_id THEN w.created_at ELSE p.last_read_at END,
                     activity_at = w.created_at,
                     changed_tx = pg_current_xact_id()::text::bigint,
                     archived_at = CASE WHEN p.archive_reason = 'auto' THEN NULL ELSE p.archived_at END,
                     archive_reason = NULLIF(p.archive_reason, 'auto'),
                     request_state = CASE WHEN p.user_id = w.sender_id
                         THEN COALESCE(w.sender_request_state, p.request_state)
                         ELSE COALESCE(w.recipient_request_state, p.request_state) END
                 FROM written w WHERE p.conversation_id = w.conversation_id
             ), linked AS (
                 UPDATE attachments a SET message_id = w.id
                 FROM written w JOIN input i USING (id)
                 WHERE i.attachment_ids <> ''
                   AND a.id = ANY (string_to_array(i.attachment_ids, ',')::uuid[])
                   AND a.conversation_id = w.conversation_id AND a.uploader_id = w.sender_id
                   AND a.message_id IS NULL
             ), follow_up AS (
                 INSERT INTO outbox (job_id, kind, payload)
                 SELECT gen_random_uuid(), 'message_created', jsonb_build_object(
                     'conversationId', w.conversation_id, 'messageId', w.id, 'seq', w.seq,
                     'senderId', w.sender_id, 'senderRequestState', w.sender_request_state,
                     'recipientRequestState', w.recipient_request_state)
                 FROM written w
             )
             SELECT i.id, w.created_at, i.conversation_id IN (SELECT id FROM fence)
             FROM input i LEFT JOIN written w USING (id)"
        ))
        .await?;
    let ids: Vec<Uuid> = batch.iter().map(|_| Uuid::now_v7()).collect();
    let conversations: Vec<Uuid> = batch.iter().map(|m| m.conversation.0).collect();
    let seqs: Vec<i64> = batch.iter().map(|m| m.seq).collect();
    let senders: Vec<&str> = batch.iter().map(|m| m.sender.as_str()).collect();
    let kinds: Vec<&str> = batch.iter().map(|m| m.kind.as_str()).collect();
    let bodies: Vec<&str> = batch.iter().map(|m| m.body.as_str()).collect();
    let client_ids: Vec<&str> = batch.iter().map(|m| m.client_message_id.as_str()).collect();
    let metadata: Vec<serde_json::Value> = batch
        .iter()
        .map(|m| MessageLinks::to_metadata(m.links.as_ref()))
        .collect();
    let state = |s: Option<RequestState>| s.map(RequestState::as_str);
    let sender_states: Vec<Option<&str>> = batch
        .iter()
        .map(|m| state(m.request_change.sender))
        .collect();
    let recipient_states: Vec<Option<&str>> = batch
        .iter()
        .map(|m| state(m.request_change.recipients))
        .collect();
    let epochs: Vec<i64> = batch.iter().map(|m| m.owner_epoch).collect();
    let attachment_ids: Vec<String> = batch
        .iter()
        .map(|m| {
            m.attachments
                .iter()
                .map(|a| a.id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let rows = timed(
        "messages.insert_batch",
        db.query(
            &stmt,
            &[
                &ids,
                &conversations,
                &seqs,
                &senders,
                &kinds,
                &bodies,
                &client_ids,
                &metadata,
                &sender_states,
                &recipient_states,
                &epochs,
                &attachment_ids,
            ],
        ),
    )
    .await?;
    let written: std::collections::HashMap<Uuid, (Option<DateTime<Utc>>, bool)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    Ok(batch
        .iter()
        .zip(ids)
        .map(|(m, id)| match written.get(&id) {
            Some((Some(created_at), _)) => {
                InsertOutcome::Inserted(Box::new(m.stored(id, *created_at)))
            }
            Some((None, false)) => InsertOutcome::FencedOut,
            _ => InsertOutcome::DuplicateClientId,
        })
        .collect())
}

/// The message `sender` stored under `client_message_id`, in any conversation.
pub async fn find_by_client_id(
    pool: &Pool,
    sender: &UserId,
    client_message_id: &str,
) -> Result<Option<Message>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = $1 AND client_message_id = $2"
        ))
        .await?;
    let row = timed(
        "messages.find_by_client_id",
        db.query_opt(&stmt, &[&sender.as_str(), &client_message_id]),
    )
    .await?;
    Ok(row.map(|r| message_from_row(&r, 0)))
}

/// Which way to page through a conversation's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageDirection {
    /// The newest messages (no cursor).
    Latest,
    /// Messages with `seq` above the given one, oldest first.
    After(i64),
    /// Messages with `seq` below the given one, newest page first.
    Before(i64),
}

/// One page of messages, always in ascending `seq` order, and whether more
/// exist beyond it in the direction of travel.
pub struct MessagePage {
    pub items: Vec<Message>,
    pub has_more: bool,
}

/// A page of a conversation's messages as `viewer` sees them (keyset on the
/// unique `(conversation_id, seq)` index). In a context thread the messages
/// of members the viewer blocks are left out, so the viewer's `seq`s have
/// gaps there; paging by `seq` is unaffected.
pub async fn page(
    pool: &Pool,
    conversation: ConversationId,
    viewer: &UserId,
    direction: PageDirection,
    limit: i64,
) -> Result<MessagePage, ChatError> {
    let db = client(pool).await?;
    let (sql, bound) = match direction {
        PageDirection::Latest => ("seq < $2 ORDER BY seq DESC", i64::MAX),
        PageDirection::Before(seq) => ("seq < $2 ORDER BY seq DESC", seq),
        PageDirection::After(seq) => ("seq > $2 ORDER BY seq ASC", seq),
    };
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE conversation_id = $1
               AND sender_id <> ALL (ARRAY(SELECT b.blocked_id FROM user_blocks b
                                           JOIN conversations c ON c.id = $1 AND c.kind = 'group'
                                           WHERE b.blocker_id = $4))
               AND {sql} LIMIT $3"
        ))
        .await?;
    let rows = timed(
        "messages.page",
        db.query(
            &stmt,
            &[&conversation.0, &bound, &(limit + 1), &viewer.as_str()],
        ),
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let mut items: Vec<Message> = rows
        .iter()
        .take(limit as usize)
        .map(|r| message_from_row(r, 0))
        .collect();
    if !matches!(direction, PageDirection::After(_)) {
        items.reverse();
    }
    Ok(MessagePage { items, has_more })
}

/// A participant's read state after moving the pointer, and who may see it.
pub struct ReadPointer {
    pub last_read_seq: i64,
    pub unread_count: i64,
    pub last_read_at: Option<DateTime<Utc>>,
    /// The other participants to whom the reader's receipt may be shown:
    /// receipts are reciprocal, so empty unless the reader shares them, and
    /// only those who share theirs too.
    pub receipt_recipients: Vec<UserId>,
}

/// Moves `user`'s read pointer forward to `seq` (never back) and recomputes
/// their unread count from the messages table.
pub async fn mark_read(
    pool: &Pool,
    conversation: ConversationId,
    user: &UserId,
    seq: i64,
) -> Result<ReadPointer, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            concat!("WITH upd AS (
                 UPDATE conversation_participants p SET
                     last_read_seq = GREATEST(p.last_read_seq, $3),
                     last_read_at = CASE WHEN $3 > p.last_read_seq THEN now() ELSE p.last_read_at END,
                     unread_count = (SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
                                     WHERE m.conversation_id = $1 AND m.seq > GREATEST(p.last_read_seq, $3)
                                       AND m.sender_id <> $2 AND m.kind <> 'system'
                                       AND NOT (c.kind = 'group' AND ", blocks!("$2", "m.sender_id"), ")),
                     changed_tx = pg_current_xact_id()::text::bigint
                 WHERE p.conversation_id = $1 AND p.user_id = $2
                 RETURNING p.last_read_seq, p.unread_count, p.last_read_at
             )
             SELECT upd.last_read_seq, upd.unread_count, upd.last_read_at,
                    CASE WHEN COALESCE((SELECT (settings->>'readReceipts')::boolean FROM users WHERE id = $2), false)
                    THEN ARRAY(SELECT op.user_id FROM conversation_participants op JOIN users u ON u.id = op.user_id
                               JOIN conversations c ON c.id = op.conversation_id
                               WHERE op.conversation_id = $1 AND op.user_id <> $2
                                 AND COALESCE((u.settings->>'readReceipts')::boolean, false)
                                 AND NOT ", hidden_from!("c.kind", "op.user_id", "$2"), ")
                    ELSE ARRAY[]::text[] END
             FROM upd"),
        )
        .await?;
    let row = timed(
        "messages.mark_read",
        db.query_opt(&stmt, &[&conversation.0, &user.as_str(), &seq]),
    )
    .await?;
    let row = row.ok_or_else(ChatError::conversation_not_found)?;
    let receipt_recipients = row
        .get::<_, Vec<String>>(3)
        .iter()
        .map(|id| UserId::parse(id))
        .collect::<Result<_, _>>()?;
    Ok(ReadPointer {
        last_read_seq: row.get(0),
        unread_count: i64::from(row.get::<_, i32>(1)),
        last_read_at: row.get(2),
        receipt_recipients,
    })
}

/// Hides a message's content from participants (the original stays, for
/// moderators and evidence); audited. Returns the participants' view of the
/// message, or `None` when unknown.
pub async fn redact(
    pool: &Pool,
    id: Uuid,
    moderator: &UserId,
    reason: &str,
) -> Result<Option<Message>, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE messages SET redacted_at = COALESCE(redacted_at, now()),
                 redacted_by = COALESCE(redacted_by, $2), redaction_reason = COALESCE(redaction_reason, $3)
             WHERE id = $1 RETURNING {MESSAGE_COLUMNS}"
        ))
        .await?;
    let Some(row) = timed(
        "messages.redact",
        tx.query_opt(&stmt, &[&id, &moderator.as_str(), &reason]),
    )
    .await?
    else {
        return Ok(None);
    };
    let message = message_from_row(&row, 0);
    audit::record(
        &tx,
        &audit::AuditEntry {
            actor: Some(moderator.as_str()),
            action: "moderation.redact",
            target_type: "message",
            target_id: &id.to_string(),
            conversation: Some(message.conversation_id),
            details: serde_json::json!({ "reason": reason, "senderId": message.sender_id }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(message))
}

/// The newest messages of a conversation with their original bodies, for a
/// moderator; the read itself is audited.
pub async fn admin_page(
    pool: &Pool,
    conversation: ConversationId,
    admin: &UserId,
    limit: i64,
) -> Result<Vec<Message>, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .await?;
    let rows = timed(
        "messages.admin_page",
        tx.query(&stmt, &[&conversation.0, &limit]),
    )
    .await?;
    audit::record(
        &tx,
        &audit::AuditEntry {
            actor: Some(admin.as_str()),
            action: "admin.conversation_read",
            target_type: "conversation",
            target_id: &conversation.to_string(),
            conversation: Some(conversation.0),
            details: serde_json::json!({ "messages": rows.len() }),
        },
    )
    .await?;
    tx.commit().await?;
    let mut messages: Vec<Message> = rows.iter().map(|r| original_from_row(r, 0)).collect();
    messages.reverse();
    Ok(messages)
}

/// Why a message's body was purged.
#[derive(Clone, Copy, Debug)]
pub enum PurgeReason {
    /// It outlived `PARLEY_MESSAGE_RETENTION_DAYS`.
    Retention,
    /// Its sender's data was erased.
    Erasure,
}

impl PurgeReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Retention => "retention",
            Self::Erasure => "erasure",
        }
    }
}

/// Removes the bodies (and the link metadata drawn from them) of the
/// messages `ids` for good, in the caller's transaction: each stays, redacted,
/// with its `seq`, sender and time, so a history has no holes. Messages
/// already purged are left alone. Answers the purged messages as
/// participants now see them.
pub async fn purge(
    db: &impl GenericClient,
    ids: &[Uuid],
    reason: PurgeReason,
) -> Result<Vec<Message>, ChatError> {
    let stmt = db
        .prepare_cached(&format!(
            "UPDATE messages SET body = '', metadata = '{{}}'::jsonb, purged_at = now(),
                 redacted_at = COALESCE(redacted_at, now()),
                 redaction_reason = COALESCE(redaction_reason, $2)
             WHERE id = ANY($1) AND purged_at IS NULL
             RETURNING {MESSAGE_COLUMNS}"
        ))
        .await?;
    let rows = timed("messages.purge", db.query(&stmt, &[&ids, &reason.as_str()])).await?;
    Ok(rows.iter().map(|r| message_from_row(r, 0)).collect())
}
