-- Safety, part 2: registered business contexts, pre-accepted conversations,
-- and user sanctions.

-- Contexts the host platform registers over the server-to-server API; a
-- conversation with a context must name one whose allowed users include both
-- participants.
CREATE TABLE contexts (
    context_type      text NOT NULL CHECK (char_length(context_type) BETWEEN 1 AND 64),
    context_id        text NOT NULL CHECK (char_length(context_id) BETWEEN 1 AND 128),
    title             text CHECK (char_length(title) <= 200),
    subtitle          text CHECK (char_length(subtitle) <= 200),
    -- The platform already connected these people: no message request.
    pre_accepted      boolean NOT NULL DEFAULT false,
    allowed_user_ids  text[] NOT NULL DEFAULT '{}',
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (context_type, context_id)
);

ALTER TABLE conversations ADD COLUMN pre_accepted boolean NOT NULL DEFAULT false;

ALTER TABLE users
    ADD COLUMN verified boolean NOT NULL DEFAULT false,
    ADD COLUMN suspended_until timestamptz,
    ADD COLUMN banned_at timestamptz;
