-- Browsers' web-push subscriptions (the PushSubscription JSON), one row per
-- endpoint; removed when the push service says it is gone (404/410).
CREATE TABLE push_subscriptions (
    endpoint    text PRIMARY KEY CHECK (char_length(endpoint) <= 2048),
    user_id     text NOT NULL REFERENCES users (id),
    p256dh      text NOT NULL CHECK (char_length(p256dh) <= 256),
    auth        text NOT NULL CHECK (char_length(auth) <= 64),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_by_user ON push_subscriptions (user_id);
