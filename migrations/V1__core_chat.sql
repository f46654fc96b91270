-- Core chat schema: users, conversations, participants, messages.
-- Invariants live in the database itself, not only in the actors:
--   * one direct conversation per ordered user pair and context,
--   * gapless, unique (conversation_id, seq) — the fence between would-be owners,
--   * unique (sender_id, client_message_id) — idempotent sends.

CREATE TABLE users (
    id            text PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 128),
    display_name  text NOT NULL CHECK (char_length(display_name) <= 200),
    role          text NOT NULL CHECK (role IN ('recruiter', 'company', 'candidate', 'admin')),
    email         text CHECK (char_length(email) <= 320),
    settings      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conversations (
    id                uuid PRIMARY KEY,
    kind              text NOT NULL DEFAULT 'direct' CHECK (kind IN ('direct', 'group')),
    -- Direct conversations name their ordered pair; groups (later) leave these null.
    user_low          text REFERENCES users (id),
    user_high         text REFERENCES users (id),
    -- '' means "no context"; (type, id) is part of the de-duplication key.
    context_type      text NOT NULL DEFAULT '' CHECK (char_length(context_type) <= 64),
    context_id        text NOT NULL DEFAULT '' CHECK (char_length(context_id) <= 128),
    context_title     text CHECK (char_length(context_title) <= 200),
    context_subtitle  text CHECK (char_length(context_subtitle) <= 200),
    created_by        text NOT NULL REFERENCES users (id),
    last_seq          bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_message_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'direct' OR (user_low IS NOT NULL AND user_high IS NOT NULL AND user_low < user_high)),
    CHECK ((context_type = '') = (context_id = ''))
);

CREATE UNIQUE INDEX conversations_direct_pair_context_key
    ON conversations (user_low, user_high, context_type, context_id)
    WHERE kind = 'direct';

CREATE TABLE conversation_participants (
    conversation_id  uuid NOT NULL REFERENCES conversations (id),
    user_id          text NOT NULL REFERENCES users (id),
    request_state    text NOT NULL DEFAULT 'none'
                     CHECK (request_state IN ('none', 'pending', 'accepted', 'declined')),
    last_read_seq    bigint NOT NULL DEFAULT 0 CHECK (last_read_seq >= 0),
    last_read_at     timestamptz,
    unread_count     integer NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    muted_at         timestamptz,
    archived_at      timestamptz,
    archive_reason   text,
    role_snapshot    text NOT NULL,
    joined_at        timestamptz NOT NULL DEFAULT now(),
    -- Denormalised "last activity" (last message, else creation) so the inbox
    -- is one index range scan per user.
    activity_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);

CREATE INDEX conversation_participants_inbox
    ON conversation_participants (user_id, activity_at DESC, conversation_id DESC);

CREATE TABLE messages (
    id                 uuid PRIMARY KEY,
    conversation_id    uuid NOT NULL REFERENCES conversations (id),
    seq                bigint NOT NULL CHECK (seq > 0),
    sender_id          text NOT NULL REFERENCES users (id),
    kind               text NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'image', 'file', 'system')),
    body               text NOT NULL CHECK (char_length(body) <= 5000),
    client_message_id  text NOT NULL CHECK (char_length(client_message_id) BETWEEN 1 AND 128),
    metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
    redacted_at        timestamptz,
    redacted_by        text,
    redaction_reason   text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    edited_at          timestamptz,
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq),
    CONSTRAINT messages_sender_client_message_id_key UNIQUE (sender_id, client_message_id)
);
