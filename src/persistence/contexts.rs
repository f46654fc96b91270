//! `contexts`: the business objects (job applications, bookings) the host
//! platform registers, with the users allowed to talk about them.

use deadpool_postgres::Pool;

use super::{client, timed};
use crate::domain::ChatError;

/// A registered context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredContext {
    pub kind: String,
    pub id: String,
    pub title: Option<String>,
    pub subtitle: Option<String>,
    /// The platform already connected these people: no message request.
    pub pre_accepted: bool,
    pub allowed_user_ids: Vec<String>,
}

/// Creates or replaces a context; true when it was new.
pub async fn upsert(pool: &Pool, ctx: &RegisteredContext) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "INSERT INTO contexts (context_type, context_id, title, subtitle, pre_accepted, allowed_user_ids)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (context_type, context_id) DO UPDATE SET
                 title = EXCLUDED.title, subtitle = EXCLUDED.subtitle, pre_accepted = EXCLUDED.pre_accepted,
                 allowed_user_ids = EXCLUDED.allowed_user_ids, updated_at = now()
             RETURNING (xmax = 0)",
        )
        .await?;
    let row = timed(
        "contexts.upsert",
        db.query_one(
            &stmt,
            &[
                &ctx.kind,
                &ctx.id,
                &ctx.title,
                &ctx.subtitle,
                &ctx.pre_accepted,
                &ctx.allowed_user_ids,
            ],
        ),
    )
    .await?;
    Ok(row.get(0))
}

/// The registered context `(kind, id)`, if any.
pub async fn find(
    pool: &Pool,
    kind: &str,
    id: &str,
) -> Result<Option<RegisteredContext>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT context_type, context_id, title, subtitle, pre_accepted, allowed_user_ids
             FROM contexts WHERE context_type = $1 AND context_id = $2",
        )
        .await?;
    let row = timed("contexts.find", db.query_opt(&stmt, &[&kind, &id])).await?;
    Ok(row.map(|r| RegisteredContext {
        kind: r.get(0),
        id: r.get(1),
        title: r.get(2),
        subtitle: r.get(3),
        pre_accepted: r.get(4),
        allowed_user_ids: r.get(5),
    }))
}
