//! The `users` table: upserted from token claims (and, later, by the
//! server-to-server API), read for participant summaries.

use std::collections::HashMap;

use deadpool_postgres::Pool;

use super::{
    batch::{BatchJob, BatchLimits},
    client, timed,
};
use crate::domain::{
    ChatError, UserId,
    ids::SYSTEM_SENDER,
    model::{NotificationPreferences, UserSummary},
    text::{Padding, TextField},
};

/// Roles a user may have (DESIGN.md §3).
pub const ROLES: [&str; 4] = ["recruiter", "company", "candidate", "admin"];

/// A role as the OpenAPI document states it.
pub fn role_schema() -> utoipa::openapi::Object {
    crate::domain::schema::one_of(&ROLES, "The user's role on the platform")
}

/// A display name as the OpenAPI document states it.
pub fn name_schema() -> utoipa::openapi::Object {
    NAME.schema()
}

/// A display name: 1-200 printable characters, trimmed.
const NAME: TextField = TextField {
    code: "invalid_name",
    message: "name must be 1-200 printable characters",
    max_chars: 200,
    required: true,
    multiline: false,
    padding: Padding::Trim,
};
/// Longest email kept; longer, empty or unprintable ones are dropped.
const MAX_EMAIL_BYTES: usize = 320;

/// What a token (or the platform) says about a user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserProfile {
    pub id: UserId,
    pub name: String,
    pub role: String,
    pub email: Option<String>,
}

impl UserProfile {
    /// Validates a user's claims: a valid id, one of [`ROLES`], a 1-200
    /// character printable name (trimmed); an empty or over-long email is dropped.
    pub fn new(
        id: &str,
        name: &str,
        role: String,
        email: Option<String>,
    ) -> Result<Self, ChatError> {
        let id = UserId::parse(id)?;
        if id.as_str() == SYSTEM_SENDER {
            return Err(ChatError::invalid(
                "invalid_user_id",
                "that user id is reserved",
            ));
        }
        if !ROLES.contains(&role.as_str()) {
            return Err(ChatError::invalid(
                "invalid_role",
                "role must be one of recruiter, company, candidate, admin",
            ));
        }
        let name = NAME.check(name)?;
        Ok(Self {
            id,
            name: name.to_owned(),
            role,
            email: email.filter(|e| {
                !e.is_empty() && e.len() <= MAX_EMAIL_BYTES && !e.chars().any(char::is_control)
            }),
        })
    }
}

/// Upserting users seen for the first time (from token claims), as a
/// batched job: a burst of new users connecting costs one statement and one
/// commit per batch, not per user.
pub struct Upserts;

impl BatchJob for Upserts {
    type Item = UserProfile;
    /// Whether the user's account was erased (nothing was written then).
    type Output = bool;
    const NAME: &'static str = "user_upserts";
    const LIMITS: BatchLimits = BatchLimits::PER_CONNECT;

    /// Inserts each user or refreshes name, role and email when they changed
    /// (never those of an erased user, whose answer is `true`). One row per
    /// id: when a batch names a user twice, the last claims win.
    async fn run_batch(&self, pool: &Pool, items: &[UserProfile]) -> Result<Vec<bool>, ChatError> {
        let mut latest: std::collections::HashMap<&UserId, &UserProfile> =
            std::collections::HashMap::with_capacity(items.len());
        for user in items {
            latest.insert(&user.id, user);
        }
        let ids: Vec<&str> = latest.keys().map(|id| id.as_str()).collect();
        let names: Vec<&str> = latest.values().map(|u| u.name.as_str()).collect();
        let roles: Vec<&str> = latest.values().map(|u| u.role.as_str()).collect();
        let emails: Vec<Option<&str>> = latest.values().map(|u| u.email.as_deref()).collect();
        let db = client(pool).await?;
        let stmt = db
            .prepare_cached(
                "INSERT INTO users (id, display_name, role, email)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 ON CONFLICT (id) DO UPDATE
                   SET display_name = EXCLUDED.display_name, role = EXCLUDED.role,
                       email = EXCLUDED.email, updated_at = now()
                 WHERE users.erased_at IS NULL AND (users.display_name, users.role, users.email)
                       IS DISTINCT FROM (EXCLUDED.display_name, EXCLUDED.role, EXCLUDED.email)",
            )
            .await?;
        timed(
            "users.upsert",
            db.execute(&stmt, &[&ids, &names, &roles, &emails]),
        )
        .await?;
        let erased = db
            .prepare_cached("SELECT id FROM users WHERE id = ANY($1) AND erased_at IS NOT NULL")
            .await?;
        let erased: std::collections::HashSet<String> =
            timed("users.erased", db.query(&erased, &[&ids]))
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
        Ok(items
            .iter()
            .map(|user| erased.contains(user.id.as_str()))
            .collect())
    }
}

/// Upserts a user from the server-to-server API, which also sets `verified`.
pub async fn upsert_verified(
    pool: &Pool,
    user: &UserProfile,
    verified: bool,
) -> Result<(), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "INSERT INTO users (id, display_name, role, email, verified) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE
               SET display_name = EXCLUDED.display_name, role = EXCLUDED.role,
                   email = EXCLUDED.email, verified = EXCLUDED.verified, updated_at = now()
               WHERE users.erased_at IS NULL",
        )
        .await?;
    timed(
        "users.upsert_verified",
        db.execute(
            &stmt,
            &[
                &user.id.as_str(),
                &user.name,
                &user.role,
                &user.email,
                &verified,
            ],
        ),
    )
    .await?;
    Ok(())
}

/// A user's public summary, or `None` when the id is unknown.
pub async fn find(pool: &Pool, id: &UserId) -> Result<Option<UserSummary>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached("SELECT id, display_name, role, verified FROM users WHERE id = $1")
        .await?;
    let row = timed("users.find", db.query_opt(&stmt, &[&id.as_str()])).await?;
    Ok(row.map(|r| UserSummary {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        verified: r.get(3),
    }))
}

/// The display names of `ids`, by id (ids unknown here are left out).
pub async fn names(pool: &Pool, ids: &[&str]) -> Result<HashMap<String, String>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached("SELECT id, display_name FROM users WHERE id = ANY($1)")
        .await?;
    let rows = timed("users.names", db.query(&stmt, &[&ids])).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A user's own preferences (the `settings` jsonb column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserSettings {
    /// Whether others may see this user's read receipts (and this user theirs).
    pub read_receipts: bool,
}

/// The user's settings, with defaults for anything never set.
pub async fn settings(pool: &Pool, id: &UserId) -> Result<UserSettings, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT COALESCE((settings->>'readReceipts')::boolean, false) FROM users WHERE id = $1",
        )
        .await?;
    let row = timed("users.settings", db.query_opt(&stmt, &[&id.as_str()])).await?;
    let row = row.ok_or(ChatError::NotFound { what: "user" })?;
    Ok(UserSettings {
        read_receipts: row.get(0),
    })
}

/// The user's notification preferences (defaults for anything never set).
pub async fn notification_preferences(
    pool: &Pool,
    id: &UserId,
) -> Result<NotificationPreferences, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached("SELECT settings->'notifications' FROM users WHERE id = $1")
        .await?;
    let row = timed(
        "users.notification_preferences",
        db.query_opt(&stmt, &[&id.as_str()]),
    )
    .await?
    .ok_or(ChatError::NotFound { what: "user" })?;
    Ok(preferences_from(row.get(0)))
}

/// Replaces the user's notification preferences.
pub async fn set_notification_preferences(
    pool: &Pool,
    id: &UserId,
    preferences: &NotificationPreferences,
) -> Result<(), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "UPDATE users SET settings = jsonb_set(settings, '{notifications}', $2), updated_at = now()
             WHERE id = $1",
        )
        .await?;
    let value = serde_json::to_value(preferences)
        .map_err(|e| ChatError::internal(format!("encoding preferences: {e}")))?;
    timed(
        "users.set_notification_preferences",
        db.execute(&stmt, &[&id.as_str(), &value]),
    )
    .await?;
    Ok(())
}

/// Preferences as stored (`settings->'notifications'`); what cannot be
/// read counts as the defaults.
pub fn preferences_from(stored: Option<serde_json::Value>) -> NotificationPreferences {
    stored
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_default()
}

/// Changes the settings given (`None` leaves a setting as it is) and returns them all.
pub async fn update_settings(
    pool: &Pool,
    id: &UserId,
    read_receipts: Option<bool>,
) -> Result<UserSettings, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "UPDATE users SET
                 settings = CASE WHEN $2::boolean IS NULL THEN settings
                                 ELSE jsonb_set(settings, '{readReceipts}', to_jsonb($2::boolean)) END,
                 updated_at = now()
             WHERE id = $1
             RETURNING COALESCE((settings->>'readReceipts')::boolean, false)",
        )
        .await?;
    let row = timed(
        "users.update_settings",
        db.query_opt(&stmt, &[&id.as_str(), &read_receipts]),
    )
    .await?;
    let row = row.ok_or(ChatError::NotFound { what: "user" })?;
    Ok(UserSettings {
        read_receipts: row.get(0),
    })
}

/// What moderators have imposed on a user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sanction {
    /// No sending or starting conversations until then.
    pub suspended_until: Option<chrono::DateTime<chrono::Utc>>,
    /// No sending or starting conversations, ever (reading stays possible).
    pub banned: bool,
}

/// The user's current sanction (none for an unknown user).
pub async fn sanction(pool: &Pool, id: &UserId) -> Result<Sanction, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached("SELECT suspended_until, banned_at IS NOT NULL FROM users WHERE id = $1")
        .await?;
    let row = timed("users.sanction", db.query_opt(&stmt, &[&id.as_str()])).await?;
    Ok(row.map_or_else(Sanction::default, |r| Sanction {
        suspended_until: r.get(0),
        banned: r.get(1),
    }))
}

/// Anonymises `user` for good, with the audit record (the fact and the
/// reason, no personal data), in one transaction: the profile becomes
/// "Deleted user" with no email and no settings (notification preferences
/// included), the account is banned, and its push subscriptions, pending
/// emails and in-app notifications go, as do the previews of its messages in
/// other people's notifications. Their messages are purged afterwards, in
/// batches (`chat::housekeeping`). `None` when there is no such user;
/// `Some(false)` when they were erased already.
pub async fn erase(
    pool: &Pool,
    user: &UserId,
    admin: &UserId,
    reason: &str,
) -> Result<Option<bool>, ChatError> {
    let mut db = client(pool).await?;
    let tx = db.transaction().await?;
    let erased = tx
        .prepare_cached("SELECT erased_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE")
        .await?;
    match timed("users.erase", tx.query_opt(&erased, &[&user.as_str()])).await? {
        None => return Ok(None),
        Some(row) if row.get::<_, bool>(0) => return Ok(Some(false)),
        Some(_) => {}
    }
    let anonymise = tx
        .prepare_cached(
            "UPDATE users SET display_name = 'Deleted user', email = NULL, settings = '{}'::jsonb,
                 verified = false, banned_at = COALESCE(banned_at, now()), erased_at = now(),
                 updated_at = now()
             WHERE id = $1",
        )
        .await?;
    timed("users.erase", tx.execute(&anonymise, &[&user.as_str()])).await?;
    for sql in [
        "DELETE FROM push_subscriptions WHERE user_id = $1",
        "DELETE FROM email_queue WHERE user_id = $1",
        "DELETE FROM notifications WHERE user_id = $1",
        "UPDATE notifications SET preview = '' WHERE actor_id = $1",
        // Their exports go with the next clean-up.
        "UPDATE data_exports SET expires_at = now() WHERE user_id = $1 AND status = 'ready'",
    ] {
        let stmt = tx.prepare_cached(sql).await?;
        timed("users.erase", tx.execute(&stmt, &[&user.as_str()])).await?;
    }
    super::audit::record(
        &tx,
        &super::audit::AuditEntry {
            actor: Some(admin.as_str()),
            action: "user.erased",
            target_type: "user",
            target_id: user.as_str(),
            conversation: None,
            details: serde_json::json!({ "reason": reason }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(true))
}

/// How many of `user`'s messages still have their bodies (those kept by a
/// hold, after an erasure).
pub async fn unpurged_messages(pool: &Pool, user: &UserId) -> Result<i64, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached("SELECT count(*) FROM messages WHERE sender_id = $1 AND purged_at IS NULL")
        .await?;
    let row = timed(
        "users.unpurged_messages",
        db.query_one(&stmt, &[&user.as_str()]),
    )
    .await?;
    Ok(row.get(0))
}
