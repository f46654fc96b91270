-- The fence between two nodes that both believe they own a conversation:
-- each actor that starts takes the next epoch, and every message write
-- checks that it still holds the newest one (see persistence::conversations::take_over).
ALTER TABLE conversations ADD COLUMN owner_epoch bigint NOT NULL DEFAULT 0;
