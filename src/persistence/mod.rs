//! Postgres access: the connection pool, the migration runner, one module
//! per aggregate, and the batched writers (`batch`, used by `group_commit`,
//! user upserts and unread-count loads). Every query is parameterised and goes through
//! `prepare_cached`, so hot paths run as prepared statements on each pooled
//! connection. Each query's latency lands in the `parley_db_query_seconds`
//! histogram, labelled by operation.

/// The one statement of "a block stands between two users, in either
/// direction", as a SQL condition on two user-id expressions. It is spliced
/// into each query's text (not a SQL function, which the planner could not
/// inline: it holds a sub-query), so every query that hides something across
/// a block — read receipts, presence contacts, the actor's snapshot — asks
/// the same question the same way. Defined before the submodules, so they
/// all see it.
macro_rules! blocked_between {
    ($a:literal, $b:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM user_blocks b WHERE (b.blocker_id = ",
            $a,
            " AND b.blocked_id = ",
            $b,
            ") OR (b.blocker_id = ",
            $b,
            " AND b.blocked_id = ",
            $a,
            "))"
        )
    };
}

/// "`blocker` blocks `blocked`" (one direction), as a SQL condition on two
/// user-id expressions: what hides a member from the member who blocked
/// them in a context thread.
macro_rules! blocks {
    ($blocker:literal, $blocked:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM user_blocks ub WHERE ub.blocker_id = ",
            $blocker,
            " AND ub.blocked_id = ",
            $blocked,
            ")"
        )
    };
}

/// Whether what `author` says or does is hidden from `viewer` in a
/// conversation of kind `kind`: in a direct conversation, any block between
/// the two (nothing flows either way); in a context thread, only the
/// viewer's own block of the author (the blocker stops seeing the blocked
/// member; the blocked member is not told and still sees the blocker).
macro_rules! hidden_from {
    ($kind:literal, $viewer:literal, $author:literal) => {
        concat!(
            "(CASE WHEN ",
            $kind,
            " = 'group' THEN ",
            blocks!($viewer, $author),
            " ELSE ",
            blocked_between!($viewer, $author),
            " END)"
        )
    };
}

pub mod attachments;
pub mod audit;
pub mod batch;
pub mod blocks;
pub mod contexts;
pub mod conversations;
pub mod email;
pub mod exports;
pub mod group_commit;
pub mod job_runs;
pub mod messages;
pub mod migrations;
pub mod notifications;
pub mod outbox;
pub mod push;
pub mod reports;
pub mod retention;
pub mod search;
pub mod threads;
pub mod tls;
pub mod users;

use std::{future::Future, str::FromStr, time::Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::{config::DatabaseSettings, domain::ChatError};

/// Builds the pool. Connections are made lazily, over TLS as the URL's
/// `sslmode` asks (see [`tls`]); each has a server-side `statement_timeout`
/// equal to the configured database timeout, and waiting for a free
/// connection is bounded by the same timeout.
pub fn connect_pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let (url, tls) = tls::from_url(settings.url.expose())?;
    let mut pg = tokio_postgres::Config::from_str(&url)?;
    let timeout_ms = settings.timeout.as_millis();
    pg.options(format!("-c statement_timeout={timeout_ms}"));
    pg.connect_timeout(settings.timeout);
    if pg.get_application_name().is_none() {
        pg.application_name("parley");
    }
    let manager = Manager::from_config(
        pg,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(settings.timeout))
        .runtime(Runtime::Tokio1)
        .build()?;
    Ok(pool)
}

/// A position in a newest-first keyset listing ordered by a time, then an id
/// (the inbox by last activity, the moderation queue by report time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeysetCursor {
    pub at: chrono::DateTime<chrono::Utc>,
    pub id: uuid::Uuid,
}

impl KeysetCursor {
    /// Opaque text form: `<microseconds since epoch>_<uuid>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at.timestamp_micros(), self.id)
    }

    /// Only what [`KeysetCursor::encode`] writes is read back.
    pub fn decode(raw: &str) -> Result<Self, ChatError> {
        let (micros, id) = raw.split_once('_').ok_or_else(bad_cursor)?;
        let micros: i64 = micros.parse().map_err(|_| bad_cursor())?;
        let cursor = Self {
            at: chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad_cursor)?,
            id: uuid::Uuid::parse_str(id).map_err(|_| bad_cursor())?,
        };
        exactly_as_issued(raw, cursor, Self::encode)
    }

    /// The cursor as the OpenAPI document states it.
    pub fn schema() -> utoipa::openapi::Object {
        crate::domain::schema::matching(
            "^(0|-?[1-9][0-9]{0,15})_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            54,
            "`nextCursor` of the previous page",
        )
    }
}

fn bad_cursor() -> ChatError {
    ChatError::invalid("invalid_cursor", "the cursor is not one this server issued")
}

/// `cursor` if `raw` is exactly how the server writes it, else the cursor
/// error: a cursor is opaque, so nothing but the issued text is read back.
pub fn exactly_as_issued<T>(
    raw: &str,
    cursor: T,
    encode: impl Fn(&T) -> String,
) -> Result<T, ChatError> {
    if encode(&cursor) == raw {
        Ok(cursor)
    } else {
        Err(bad_cursor())
    }
}

/// Decodes the cursor of a list paged by a numeric id (the last id of the
/// previous page, as the list's `nextCursor` gave it).
pub fn id_cursor(raw: &str) -> Result<i64, ChatError> {
    let id: i64 = raw.parse().map_err(|_| bad_cursor())?;
    exactly_as_issued(raw, id, i64::to_string)
}

/// A numeric-id cursor as the OpenAPI document states it.
pub fn id_cursor_schema() -> utoipa::openapi::Object {
    crate::domain::schema::matching(
        "^(0|-?[1-9][0-9]{0,17})$",
        19,
        "`nextCursor` of the previous page",
    )
}

/// Whether Postgres can hold `text` at all: a `text` value never contains
/// NUL. A lookup by a value that cannot be stored finds nothing, without
/// asking (Postgres would refuse the query).
pub fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// A read-only transaction that sees one snapshot (REPEATABLE READ): what
/// several queries read together agrees.
pub async fn snapshot(
    db: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, ChatError> {
    Ok(db
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Gets a pooled connection; failing to get one in time is a 503, not a 500.
pub async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, ChatError> {
    pool.get().await.map_err(|e| ChatError::Unavailable {
        detail: "no database connection in time".into(),
        cause: Some(Box::new(e)),
    })
}

/// Whether the database answers a trivial query now (readiness).
pub async fn ping(pool: &Pool) -> bool {
    match client(pool).await {
        Ok(db) => db.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// Runs one database operation and records its latency under `op`.
pub async fn timed<T>(op: &'static str, fut: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = fut.await;
    metrics::histogram!("parley_db_query_seconds", "op" => op).record(started.elapsed());
    out
}

/// Name of the unique constraint a database error violated, if that is what it was.
pub fn violated_constraint(err: &tokio_postgres::Error) -> Option<&str> {
    let db = err.as_db_error()?;
    (db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
        .then(|| db.constraint())
        .flatten()
}

impl From<tokio_postgres::Error> for ChatError {
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        // Lost connections, I/O failures, timeouts and conflicts may succeed on
        // retry (503); anything else, such as a query the code got wrong, is a bug (500).
        let io_failure = std::error::Error::source(&err).is_some_and(|e| e.is::<std::io::Error>());
        let retryable = err.is_closed()
            || io_failure
            || err.code().is_some_and(|c| {
                [
                    SqlState::QUERY_CANCELED,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(c)
            });
        let cause: Option<crate::domain::error::Cause> = Some(Box::new(err));
        if retryable {
            ChatError::Unavailable {
                detail: "database".into(),
                cause,
            }
        } else {
            ChatError::Internal {
                detail: "database".into(),
                cause,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_cursors_round_trip_and_reject_garbage() {
        let c = KeysetCursor {
            at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: uuid::Uuid::now_v7(),
        };
        assert_eq!(KeysetCursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "123", "abc_def", "1_not-a-uuid"] {
            assert_eq!(
                KeysetCursor::decode(bad).unwrap_err().code(),
                "invalid_cursor"
            );
        }
    }
}
