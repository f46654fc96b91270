-- The message an attachment was sent in (NULL until it is sent; once only).
ALTER TABLE attachments ADD COLUMN message_id uuid REFERENCES messages (id);
CREATE INDEX attachments_by_message ON attachments (message_id) WHERE message_id IS NOT NULL;
