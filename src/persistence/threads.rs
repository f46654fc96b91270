//! Context threads in the database: the one group conversation of a context
//! (unique per `(context_type, context_id)`), its members, and the writes
//! that change them together with the system messages that say so.
//!
//! A membership change or a system message takes a `seq`, so only the
//! conversation's actor writes them, fenced by its owner epoch like a send.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde_json::json;
use uuid::Uuid;

use super::{
    audit::{self, AuditEntry},
    client,
    messages::InsertOutcome,
    timed, violated_constraint,
};
use crate::domain::{
    ChatError, ConversationId, UserId,
    ids::SYSTEM_SENDER,
    model::{ConversationContext, Message, MessageKind, UserSummary},
    thread::{MembershipChange, SystemEvent},
};

/// The thread of `context`, if it has one.
pub async fn find(pool: &Pool, kind: &str, id: &str) -> Result<Option<ConversationId>, ChatError> {
    let db = client(pool).await?;
    find_on(&db, kind, id).await
}

async fn find_on(
    db: &impl GenericClient,
    kind: &str,
    id: &str,
) -> Result<Option<ConversationId>, ChatError> {
    let stmt = db
        .prepare_cached(
            "SELECT id FROM conversations WHERE kind = 'group' AND context_type = $1 AND context_id = $2",
        )
        .await?;
    let row = timed("threads.find", db.query_opt(&stmt, &[&kind, &id])).await?;
    Ok(row.map(|r| ConversationId(r.get(0))))
}

/// Whether `id` is a context thread.
pub async fn is_thread(pool: &Pool, id: ConversationId) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1 AND kind = 'group')",
        )
        .await?;
    Ok(timed("threads.is_thread", db.query_one(&stmt, &[&id.0]))
        .await?
        .get(0))
}

/// Finds the thread of `context` or creates it, empty (its members join
/// through its actor); true when created. The unique index decides between
/// concurrent calls.
pub async fn find_or_create(
    pool: &Pool,
    context: &ConversationContext,
) -> Result<(ConversationId, bool), ChatError> {
    let db = client(pool).await?;
    if let Some(existing) = find_on(&db, &context.kind, &context.id).await? {
        return Ok((existing, false));
    }
    let stmt = db
        .prepare_cached(
            "INSERT INTO conversations
               (id, kind, context_type, context_id, context_title, context_subtitle, created_by, pre_accepted, member_count)
             VALUES ($1, 'group', $2, $3, $4, $5, $6, true, 0)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .await?;
    let id = ConversationId::new();
    let inserted = timed(
        "threads.create",
        db.query_opt(
            &stmt,
            &[
                &id.0,
                &context.kind,
                &context.id,
                &context.title,
                &context.subtitle,
                &SYSTEM_SENDER,
            ],
        ),
    )
    .await?;
    if inserted.is_some() {
        return Ok((id, true));
    }
    let existing = find_on(&db, &context.kind, &context.id)
        .await?
        .ok_or_else(|| ChatError::internal("thread vanished after a conflicting insert"))?;
    Ok((existing, false))
}

/// One system message at the `seq` the actor chose.
#[derive(Clone, Debug)]
pub struct SystemMessage {
    pub seq: i64,
    pub body: String,
    pub client_message_id: String,
    pub event: SystemEvent,
}

/// What an actor writes in one transaction: the membership change (each
/// joining member's read pointer starts at their own join message, so the
/// history they can now read does not count as unread) and the system
/// messages, at consecutive `seq`s.
pub struct ThreadWrite<'a> {
    pub conversation: ConversationId,
    pub owner_epoch: i64,
    pub change: &'a MembershipChange,
    /// The `seq` of each joining member's join message, in `change.joined` order.
    pub join_seqs: &'a [i64],
    pub messages: &'a [SystemMessage],
}

/// Writes a [`ThreadWrite`]; the stored messages come back as
/// [`InsertOutcome::Inserted`] of the last one when there is one message
/// (the platform's), or all of them in the `Vec`.
pub async fn write(
    pool: &Pool,
    write: &ThreadWrite<'_>,
) -> Result<(InsertOutcome, Vec<Message>), ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let id = write.conversation.0;
    let epoch = tx
        .prepare_cached("SELECT owner_epoch FROM conversations WHERE id = $1 FOR UPDATE")
        .await?;
    let current: i64 = timed("threads.lock", tx.query_one(&epoch, &[&id]))
        .await?
        .get(0);
    if current != write.owner_epoch {
        return Ok((InsertOutcome::FencedOut, Vec::new()));
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, client_message_id, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (sender_id, client_message_id) DO NOTHING RETURNING created_at",
        )
        .await?;
    let mut stored = Vec::with_capacity(write.messages.len());
    for m in write.messages {
        let message_id = Uuid::now_v7();
        let metadata = json!({ "system": m.event });
        let row = tx
            .query_opt(
                &insert,
                &[
                    &message_id,
                    &id,
                    &m.seq,
                    &SYSTEM_SENDER,
                    &MessageKind::System.as_str(),
                    &m.body,
                    &m.client_message_id,
                    &metadata,
                ],
            )
            .await;
        let row = match row {
            Ok(row) => row,
            Err(e) if violated_constraint(&e) == Some("messages_conversation_seq_key") => {
                return Ok((InsertOutcome::SeqTaken, Vec::new()));
            }
            Err(e) => return Err(e.into()),
        };
        let Some(row) = row else {
            return Ok((InsertOutcome::DuplicateClientId, Vec::new()));
        };
        let created_at: DateTime<Utc> = row.get(0);
        stored.push(Message {
            id: message_id,
            conversation_id: id,
            seq: m.seq,
            sender_id: SYSTEM_SENDER.to_owned(),
            kind: MessageKind::System.as_str().to_owned(),
            body: m.body.clone(),
            client_message_id: m.client_message_id.clone(),
            created_at,
            links: None,
            redacted: false,
            attachments: Vec::new(),
            system: Some(Box::new(m.event.clone())),
        });
    }
    apply_membership(&tx, write).await?;
    let last = stored.last().map(|m| (m.seq, m.created_at));
    let conv = tx
        .prepare_cached(
            "UPDATE conversations SET
                 last_seq = COALESCE($2, last_seq), last_message_at = COALESCE($3, last_message_at),
                 member_count = (SELECT count(*) FROM conversation_participants WHERE conversation_id = $1)
             WHERE id = $1",
        )
        .await?;
    tx.execute(&conv, &[&id, &last.map(|l| l.0), &last.map(|l| l.1)])
        .await?;
    if let Some((_, at)) = last {
        let activity = tx
            .prepare_cached(
                "UPDATE conversation_participants SET activity_at = $2,
                     changed_tx = pg_current_xact_id()::text::bigint,
                     archived_at = CASE WHEN archive_reason = 'auto' THEN NULL ELSE archived_at END,
                     archive_reason = NULLIF(archive_reason, 'auto')
                 WHERE conversation_id = $1",
            )
            .await?;
        tx.execute(&activity, &[&id, &at]).await?;
    }
    tx.commit().await?;
    let outcome = match stored.last() {
        Some(last) => InsertOutcome::Inserted(Box::new(last.clone())),
        None => InsertOutcome::DuplicateClientId,
    };
    Ok((outcome, stored))
}

/// The members joining, leaving and changing roles, audited. A member who
/// leaves takes their notifications and pending emails about the thread
/// with them (what they can no longer read, nothing points them to), and
/// their departure is recorded for their next sync.
async fn apply_membership(
    tx: &deadpool_postgres::Transaction<'_>,
    write: &ThreadWrite<'_>,
) -> Result<(), ChatError> {
    let id = write.conversation.0;
    let change = write.change;
    if !change.joined.is_empty() {
        let join = tx
            .prepare_cached(
                "INSERT INTO conversation_participants
                     (conversation_id, user_id, role_snapshot, thread_role, last_read_seq, last_read_at, changed_tx)
                 SELECT $1, u.id, u.role, j.role, j.seq, now(), pg_current_xact_id()::text::bigint
                 FROM unnest($2::text[], $3::text[], $4::bigint[]) AS j(user_id, role, seq)
                 JOIN users u ON u.id = j.user_id",
            )
            .await?;
        let users: Vec<&str> = change.joined.iter().map(|m| m.user_id.as_str()).collect();
        let roles: Vec<&str> = change.joined.iter().map(|m| m.role.as_str()).collect();
        timed(
            "threads.join",
            tx.execute(&join, &[&id, &users, &roles, &write.join_seqs]),
        )
        .await?;
        let returned = tx
            .prepare_cached(
                "DELETE FROM thread_departures WHERE conversation_id = $1 AND user_id = ANY($2)",
            )
            .await?;
        tx.execute(&returned, &[&id, &users]).await?;
    }
    if !change.role_changed.is_empty() {
        let roles = tx
            .prepare_cached(
                "UPDATE conversation_participants p SET thread_role = r.role,
                     changed_tx = pg_current_xact_id()::text::bigint
                 FROM unnest($2::text[], $3::text[]) AS r(user_id, role)
                 WHERE p.conversation_id = $1 AND p.user_id = r.user_id",
            )
            .await?;
        let users: Vec<&str> = change
            .role_changed
            .iter()
            .map(|m| m.user_id.as_str())
            .collect();
        let new_roles: Vec<&str> = change
            .role_changed
            .iter()
            .map(|m| m.role.as_str())
            .collect();
        tx.execute(&roles, &[&id, &users, &new_roles]).await?;
    }
    if !change.left.is_empty() {
        let users: Vec<&str> = change.left.iter().map(UserId::as_str).collect();
        for sql in [
            "DELETE FROM conversation_participants WHERE conversation_id = $1 AND user_id = ANY($2)",
            "DELETE FROM notifications WHERE conversation_id = $1 AND user_id = ANY($2)",
            "DELETE FROM email_queue WHERE conversation_id = $1 AND user_id = ANY($2)",
            "INSERT INTO thread_departures (conversation_id, user_id, changed_tx)
             SELECT $1, unnest($2::text[]), pg_current_xact_id()::text::bigint
             ON CONFLICT (conversation_id, user_id) DO UPDATE
             SET left_at = now(), changed_tx = EXCLUDED.changed_tx",
        ] {
            let stmt = tx.prepare_cached(sql).await?;
            timed("threads.leave", tx.execute(&stmt, &[&id, &users])).await?;
        }
    }
    let target = write.conversation.to_string();
    let entries = change
        .joined
        .iter()
        .map(|m| ("thread.member_added", m.user_id.as_str(), Some(&m.role)))
        .chain(change.role_changed.iter().map(|m| {
            (
                "thread.member_role_changed",
                m.user_id.as_str(),
                Some(&m.role),
            )
        }))
        .chain(
            change
                .left
                .iter()
                .map(|u| ("thread.member_removed", u.as_str(), None)),
        );
    for (action, user, role) in entries {
        audit::record(
            tx,
            &AuditEntry {
                actor: None,
                action,
                target_type: "conversation",
                target_id: &target,
                conversation: Some(id),
                details: json!({ "userId": user, "role": role }),
            },
        )
        .await?;
    }
    Ok(())
}

/// A member of a thread as other members see them.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    #[serde(flatten)]
    pub user: UserSummary,
    /// Their role in the business (`worker`, `supervisor`, …); null in a
    /// direct conversation.
    pub thread_role: Option<String>,
    pub joined_at: DateTime<Utc>,
    /// How far they have read: null unless both they and the caller share
    /// read receipts and no block hides them from the caller (the rule of
    /// `read.receipt` events); the caller's own always.
    pub last_read_seq: Option<i64>,
}

/// The members of `conversation` as `viewer` sees them, or `None` when the
/// viewer is not one.
pub async fn members(
    pool: &Pool,
    conversation: ConversationId,
    viewer: &UserId,
) -> Result<Option<Vec<MemberView>>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(concat!(
            "SELECT u.id, u.display_name, u.role, p.thread_role, p.joined_at, u.verified,
                    CASE WHEN p.user_id = $2 THEN p.last_read_seq
                         WHEN COALESCE((me.settings->>'readReceipts')::boolean, false)
                          AND COALESCE((u.settings->>'readReceipts')::boolean, false)
                          AND NOT ",
            hidden_from!("c.kind", "$2", "p.user_id"),
            " THEN p.last_read_seq END
             FROM conversation_participants mine
             JOIN users me ON me.id = mine.user_id
             JOIN conversations c ON c.id = mine.conversation_id
             JOIN conversation_participants p ON p.conversation_id = mine.conversation_id
             JOIN users u ON u.id = p.user_id
             WHERE mine.conversation_id = $1 AND mine.user_id = $2
             ORDER BY p.joined_at, p.user_id"
        ))
        .await?;
    let rows = timed(
        "threads.members",
        db.query(&stmt, &[&conversation.0, &viewer.as_str()]),
    )
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .map(|r| MemberView {
                user: UserSummary {
                    id: r.get(0),
                    name: r.get(1),
                    role: r.get(2),
                    verified: r.get(5),
                },
                thread_role: r.get(3),
                joined_at: r.get(4),
                last_read_seq: r.get(6),
            })
            .collect(),
    ))
}
