-- Data exports (GDPR): a person asks for everything Parley holds about
-- them; a job writes it to the blob store as one JSON document, which they
-- download through a short-lived link until it expires (export_cleanup).
CREATE TABLE data_exports (
    id            uuid PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (id),
    requested_by  text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'ready', 'failed', 'expired')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    expires_at    timestamptz,
    size          bigint,
    error         text
);
CREATE INDEX data_exports_by_user ON data_exports (user_id, created_at DESC);
CREATE INDEX data_exports_expiring ON data_exports (expires_at) WHERE status = 'ready';
