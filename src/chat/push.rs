//! Web push, for people whose app is not in the foreground: each
//! notification whose kind has push on in the user's preferences goes to
//! every browser they subscribed, unless a connection of theirs is in the
//! foreground (they see it there) or it is their quiet hours. The payload is
//! short: the kind, the conversation, the sender's name and — unless the
//! user turned previews off — the start of the message. A subscription its
//! push service calls gone (404/410) is removed.

use serde_json::json;

use super::ChatCore;
use crate::{
    domain::{
        ChatError, UserId,
        model::{Notification, NotificationPreferences, PresenceStatus},
    },
    persistence::{push, users},
    push::{Delivery, Pusher, Subscription},
};

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
        if push::unsubscribe(&self.pool, user, endpoint).await? {
            Ok(())
        } else {
            Err(ChatError::NotFound {
                what: "subscription",
            })
        }
    }

    /// Pushes `notification` to `user`'s browsers when they should get it;
    /// failures are logged and counted, never retried (the in-app
    /// notification stands).
    pub(super) async fn push_notification(
        &self,
        user: &UserId,
        notification: &Notification,
        preferences: &NotificationPreferences,
    ) {
        if !preferences.channels(&notification.kind).push
            || preferences.quiet_until(self.safety.clock().now()).is_some()
        {
            return;
        }
        let foreground = self
            .presence
            .get(std::slice::from_ref(user))
            .await
            .pop()
            .is_some_and(|p| p.status == PresenceStatus::Online);
        if foreground {
            return;
        }
        if let Err(e) = self.push_to_browsers(user, notification, preferences).await {
            metrics::counter!("parley_push_failures_total").increment(1);
            tracing::warn!(error = %e.chain(), "a push could not be sent");
        }
    }

    async fn push_to_browsers(
        &self,
        user: &UserId,
        notification: &Notification,
        preferences: &NotificationPreferences,
    ) -> Result<(), ChatError> {
        let subscriptions = push::of_user(&self.pool, user).await?;
        if subscriptions.is_empty() {
            return Ok(());
        }
        let sender = match notification.actor_id.as_deref().map(UserId::parse) {
            Some(Ok(actor)) => users::find(&self.pool, &actor).await?.map(|u| u.name),
            _ => None,
        };
        let body = if preferences.push_preview {
            notification.preview.clone()
        } else {
            String::new()
        };
        let payload = json!({
            "type": notification.kind,
            "notificationId": notification.id,
            "conversationId": notification.conversation_id,
            "title": sender.unwrap_or_else(|| "Parley".into()),
            "body": body,
        })
        .to_string();
        for subscription in subscriptions {
            match self.pusher.send(&subscription, payload.as_bytes()).await? {
                Delivery::Accepted => {
                    metrics::counter!("parley_pushes_sent_total").increment(1);
                }
                Delivery::Gone => push::forget(&self.pool, &subscription.endpoint).await?,
            }
        }
        Ok(())
    }
}
