-- Follow-up work, written in the same transaction as the action that needs
-- it (a message, a moderation action), so it is never lost and never
-- invented. A relay hands rows to RabbitMQ (deleting them once confirmed),
-- or, with no broker, runs them in process (retrying with backoff).
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    job_id        uuid NOT NULL UNIQUE,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    available_at  timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX outbox_available ON outbox (available_at, id);

-- Jobs whose work is done: a job delivered twice (at-least-once) runs once.
CREATE TABLE jobs_done (
    job_id   uuid PRIMARY KEY,
    done_at  timestamptz NOT NULL DEFAULT now()
);

-- Jobs that kept failing, for an admin to look at.
CREATE TABLE dead_jobs (
    job_id      uuid PRIMARY KEY,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    attempts    integer NOT NULL,
    last_error  text,
    died_at     timestamptz NOT NULL DEFAULT now()
);

-- In-app notifications. A `new_message` notification stands for every
-- unread message of its conversation (collapsed: one row while unread).
CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    user_id          text NOT NULL REFERENCES users (id),
    kind             text NOT NULL,
    conversation_id  uuid REFERENCES conversations (id),
    actor_id         text,
    preview          text NOT NULL DEFAULT '',
    message_count    integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    read_at          timestamptz
);
CREATE INDEX notifications_by_user ON notifications (user_id, id DESC);
CREATE UNIQUE INDEX notifications_one_unread_per_conversation
    ON notifications (user_id, conversation_id) WHERE kind = 'new_message' AND read_at IS NULL;
