-- A legal hold: an admin keeps a conversation out of retention (and, later,
-- erasure) until released. A conversation with an open report is held
-- without this (see persistence::attachments::expire).
ALTER TABLE conversations
    ADD COLUMN held_at timestamptz,
    ADD COLUMN held_by text,
    ADD COLUMN hold_reason text;
