-- The newest message a `new_message` notification stands for: jobs may run
-- out of order (several consumers, several nodes), and the preview must stay
-- that of the newest message.
ALTER TABLE notifications ADD COLUMN last_seq bigint NOT NULL DEFAULT 0;
