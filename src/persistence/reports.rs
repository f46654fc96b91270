//! `chat_reports` and `moderation_actions`: reports by users and by the
//! server's own abuse signals, each with an evidence bundle frozen at report
//! time (the messages around the reported one, with their metadata and
//! redaction state, the participants and the context), and what moderators did.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    KeysetCursor,
    audit::{self, AuditEntry},
    client, outbox, timed,
};
use crate::domain::{ChatError, UserId};

/// A report about to be filed by a user.
pub struct NewReport<'a> {
    pub reporter: &'a UserId,
    pub reported: &'a UserId,
    pub conversation: Option<Uuid>,
    pub message: Option<Uuid>,
    pub category: &'a str,
    pub description: &'a str,
    /// How many messages the evidence keeps.
    pub evidence_messages: i64,
}

/// Freezes the evidence of `conversation` (around `message`, else its last
/// messages) as one JSON document, inside the caller's transaction.
async fn freeze_evidence(
    db: &impl GenericClient,
    reported: &UserId,
    conversation: Option<Uuid>,
    message: Option<Uuid>,
    limit: i64,
) -> Result<Value, ChatError> {
    let stmt = db
        .prepare_cached(
            "SELECT jsonb_build_object(
                 'capturedAt', now(),
                 'reportedUserId', $1::text,
                 'reportedMessageId', $3::uuid,
                 'conversation', (SELECT jsonb_build_object(
                         'id', c.id, 'contextType', NULLIF(c.context_type, ''), 'contextId', NULLIF(c.context_id, ''),
                         'contextTitle', COALESCE(ctx.title, c.context_title), 'createdAt', c.created_at)
                     FROM conversations c LEFT JOIN contexts ctx
                       ON ctx.context_type = c.context_type AND ctx.context_id = c.context_id
                     WHERE c.id = $2),
                 'participants', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                         'id', u.id, 'name', u.display_name, 'role', u.role, 'requestState', p.request_state)
                         ORDER BY u.id), '[]'::jsonb)
                     FROM conversation_participants p JOIN users u ON u.id = p.user_id WHERE p.conversation_id = $2),
                 'messages', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                         'id', m.id, 'seq', m.seq, 'senderId', m.sender_id, 'kind', m.kind, 'body', m.body,
                         'metadata', m.metadata, 'createdAt', m.created_at, 'redactedAt', m.redacted_at,
                         'redactedBy', m.redacted_by, 'redactionReason', m.redaction_reason,
                         'attachments', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                                 'id', a.id, 'filename', a.filename, 'contentType', a.content_type,
                                 'size', COALESCE(a.size, a.declared_size), 'sha256', a.sha256,
                                 'status', a.status, 'blockedReason', a.blocked_reason) ORDER BY a.id), '[]'::jsonb)
                             FROM attachments a WHERE a.message_id = m.id)) ORDER BY m.seq), '[]'::jsonb)
                     FROM (SELECT * FROM messages WHERE conversation_id = $2
                             AND seq <= COALESCE((SELECT seq + $4::bigint / 2 FROM messages WHERE id = $3),
                                                 9223372036854775807)
                           ORDER BY seq DESC LIMIT $4::bigint) m))",
        )
        .await?;
    let row = db
        .query_one(
            &stmt,
            &[&reported.as_str(), &conversation, &message, &limit],
        )
        .await?;
    Ok(row.get(0))
}

/// Files a user's report with its frozen evidence; audited.
pub async fn create(pool: &Pool, report: &NewReport<'_>) -> Result<Uuid, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let evidence = freeze_evidence(
        &tx,
        report.reported,
        report.conversation,
        report.message,
        report.evidence_messages,
    )
    .await?;
    let id = Uuid::now_v7();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO chat_reports (id, reporter_id, reported_user_id, conversation_id, message_id, category, description, evidence)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    timed(
        "reports.create",
        tx.execute(
            &stmt,
            &[
                &id,
                &report.reporter.as_str(),
                &report.reported.as_str(),
                &report.conversation,
                &report.message,
                &report.category,
                &report.description,
                &evidence,
            ],
        ),
    )
    .await?;
    audit::record(
        &tx,
        &AuditEntry {
            actor: Some(report.reporter.as_str()),
            action: "report.created",
            target_type: "user",
            target_id: report.reported.as_str(),
            conversation: report.conversation,
            details: json!({ "reportId": id, "category": report.category, "messageId": report.message }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Puts `user` in the moderation queue for an automated `signal`, unless an
/// open report for that signal already exists. True when one was filed.
pub async fn file_automated(
    pool: &Pool,
    user: &UserId,
    signal: &str,
    conversation: Option<Uuid>,
    details: Value,
    evidence_messages: i64,
) -> Result<bool, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let mut evidence = freeze_evidence(&tx, user, conversation, None, evidence_messages).await?;
    evidence["signal"] = json!({ "name": signal, "details": details });
    let id = Uuid::now_v7();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO chat_reports (id, reported_user_id, conversation_id, category, description, source, signal, evidence)
             VALUES ($1, $2, $3, 'automated', $4, 'automated', $4, $5)
             ON CONFLICT (reported_user_id, signal) WHERE status = 'open' AND source = 'automated' DO NOTHING",
        )
        .await?;
    let filed = tx
        .execute(
            &stmt,
            &[&id, &user.as_str(), &conversation, &signal, &evidence],
        )
        .await?
        == 1;
    if filed {
        audit::record(
            &tx,
            &AuditEntry {
                actor: None,
                action: "report.automated",
                target_type: "user",
                target_id: user.as_str(),
                conversation,
                details: json!({ "reportId": id, "signal": signal }),
            },
        )
        .await?;
        metrics::counter!("parley_abuse_signals_total", "signal" => signal.to_owned()).increment(1);
    }
    tx.commit().await?;
    Ok(filed)
}

/// User reports against `user` in the last `hours`.
pub async fn recent_reporters_of(pool: &Pool, user: &UserId, hours: i32) -> Result<i64, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT count(DISTINCT reporter_id) FROM chat_reports
             WHERE reported_user_id = $1 AND source = 'user' AND created_at > now() - make_interval(hours => $2)",
        )
        .await?;
    Ok(db.query_one(&stmt, &[&user.as_str(), &hours]).await?.get(0))
}

/// Whether `author` wrote a message in a conversation `reader` takes part
/// in (in `conversation`, when given): the relation a report needs.
pub async fn wrote_to(
    pool: &Pool,
    author: &UserId,
    reader: &UserId,
    conversation: Option<Uuid>,
) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM messages m
               JOIN conversation_participants p ON p.conversation_id = m.conversation_id AND p.user_id = $2
              WHERE m.sender_id = $1 AND ($3::uuid IS NULL OR m.conversation_id = $3))",
        )
        .await?;
    let row = timed(
        "reports.wrote_to",
        db.query_one(&stmt, &[&author.as_str(), &reader.as_str(), &conversation]),
    )
    .await?;
    Ok(row.get(0))
}

/// Message requests `sender` made in the last 30 days that were declined, or
/// ignored for more than 3 days.
pub async fn unwelcome_requests(pool: &Pool, sender: &UserId) -> Result<i64, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT count(*) FROM conversation_participants p JOIN conversations c ON c.id = p.conversation_id
             WHERE c.created_by = $1 AND p.user_id <> $1 AND c.created_at > now() - interval '30 days'
               AND (p.request_state = 'declined' OR (p.request_state = 'pending' AND c.created_at < now() - interval '3 days'))",
        )
        .await?;
    Ok(db.query_one(&stmt, &[&sender.as_str()]).await?.get(0))
}

/// A report as moderators see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportView {
    pub id: Uuid,
    pub reporter_id: Option<String>,
    pub reported_user_id: String,
    pub conversation_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub category: String,
    pub description: String,
    /// `user` or `automated`.
    pub source: String,
    pub signal: Option<String>,
    /// `open`, `actioned` or `dismissed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    /// The frozen evidence bundle (only on `GET /admin/chat/reports/:id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Value>,
}

const REPORT_COLUMNS: &str = "id, reporter_id, reported_user_id, conversation_id, message_id, category, description, source, signal, status, created_at";

fn report_from_row(r: &tokio_postgres::Row, with_evidence: bool) -> ReportView {
    ReportView {
        id: r.get(0),
        reporter_id: r.get(1),
        reported_user_id: r.get(2),
        conversation_id: r.get(3),
        message_id: r.get(4),
        category: r.get(5),
        description: r.get(6),
        source: r.get(7),
        signal: r.get(8),
        status: r.get(9),
        created_at: r.get(10),
        evidence: with_evidence.then(|| r.get(11)),
    }
}

/// The queue: reports with `status`, newest first, keyset-paged.
pub async fn list(
    pool: &Pool,
    status: &str,
    before: Option<KeysetCursor>,
    limit: i64,
) -> Result<(Vec<ReportView>, bool), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {REPORT_COLUMNS} FROM chat_reports
             WHERE status = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .await?;
    let (at, id) = before.map_or((None, None), |c| (Some(c.at), Some(c.id)));
    let rows = timed(
        "reports.list",
        db.query(&stmt, &[&status, &at, &id, &(limit + 1)]),
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    Ok((
        rows.iter()
            .take(limit as usize)
            .map(|r| report_from_row(r, false))
            .collect(),
        has_more,
    ))
}

/// One report with its evidence; reading it is audited as an admin read.
pub async fn get(pool: &Pool, id: Uuid, admin: &UserId) -> Result<Option<ReportView>, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {REPORT_COLUMNS}, evidence FROM chat_reports WHERE id = $1"
        ))
        .await?;
    let row = timed("reports.get", tx.query_opt(&stmt, &[&id])).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let report = report_from_row(&row, true);
    audit::record(
        &tx,
        &AuditEntry {
            actor: Some(admin.as_str()),
            action: "admin.report_read",
            target_type: "report",
            target_id: &id.to_string(),
            conversation: report.conversation_id,
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(report))
}

/// What a moderator decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModerationAction {
    Warn,
    Suspend { hours: i32 },
    Ban,
    Dismiss,
}

impl ModerationAction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Warn => "warn",
            Self::Suspend { .. } => "suspend",
            Self::Ban => "ban",
            Self::Dismiss => "dismiss",
        }
    }
}

/// Applies `action` to the report's user (suspension counted from `now`, the
/// rules' clock), closes the report, records the action and audits it.
/// Returns the reported user, or `None` for an unknown report.
pub async fn act(
    pool: &Pool,
    report: Uuid,
    moderator: &UserId,
    action: ModerationAction,
    note: &str,
    now: DateTime<Utc>,
) -> Result<Option<UserId>, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let status = if action == ModerationAction::Dismiss {
        "dismissed"
    } else {
        "actioned"
    };
    let close = tx
        .prepare_cached(
            "UPDATE chat_reports SET status = $2, resolved_at = now(), resolved_by = $3
             WHERE id = $1 RETURNING reported_user_id, conversation_id",
        )
        .await?;
    let Some(row) = tx
        .query_opt(&close, &[&report, &status, &moderator.as_str()])
        .await?
    else {
        return Ok(None);
    };
    let target = UserId::parse(row.get(0))?;
    let conversation: Option<Uuid> = row.get(1);
    let hours = match action {
        ModerationAction::Suspend { hours } => Some(hours),
        _ => None,
    };
    match action {
        ModerationAction::Suspend { hours } => {
            let until = now + Duration::hours(i64::from(hours));
            tx.execute(
                "UPDATE users SET suspended_until = GREATEST(COALESCE(suspended_until, $2), $2) WHERE id = $1",
                &[&target.as_str(), &until],
            )
            .await?;
        }
        ModerationAction::Ban => {
            tx.execute(
                "UPDATE users SET banned_at = COALESCE(banned_at, $2) WHERE id = $1",
                &[&target.as_str(), &now],
            )
            .await?;
        }
        ModerationAction::Warn | ModerationAction::Dismiss => {}
    }
    tx.execute(
        "INSERT INTO moderation_actions (report_id, moderator_id, target_user_id, action, duration_hours, note)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&report, &moderator.as_str(), &target.as_str(), &action.name(), &hours, &note],
    )
    .await?;
    let audited = format!("moderation.{}", action.name());
    audit::record(
        &tx,
        &AuditEntry {
            actor: Some(moderator.as_str()),
            action: &audited,
            target_type: "user",
            target_id: target.as_str(),
            conversation,
            details: json!({ "reportId": report, "durationHours": hours, "note": note }),
        },
    )
    .await?;
    if action != ModerationAction::Dismiss {
        let notice = json!({ "userId": target.as_str(), "action": action.name(), "note": note });
        outbox::add(&tx, "moderation_notice", &notice).await?;
    }
    tx.commit().await?;
    Ok(Some(target))
}
