-- Keeping records exactly as long as the policy says: message and audit
-- retention, auto-archive, erasure, and the scheduled jobs that do them.

-- The one definition of "held": on legal hold, or with an open report (held
-- until the report is closed). Retention, erasure and the attachments'
-- expiry all ask this.
CREATE FUNCTION conversation_is_held(conversation uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM conversations c WHERE c.id = conversation AND c.held_at IS NOT NULL)
        OR EXISTS (SELECT 1 FROM chat_reports r WHERE r.conversation_id = conversation AND r.status = 'open')
$$;

-- Retention and erasure remove a message's body for good (`purged_at`); the
-- row, its `seq` and its metadata stay so a history has no holes. Each
-- conversation remembers how far retention got (every message up to
-- `retained_through_seq` has been purged), so a run resumes where the last
-- one stopped instead of scanning what it already did.
ALTER TABLE messages ADD COLUMN purged_at timestamptz;
ALTER TABLE conversations ADD COLUMN retained_through_seq bigint NOT NULL DEFAULT 0;

-- An erased user: their profile is anonymised and their messages purged
-- (those in held conversations once the hold ends).
ALTER TABLE users ADD COLUMN erased_at timestamptz;

-- The daily jobs: when each runs next, and who runs it now (a lease, so a
-- job runs once per cluster; a crashed runner's lease lapses).
CREATE TABLE scheduled_jobs (
    name         text PRIMARY KEY,
    next_run_at  timestamptz NOT NULL,
    lease_until  timestamptz,
    leased_by    text
);

-- Every run of a scheduled job, for operators.
CREATE TABLE job_runs (
    id            bigserial PRIMARY KEY,
    job           text NOT NULL,
    trigger       text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    requested_by  text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    rows_touched  bigint NOT NULL DEFAULT 0,
    error         text
);
CREATE INDEX job_runs_by_job ON job_runs (job, id DESC);

-- The audit log stays append-only, with one narrow exception: the audit
-- retention job deletes rows older than the cutoff it sets for its own
-- transaction (`parley.audit_purge_before`), and never a row younger than a
-- year, whatever that cutoff says. UPDATE and TRUNCATE still fail for everyone.
CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    purge_before text := current_setting('parley.audit_purge_before', true);
BEGIN
    IF TG_OP = 'DELETE' AND purge_before IS NOT NULL AND purge_before <> ''
       AND OLD.at < purge_before::timestamptz AND OLD.at < now() - interval '365 days' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
