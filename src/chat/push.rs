//! Web push, for people whose app is not in the foreground: each
//! notification whose kind has push on in the user's preferences goes to
//! every browser they subscribed, unless a connection of theirs is in the
//! foreground (they see it there) or it is their quiet hours. The payload is
//! short: the kind, the conversation, the sender's name and — unless the
//! user turned previews off — the start of the message. A subscription its
//! push service calls gone (404/410) is removed.

use std::collections::HashMap;

use futures_util::{StreamExt, stream};
use serde_json::json;

use super::{ChatCore, notifications::Recorded};
use crate::{
    domain::{ChatError, UserId, model::PresenceStatus},
    persistence::{push, users},
    push::{Delivery, Pusher, Subscription},
};

/// Pushes in flight at once from one batch of notifications.
const CONCURRENT_PUSHES: usize = 32;
/// Batches of notifications whose pushes go out at once.
pub(super) const BATCHES_IN_FLIGHT: usize = 1;

impl ChatCore {
    /// The key browsers subscribe with (`applicationServerKey`).
    pub fn vapid_public_key(&self) -> &str {
        self.pusher.public_key()
    }

    /// Stores a browser's subscription for `user`.
    pub async fn subscribe_push(
        &self,
        user: &UserId,
        subscription: &Subscription,
    ) -> Result<(), ChatError> {
        if subscription.endpoint.len() > 2048 {
            return Err(ChatError::invalid(
                "invalid_subscription",
                "endpoint too long",
            ));
        }
        Pusher::check(subscription)?;
        push::subscribe(&self.pool, user, subscription).await
    }

    /// Removes `user`'s subscription at `endpoint` (404 when there is none).
    pub async fn unsubscribe_push(&self, user: &UserId, endpoint: &str) -> Result<(), ChatError> {
        if crate::persistence::storable(endpoint)
            && push::unsubscribe(&self.pool, user, endpoint).await?
        {
            Ok(())
        } else {
            Err(ChatError::NotFound {
                what: "subscription",
            })
        }
    }

    /// Pushes each of `recorded` to its user's browsers when they should get
    /// it: push on for its kind, outside quiet hours, no connection in the
    /// foreground. The lookups are made once for all (presence, subscriptions,
    /// senders' names) and the pushes sent [`CONCURRENT_PUSHES`] at a time.
    /// Failures are logged and counted, never retried (the in-app
    /// notification stands).
    pub(super) async fn push_notifications(&self, recorded: &[Recorded]) {
        let now = self.safety.clock().now();
        let wanted: Vec<&Recorded> = recorded
            .iter()
            .filter(|r| {
                r.preferences.channels(&r.notification.kind).push
                    && r.preferences.quiet_until(now).is_none()
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let users: Vec<UserId> = wanted.iter().map(|r| r.user.clone()).collect();
        let presence = self.presence.get(&users).await;
        let away: Vec<&Recorded> = wanted
            .into_iter()
            .zip(presence)
            .filter(|(_, p)| p.status != PresenceStatus::Online)
            .map(|(r, _)| r)
            .collect();
        if let Err(e) = self.push_to_browsers(&away).await {
            metrics::counter!("parley_push_failures_total").increment(1);
            tracing::warn!(error = %e.chain(), "pushes could not be sent");
        }
    }

    async fn push_to_browsers(&self, away: &[&Recorded]) -> Result<(), ChatError> {
        if away.is_empty() {
            return Ok(());
        }
        let users: Vec<&str> = away.iter().map(|r| r.user.as_str()).collect();
        let subscriptions = push::of_users(&self.pool, &users).await?;
        if subscriptions.is_empty() {
            return Ok(());
        }
        let actors: Vec<&str> = away
            .iter()
            .filter_map(|r| r.notification.actor_id.as_deref())
            .collect();
        let names = users::names(&self.pool, &actors).await?;
        let mut by_user: HashMap<&str, Vec<&Subscription>> = HashMap::new();
        for (user, subscription) in &subscriptions {
            by_user.entry(user).or_default().push(subscription);
        }
        let mut sends: Vec<(Subscription, String)> = Vec::new();
        for r in away {
            let payload = payload(r, &names);
            for subscription in by_user.get(r.user.as_str()).into_iter().flatten() {
                sends.push(((*subscription).clone(), payload.clone()));
            }
        }
        let gone: Vec<String> = stream::iter(sends)
            .map(|(subscription, payload)| self.push_one(subscription, payload))
            .buffer_unordered(CONCURRENT_PUSHES)
            .filter_map(std::future::ready)
            .collect()
            .await;
        for endpoint in gone {
            push::forget(&self.pool, &endpoint).await?;
        }
        Ok(())
    }

    /// Sends one push; the endpoint back when its push service says it is gone.
    async fn push_one(&self, subscription: Subscription, payload: String) -> Option<String> {
        match self.pusher.send(&subscription, payload.as_bytes()).await {
            Ok(Delivery::Accepted) => {
                metrics::counter!("parley_pushes_sent_total").increment(1);
                None
            }
            Ok(Delivery::Gone) => Some(subscription.endpoint),
            Err(e) => {
                metrics::counter!("parley_push_failures_total").increment(1);
                tracing::warn!(error = %e.chain(), "a push could not be sent");
                None
            }
        }
    }
}

/// What a push says: short, and without the message unless the user wants previews.
fn payload(recorded: &Recorded, names: &HashMap<String, String>) -> String {
    let notification = &recorded.notification;
    let title = notification
        .actor_id
        .as_ref()
        .and_then(|actor| names.get(actor))
        .map_or("Parley", String::as_str);
    let body = if recorded.preferences.push_preview {
        notification.preview.as_str()
    } else {
        ""
    };
    json!({
        "type": notification.kind,
        "notificationId": notification.id,
        "conversationId": notification.conversation_id,
        "title": title,
        "body": body,
    })
    .to_string()
}
