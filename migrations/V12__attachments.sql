-- Files sent in conversations. The bytes live in the blob store: the upload
-- at `incoming/<id>` until scanned, then the clean copies at
-- `files/<id>/<variant>` (`original`, and for images `preview` and
-- `thumbnail`). Only `available` attachments can be downloaded.
CREATE TABLE attachments (
    id               uuid PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES conversations (id),
    uploader_id      text NOT NULL REFERENCES users (id),
    filename         text NOT NULL CHECK (char_length(filename) BETWEEN 1 AND 255),
    content_type     text NOT NULL,
    declared_size    bigint NOT NULL CHECK (declared_size > 0),
    -- What was really stored (known once the upload is complete).
    size             bigint,
    sha256           text,
    status           text NOT NULL DEFAULT 'awaiting_upload'
                     CHECK (status IN ('awaiting_upload', 'pending_scan', 'available', 'blocked', 'deleted')),
    variants         text[] NOT NULL DEFAULT '{}',
    -- Why it is blocked (`infected: <signature>`, `type_mismatch`, …); for moderators.
    blocked_reason   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    uploaded_at      timestamptz,
    scanned_at       timestamptz,
    deleted_at       timestamptz
);
CREATE INDEX attachments_by_conversation ON attachments (conversation_id, created_at);
-- Retention and the clean-up of uploads never completed.
CREATE INDEX attachments_by_age ON attachments (created_at) WHERE status <> 'deleted';
