//! Safety tools of users and moderators: global blocks, reports with frozen
//! evidence, the moderation queue and its actions, redaction, and the audit
//! log. Every moderator read of a conversation or of evidence is audited.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ChatCore, page_limit, wire::Notice};
use crate::{
    actors::conversation::Command,
    cluster::limits::LimitKind,
    domain::{
        ChatError, ConversationId, UserId,
        event::ServerEvent,
        model::{Message, Page, UserSummary},
        text::{Padding, TextField},
    },
    persistence::{
        KeysetCursor,
        audit::{self, AuditFilter, AuditRow},
        blocks, conversations, id_cursor, messages,
        reports::{self, ModerationAction, NewReport, ReportView},
        users,
    },
};

/// Report categories users may choose.
pub const CATEGORIES: [&str; 5] = ["spam", "harassment", "scam", "inappropriate", "other"];

/// A report's category as the OpenAPI document states it.
pub fn category_schema() -> utoipa::openapi::Object {
    crate::domain::schema::one_of(&CATEGORIES, "What the report is about")
}

/// A report's description as the OpenAPI document states it.
pub fn description_schema() -> utoipa::openapi::Object {
    DESCRIPTION.schema()
}

/// A moderator's note or redaction reason as the OpenAPI document states it.
pub fn note_schema() -> utoipa::openapi::Object {
    NOTE.schema()
}

/// The reason a hold or an erasure needs, as the OpenAPI document states it.
pub fn reason_schema() -> utoipa::openapi::Object {
    REASON.schema()
}

/// The report queues (`GET /admin/chat/reports?status=`).
const REPORT_STATUSES: [&str; 3] = ["open", "actioned", "dismissed"];

/// A report queue as the OpenAPI document states it.
pub fn report_status_schema() -> utoipa::openapi::Object {
    crate::domain::schema::one_of(
        &REPORT_STATUSES,
        "`open` (default), `actioned` or `dismissed`",
    )
}

/// What a moderator may do with a report.
const ACTIONS: [&str; 4] = ["warn", "suspend", "ban", "dismiss"];

/// A moderator's action as the OpenAPI document states it.
pub fn action_schema() -> utoipa::openapi::Object {
    crate::domain::schema::one_of(&ACTIONS, "`suspend` needs `durationHours`")
}
/// Default and largest admin page.
pub(super) const ADMIN_DEFAULT_LIMIT: i64 = 50;
pub(super) const ADMIN_MAX_LIMIT: i64 = 200;

/// A report's description: at most 2,000 printable characters (lines and tabs allowed).
const DESCRIPTION: TextField = TextField {
    code: "invalid_description",
    message: "the description is at most 2,000 printable characters",
    max_chars: 2_000,
    required: false,
    multiline: true,
    padding: Padding::Trim,
};
/// A moderator's note or redaction reason: at most 2,000 printable characters.
pub(super) const NOTE: TextField = TextField {
    code: "invalid_note",
    message: "notes are at most 2,000 printable characters",
    ..DESCRIPTION
};
/// Why a conversation is held or a user erased: a note that may not be empty.
pub(super) const REASON: TextField = TextField {
    message: "a reason is 1-2,000 printable characters",
    required: true,
    ..NOTE
};

/// What a user reports.
pub struct ReportInput<'a> {
    pub reported_user_id: &'a str,
    pub conversation_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub category: &'a str,
    pub description: &'a str,
    /// Also block the reported user.
    pub block: bool,
}

/// What a moderator asks for: `warn`, `suspend` (with 1-8760 hours), `ban` or `dismiss`.
pub struct ActionInput<'a> {
    pub action: &'a str,
    pub duration_hours: Option<i32>,
    pub note: &'a str,
}

impl ChatCore {
    /// Blocks `target` for `blocker` everywhere; false when already blocked.
    pub async fn block(&self, blocker: &UserId, target: &str) -> Result<bool, ChatError> {
        let target = UserId::parse(target)?;
        if &target == blocker {
            return Err(ChatError::forbidden(
                "self_block",
                "you cannot block yourself",
            ));
        }
        // Limited before the lookup: probing which ids exist is slow.
        self.safety.check_limit(blocker, LimitKind::Blocks).await?;
        if users::find(&self.pool, &target).await?.is_none() {
            return Err(ChatError::NotFound { what: "user" });
        }
        let created = blocks::block(&self.pool, blocker, &target).await?;
        if created {
            self.block_changed(blocker, &target, true).await?;
        }
        Ok(created)
    }

    /// Lifts a block (nothing happens when there was none).
    pub async fn unblock(&self, blocker: &UserId, target: &str) -> Result<(), ChatError> {
        let Ok(target) = UserId::parse(target) else {
            return Err(ChatError::NotFound { what: "user" });
        };
        if blocks::unblock(&self.pool, blocker, &target).await? {
            self.block_changed(blocker, &target, false).await?;
        }
        Ok(())
    }

    /// The users `blocker` blocks, newest first.
    pub async fn blocked_users(
        &self,
        blocker: &UserId,
    ) -> Result<Vec<(UserSummary, DateTime<Utc>)>, ChatError> {
        blocks::list(&self.pool, blocker).await
    }

    /// Tells the live actors of the conversations the two share whether a
    /// block now stands between them, stops them watching each other's
    /// presence, and tells the blocker's own connections.
    async fn block_changed(
        &self,
        blocker: &UserId,
        blocked: &UserId,
        created: bool,
    ) -> Result<(), ChatError> {
        let still_blocked = blocks::between(&self.pool, blocker, blocked).await?;
        for conversation in blocks::shared_conversations(&self.pool, blocker, blocked).await? {
            let command = Command::SetBlock {
                blocker: blocker.clone(),
                blocked: blocked.clone(),
                blocking: created,
            };
            self.dispatcher
                .dispatch(ConversationId(conversation), command)
                .await?;
        }
        if still_blocked {
            self.presence.forget_pair(blocker, blocked);
        }
        let user_id = blocked.to_string();
        let event = if created {
            ServerEvent::BlockCreated { user_id }
        } else {
            ServerEvent::BlockRemoved { user_id }
        };
        self.publish(std::slice::from_ref(blocker), event);
        Ok(())
    }

    /// Files a user's report; the evidence (the messages around the reported
    /// one, the participants and the context) is frozen now. Returns the
    /// report's id.
    pub async fn report(
        &self,
        reporter: &UserId,
        input: ReportInput<'_>,
    ) -> Result<Uuid, ChatError> {
        let reported = UserId::parse(input.reported_user_id)?;
        if &reported == reporter {
            return Err(ChatError::forbidden(
                "self_report",
                "you cannot report yourself",
            ));
        }
        if !CATEGORIES.contains(&input.category) {
            return Err(ChatError::invalid(
                "invalid_category",
                "category must be spam, harassment, scam, inappropriate or other",
            ));
        }
        let description = DESCRIPTION.check(input.description)?;
        if input.message_id.is_some() && input.conversation_id.is_none() {
            return Err(ChatError::invalid(
                "conversation_required",
                "a reported message needs its conversationId",
            ));
        }
        self.safety
            .check_limit(reporter, LimitKind::Reports)
            .await?;
        if let Some(conversation) = input.conversation_id.map(ConversationId) {
            if !conversations::is_participant(&self.pool, conversation, reporter).await? {
                return Err(ChatError::conversation_not_found());
            }
            if let Some(message) = input.message_id
                && !conversations::has_message(&self.pool, conversation, message).await?
            {
                return Err(ChatError::NotFound { what: "message" });
            }
        }
        // Only someone who wrote to the reporter can be reported (in that
        // conversation, when one is named): nobody is reported from afar.
        // Unknown and unrelated users get the same answer.
        if !reports::wrote_to(&self.pool, &reported, reporter, input.conversation_id).await? {
            return Err(ChatError::NotFound { what: "user" });
        }
        let id = reports::create(
            &self.pool,
            &NewReport {
                reporter,
                reported: &reported,
                conversation: input.conversation_id,
                message: input.message_id,
                category: input.category,
                description,
                evidence_messages: self.safety.evidence_messages(),
            },
        )
        .await?;
        self.safety.reported(&reported).await;
        if input.block {
            self.block(reporter, reported.as_str()).await?;
        }
        Ok(id)
    }

    /// The moderation queue: reports with `status` (`open` by default,
    /// `actioned` or `dismissed`), newest first.
    pub async fn report_queue(
        &self,
        status: Option<&str>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<ReportView>, ChatError> {
        let status = status.unwrap_or("open");
        if !REPORT_STATUSES.contains(&status) {
            return Err(ChatError::invalid(
                "invalid_status",
                "status must be open, actioned or dismissed",
            ));
        }
        let before = cursor.map(KeysetCursor::decode).transpose()?;
        let limit = page_limit(limit, ADMIN_DEFAULT_LIMIT, ADMIN_MAX_LIMIT)?;
        let (items, has_more) = reports::list(&self.pool, status, before, limit).await?;
        let next_cursor = has_more
            .then(|| {
                items.last().map(|r| {
                    KeysetCursor {
                        at: r.created_at,
                        id: r.id,
                    }
                    .encode()
                })
            })
            .flatten();
        Ok(Page::new(items, next_cursor))
    }

    /// One report with its frozen evidence (the read is audited).
    pub async fn report_for_moderator(
        &self,
        admin: &UserId,
        id: Uuid,
    ) -> Result<ReportView, ChatError> {
        reports::get(&self.pool, id, admin)
            .await?
            .ok_or(ChatError::NotFound { what: "report" })
    }

    /// Acts on a report: warn (a `system.notice` to the user), suspend (no
    /// sending or starting conversations until then), ban (both with a
    /// `system.notice` `messaging_suspended`), or dismiss. Returns the action taken and the reported user.
    pub async fn act_on_report(
        &self,
        admin: &UserId,
        report: Uuid,
        input: ActionInput<'_>,
    ) -> Result<(ModerationAction, UserId), ChatError> {
        let note = NOTE.check(input.note)?;
        if input
            .duration_hours
            .is_some_and(|hours| !(1..=8760).contains(&hours))
        {
            return Err(ChatError::invalid(
                "invalid_duration",
                "durationHours is between 1 and 8760",
            ));
        }
        let action = match (input.action, input.duration_hours) {
            ("warn", _) => ModerationAction::Warn,
            ("suspend", Some(hours)) => ModerationAction::Suspend { hours },
            ("suspend", _) => {
                return Err(ChatError::invalid(
                    "invalid_duration",
                    "suspend needs durationHours between 1 and 8760",
                ));
            }
            ("ban", _) => ModerationAction::Ban,
            ("dismiss", _) => ModerationAction::Dismiss,
            _ => {
                return Err(ChatError::invalid(
                    "invalid_action",
                    "action must be warn, suspend, ban or dismiss",
                ));
            }
        };
        let now = self.safety.clock().now();
        let target = reports::act(&self.pool, report, admin, action, note, now)
            .await?
            .ok_or(ChatError::NotFound { what: "report" })?;
        self.safety.sanction_changed(&target);
        self.tell_cluster(&Notice::SanctionChanged(target.clone()))
            .await;
        let notice = match action {
            ModerationAction::Warn => Some(ServerEvent::SystemNotice {
                code: "warning".into(),
                message: if note.is_empty() {
                    "A moderator warned you about your messages.".into()
                } else {
                    note.to_owned()
                },
            }),
            // The user's composer learns at once, in the words a send would
            // get: the same rule answers both.
            ModerationAction::Suspend { .. } | ModerationAction::Ban => {
                match self.safety.check_may_post(&target).await {
                    Err(ChatError::Forbidden { code, message }) => {
                        Some(ServerEvent::SystemNotice {
                            code: code.into(),
                            message,
                        })
                    }
                    _ => None,
                }
            }
            ModerationAction::Dismiss => None,
        };
        if let Some(notice) = notice {
            self.publish(std::slice::from_ref(&target), notice);
        }
        // A suspension or a ban also ends the sessions opened before it.
        if matches!(
            action,
            ModerationAction::Suspend { .. } | ModerationAction::Ban
        ) {
            self.close_sessions(&target);
            self.tell_cluster(&Notice::SessionsClosed(target.clone()))
                .await;
        }
        Ok((action, target))
    }

    /// Hides a message's content from participants (`message.updated` with a
    /// placeholder body); the original stays for moderators and evidence.
    pub async fn redact(
        &self,
        admin: &UserId,
        message: Uuid,
        reason: &str,
    ) -> Result<Message, ChatError> {
        let reason = NOTE.check(reason)?;
        let message = messages::redact(&self.pool, message, admin, reason)
            .await?
            .ok_or(ChatError::NotFound { what: "message" })?;
        let participants = self.participants_of(message.conversation_id).await?;
        self.publish(&participants, ServerEvent::MessageUpdated(message.clone()));
        Ok(message)
    }

    /// Puts a conversation on legal hold: exempt from retention until
    /// released (audited; again changes the reason).
    pub async fn hold_conversation(
        &self,
        admin: &UserId,
        id: ConversationId,
        reason: &str,
    ) -> Result<conversations::Hold, ChatError> {
        let reason = REASON.check(reason)?;
        conversations::hold(&self.pool, id.0, admin, reason)
            .await?
            .ok_or_else(ChatError::conversation_not_found)
    }

    /// Releases a conversation's legal hold (audited); 404 when not held.
    pub async fn release_conversation(
        &self,
        admin: &UserId,
        id: ConversationId,
    ) -> Result<(), ChatError> {
        if conversations::release(&self.pool, id.0, admin).await? {
            Ok(())
        } else {
            Err(ChatError::NotFound { what: "hold" })
        }
    }

    /// A conversation's legal hold; 404 when not held.
    pub async fn conversation_hold(
        &self,
        id: ConversationId,
    ) -> Result<conversations::Hold, ChatError> {
        conversations::hold_of(&self.pool, id.0)
            .await?
            .ok_or(ChatError::NotFound { what: "hold" })
    }

    /// A conversation's newest messages as written (the read is audited).
    pub async fn conversation_for_moderator(
        &self,
        admin: &UserId,
        id: ConversationId,
        limit: Option<i64>,
    ) -> Result<Vec<Message>, ChatError> {
        let limit = page_limit(limit, ADMIN_DEFAULT_LIMIT, ADMIN_MAX_LIMIT)?;
        messages::admin_page(&self.pool, id, admin, limit).await
    }

    /// The audit log, newest first, filtered by actor, target and action.
    pub async fn audit_log(
        &self,
        filter: &AuditFilter<'_>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<AuditRow>, ChatError> {
        let before = cursor.map(id_cursor).transpose()?;
        let limit = page_limit(limit, ADMIN_DEFAULT_LIMIT, ADMIN_MAX_LIMIT)?;
        let filters = [filter.actor, filter.target, filter.action];
        if !filters
            .into_iter()
            .flatten()
            .all(crate::persistence::storable)
        {
            return Ok(Page::new(Vec::new(), None));
        }
        let (items, has_more) = audit::list(&self.pool, filter, before, limit).await?;
        let next_cursor = has_more
            .then(|| items.last().map(|r| r.id.to_string()))
            .flatten();
        Ok(Page::new(items, next_cursor))
    }
}
