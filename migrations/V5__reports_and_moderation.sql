-- Safety, part 3: reports with a frozen evidence bundle, and moderation actions.

CREATE TABLE chat_reports (
    id                uuid PRIMARY KEY,
    -- NULL for automated reports (signals raised by the server itself).
    reporter_id       text REFERENCES users (id),
    reported_user_id  text NOT NULL REFERENCES users (id),
    conversation_id   uuid REFERENCES conversations (id),
    message_id        uuid REFERENCES messages (id),
    category          text NOT NULL
                      CHECK (category IN ('spam', 'harassment', 'scam', 'inappropriate', 'other', 'automated')),
    description       text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    source            text NOT NULL DEFAULT 'user' CHECK (source IN ('user', 'automated')),
    -- Automated reports: which signal raised it.
    signal            text,
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'actioned', 'dismissed')),
    -- Frozen at report time: later redaction or retention never changes it.
    evidence          jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz,
    resolved_by       text
);
CREATE INDEX chat_reports_queue ON chat_reports (status, created_at DESC, id DESC);
CREATE INDEX chat_reports_reported ON chat_reports (reported_user_id, created_at DESC);
-- At most one open automated report per user and signal.
CREATE UNIQUE INDEX chat_reports_one_open_signal ON chat_reports (reported_user_id, signal)
    WHERE status = 'open' AND source = 'automated';

CREATE TABLE moderation_actions (
    id              bigserial PRIMARY KEY,
    report_id       uuid REFERENCES chat_reports (id),
    moderator_id    text NOT NULL,
    target_user_id  text NOT NULL,
    action          text NOT NULL CHECK (action IN ('warn', 'suspend', 'ban', 'dismiss')),
    duration_hours  integer CHECK (duration_hours BETWEEN 1 AND 8760),
    note            text NOT NULL DEFAULT '' CHECK (char_length(note) <= 2000),
    created_at      timestamptz NOT NULL DEFAULT now()
);
