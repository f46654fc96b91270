-- Context threads (issue 15): one group conversation per business context
-- (a booking, a dispute), its members set by the host platform.
--   * the database enforces one thread per context,
--   * members carry their role in the business (`thread_role`),
--   * system messages (joins, leaves, the platform's own events) are sent
--     by a reserved user that no token and no platform call can name.

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('recruiter', 'company', 'candidate', 'admin', 'system'));
INSERT INTO users (id, display_name, role) VALUES ('parley:system', 'Parley', 'system')
    ON CONFLICT (id) DO NOTHING;

ALTER TABLE conversations
    ADD CONSTRAINT conversations_group_has_context CHECK (kind <> 'group' OR context_type <> '');
CREATE UNIQUE INDEX conversations_group_context_key
    ON conversations (context_type, context_id)
    WHERE kind = 'group';

-- Members right now (2 for a direct conversation): the inbox shows it.
ALTER TABLE conversations ADD COLUMN member_count integer NOT NULL DEFAULT 2;

ALTER TABLE conversation_participants
    ADD COLUMN thread_role text CHECK (char_length(thread_role) BETWEEN 1 AND 64);

-- Who left which thread, when (in the sync feed's transaction ids): a
-- reconnecting client's sync learns to drop a thread it was removed from.
-- A member who joins again loses the row.
CREATE TABLE thread_departures (
    conversation_id  uuid NOT NULL REFERENCES conversations (id),
    user_id          text NOT NULL REFERENCES users (id),
    left_at          timestamptz NOT NULL DEFAULT now(),
    changed_tx       bigint NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX thread_departures_by_user ON thread_departures (user_id, changed_tx);
