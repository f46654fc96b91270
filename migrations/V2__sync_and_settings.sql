-- Realtime support.
--   * changed_tx: the transaction that last changed a participant's view of a
--     conversation (new message, read pointer, later request/mute/archive).
--     GET /chat/sync returns rows changed at or after the client's cursor, a
--     snapshot xmin, so a change committed concurrently is never skipped.
--   * users.settings->'readReceipts' (jsonb, default off) already exists.

ALTER TABLE conversation_participants
    ADD COLUMN changed_tx bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);

CREATE INDEX conversation_participants_changes
    ON conversation_participants (user_id, changed_tx);
