//! The `users` table: upserted from token claims (and, later, by the
//! server-to-server API), read for participant summaries.

use deadpool_postgres::Pool;

use super::{client, timed};
use crate::domain::{ChatError, UserId, model::UserSummary};

/// What a token says about its user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserProfile {
    pub id: UserId,
    pub name: String,
    pub role: String,
    pub email: Option<String>,
}

/// Inserts the user or refreshes name, role and email when they changed.
pub async fn upsert(pool: &Pool, user: &UserProfile) -> Result<(), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "INSERT INTO users (id, display_name, role, email) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE
               SET display_name = EXCLUDED.display_name, role = EXCLUDED.role,
                   email = EXCLUDED.email, updated_at = now()
             WHERE (users.display_name, users.role, users.email)
                   IS DISTINCT FROM (EXCLUDED.display_name, EXCLUDED.role, EXCLUDED.email)",
        )
        .await?;
    timed(
        "users.upsert",
        db.execute(
            &stmt,
            &[&user.id.as_str(), &user.name, &user.role, &user.email],
        ),
    )
    .await?;
    Ok(())
}

/// A user's public summary, or `None` when the id is unknown.
pub async fn find(pool: &Pool, id: &UserId) -> Result<Option<UserSummary>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached("SELECT id, display_name, role FROM users WHERE id = $1")
        .await?;
    let row = timed("users.find", db.query_opt(&stmt, &[&id.as_str()])).await?;
    Ok(row.map(|r| UserSummary {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
    }))
}
