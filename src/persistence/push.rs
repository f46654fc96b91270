//! Browsers' web-push subscriptions, one per endpoint.

use deadpool_postgres::Pool;

use super::{client, timed};
use crate::{
    domain::{ChatError, UserId},
    push::Subscription,
};

/// Most subscriptions one user may hold (browsers and devices).
pub const MAX_PER_USER: i64 = 20;

/// Stores `subscription` for `user` (an endpoint seen before moves to them,
/// with its new keys); refused past [`MAX_PER_USER`].
pub async fn subscribe(
    pool: &Pool,
    user: &UserId,
    subscription: &Subscription,
) -> Result<(), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth)
             SELECT $1, $2, $3, $4
             WHERE (SELECT count(*) FROM push_subscriptions WHERE user_id = $2 AND endpoint <> $1) < $5
             ON CONFLICT (endpoint) DO UPDATE SET user_id = $2, p256dh = $3, auth = $4",
        )
        .await?;
    let stored = timed(
        "push.subscribe",
        db.execute(
            &stmt,
            &[
                &subscription.endpoint,
                &user.as_str(),
                &subscription.p256dh,
                &subscription.auth,
                &MAX_PER_USER,
            ],
        ),
    )
    .await?;
    if stored == 0 {
        return Err(ChatError::invalid(
            "too_many_subscriptions",
            format!("at most {MAX_PER_USER} push subscriptions per user"),
        ));
    }
    Ok(())
}

/// Removes `user`'s subscription at `endpoint`; false when there was none.
pub async fn unsubscribe(pool: &Pool, user: &UserId, endpoint: &str) -> Result<bool, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached("DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id = $2")
        .await?;
    Ok(timed(
        "push.unsubscribe",
        db.execute(&stmt, &[&endpoint, &user.as_str()]),
    )
    .await?
        == 1)
}

/// Removes a subscription its push service said is gone.
pub async fn forget(pool: &Pool, endpoint: &str) -> Result<(), ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached("DELETE FROM push_subscriptions WHERE endpoint = $1")
        .await?;
    timed("push.forget", db.execute(&stmt, &[&endpoint])).await?;
    Ok(())
}

/// The subscriptions of `users`, each with the user it belongs to.
pub async fn of_users(
    pool: &Pool,
    users: &[&str],
) -> Result<Vec<(String, Subscription)>, ChatError> {
    let db = client(pool).await?;
    let stmt = db
        .prepare_cached(
            "SELECT user_id, endpoint, p256dh, auth FROM push_subscriptions
             WHERE user_id = ANY($1)",
        )
        .await?;
    let rows = timed("push.of_users", db.query(&stmt, &[&users])).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Subscription {
                    endpoint: r.get(1),
                    p256dh: r.get(2),
                    auth: r.get(3),
                },
            )
        })
        .collect())
}
