-- Emails waiting to go out: at most one per user, conversation and kind
-- (`messages`: the unread messages of a conversation, batched; `request`: a
-- message request). Due once the user has been away long enough and the
-- conversation's previous email is old enough.
CREATE TABLE email_queue (
    user_id          text NOT NULL REFERENCES users (id),
    conversation_id  uuid NOT NULL REFERENCES conversations (id),
    kind             text NOT NULL CHECK (kind IN ('messages', 'request')),
    due_at           timestamptz NOT NULL,
    PRIMARY KEY (user_id, conversation_id, kind)
);
CREATE INDEX email_queue_due ON email_queue (due_at);

-- Emails sent (the batching window per conversation, the hourly cap per user).
CREATE TABLE email_log (
    user_id          text NOT NULL REFERENCES users (id),
    conversation_id  uuid NOT NULL REFERENCES conversations (id),
    kind             text NOT NULL,
    sent_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_log_by_user ON email_log (user_id, sent_at);
CREATE INDEX email_log_by_conversation ON email_log (user_id, conversation_id, sent_at);
