//! Typed settings for the whole server, in one place.
//!
//! Every knob has a default that works on a development machine with a local
//! Postgres, so `parley serve` needs no configuration at all. Each default can be
//! overridden by a `PARLEY_*` environment variable (the table in the README lists
//! them). Values that are secrets are wrapped in [`Secret`] so they never reach a
//! log line or a `Debug` dump.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

/// The JWT signing secret used when `PARLEY_JWT_SECRET` is not set. Fine for a
/// laptop, never for production: the server logs a warning when it is in use.
pub const DEVELOPMENT_JWT_SECRET: &str = "parley-development-secret-change-me";

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (signing keys).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// All server settings. Construct with [`Settings::from_env`] or start from
/// [`Settings::default`] and adjust fields (tests do this).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `PARLEY_LISTEN`: address and port of the HTTP/WebSocket listener.
    pub listen: SocketAddr,
    /// `PARLEY_DATABASE_URL`: the Postgres connection string (the only required service).
    pub database_url: Secret,
    /// `PARLEY_DB_POOL_SIZE`: maximum pooled Postgres connections.
    pub db_pool_size: usize,
    /// `PARLEY_DB_TIMEOUT_MS`: how long to wait for a pooled connection, and the
    /// statement timeout set on each connection.
    pub db_timeout: Duration,
    /// `PARLEY_JWT_SECRET`: HS256 secret that user tokens are signed with.
    pub jwt_secret: Secret,
    /// `PARLEY_INTERNAL_API_KEY`: the key the host platform sends as
    /// `X-Api-Key` on the server-to-server API (`/internal/...`). Unset: that
    /// API refuses every request.
    pub internal_api_key: Option<Secret>,
    /// `PARLEY_REQUIRE_CONTEXT_FOR`: comma-separated roles that may only start
    /// conversations inside a registered context (e.g. `candidate`).
    pub require_context_for: Vec<String>,
    /// `PARLEY_MAX_BODY_BYTES`: largest accepted HTTP request body (413 beyond it).
    pub max_body_bytes: usize,
    /// `PARLEY_ACTOR_IDLE_SECS`: a conversation actor with no traffic for this
    /// long is passivated (stopped; it is rebuilt from Postgres on next use).
    pub actor_idle_timeout: Duration,
    /// `PARLEY_ACTOR_CALL_TIMEOUT_MS`: the longest any request waits on an actor
    /// before answering 503.
    pub actor_call_timeout: Duration,
    /// `PARLEY_WS_OUTBOUND_QUEUE`: frames buffered per socket before the
    /// connection is treated as a slow consumer and closed.
    pub ws_outbound_queue: usize,
    /// `PARLEY_WS_BUFFER_BYTES`: WebSocket read and write buffer per connection.
    pub ws_buffer_bytes: usize,
    /// `PARLEY_WS_MAX_FRAME_BYTES`: largest accepted client frame/message.
    pub ws_max_frame_bytes: usize,
    /// `PARLEY_WS_PING_SECS`: interval of protocol pings; a peer silent for
    /// three intervals is considered dead and its socket is reaped.
    pub ws_ping_interval: Duration,
    /// `PARLEY_MAX_CONNECTIONS_PER_USER`: simultaneous WebSocket/SSE/poll
    /// connections one user may hold; the next is refused.
    pub max_connections_per_user: usize,
    /// `PARLEY_ALLOWED_ORIGINS`: comma-separated origins allowed to open
    /// realtime connections from a browser (`*` for any). Empty: requests with
    /// no `Origin`, or whose `Origin` matches the `Host` they were sent to.
    pub allowed_origins: Vec<String>,
    /// `PARLEY_PRESENCE_TIMEOUT_SECS`: a connection with no `presence.ping`
    /// for this long no longer counts towards its user being online.
    pub presence_timeout: Duration,
    /// `PARLEY_OFFLINE_GRACE_MS`: after a user's last connection closes they
    /// stay online, and their recent events stay replayable, this long (a
    /// reload, a reconnecting EventSource or the next long-poll resumes).
    pub offline_grace: Duration,
    /// `PARLEY_REPLAY_EVENTS`: recent events kept per connected user for SSE
    /// and long-poll resumption.
    pub replay_events: usize,
    /// `PARLEY_GROUP_COMMIT`: `on` (default) writes concurrent messages in
    /// shared transactions (one commit for many); `off` commits each alone.
    pub group_commit: bool,
    /// `PARLEY_REPORT_EVIDENCE_MESSAGES`: messages frozen into a report's evidence.
    pub report_evidence_messages: i64,
    /// Per-user rate limits (`PARLEY_RATE_*`).
    pub rate_limits: RateLimits,
    /// `PARLEY_TYPING_TIMEOUT_MS`: a typist who sends no refresh for this long
    /// is announced as stopped.
    pub typing_timeout: Duration,
    /// `PARLEY_TYPING_THROTTLE_MS`: at most one relayed `typing.started` per
    /// user and conversation per this interval.
    pub typing_throttle: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: Secret::new("postgres://postgres@127.0.0.1:5432/parley"),
            db_pool_size: 32,
            db_timeout: Duration::from_secs(5),
            jwt_secret: Secret::new(DEVELOPMENT_JWT_SECRET),
            internal_api_key: None,
            require_context_for: Vec::new(),
            max_body_bytes: 64 * 1024,
            actor_idle_timeout: Duration::from_secs(600),
            actor_call_timeout: Duration::from_secs(5),
            ws_outbound_queue: 256,
            ws_buffer_bytes: 4 * 1024,
            ws_max_frame_bytes: 64 * 1024,
            ws_ping_interval: Duration::from_secs(30),
            max_connections_per_user: 8,
            allowed_origins: Vec::new(),
            group_commit: true,
            report_evidence_messages: 50,
            rate_limits: RateLimits::default(),
            presence_timeout: Duration::from_secs(90),
            offline_grace: Duration::from_secs(10),
            replay_events: 256,
            typing_timeout: Duration::from_secs(6),
            typing_throttle: Duration::from_secs(2),
        }
    }
}

/// Per-user rate limits; the defaults are the product spec's. A limit of 0
/// means "no limit of that kind".
#[derive(Clone, Debug)]
pub struct RateLimits {
    /// `PARLEY_RATE_LIMITS`: `off` lifts every limit (load tests only).
    pub enabled: bool,
    /// `PARLEY_RATE_MESSAGES_PER_HOUR` (100).
    pub messages_per_hour: u32,
    /// `PARLEY_RATE_CONVERSATIONS_PER_HOUR` (20): conversations started.
    pub conversations_per_hour: u32,
    /// `PARLEY_RATE_UPLOADS_PER_HOUR` (10).
    pub uploads_per_hour: u32,
    /// `PARLEY_RATE_READS_PER_MINUTE` (600): lists, history pages, syncs.
    pub reads_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            messages_per_hour: 100,
            conversations_per_hour: 20,
            uploads_per_hour: 10,
            reads_per_minute: 600,
        }
    }
}

/// A `PARLEY_*` variable that is set but cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {name}: {reason}")]
pub struct ConfigError {
    name: &'static str,
    reason: String,
}

impl Settings {
    /// Defaults, overridden by the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Defaults, overridden by whatever `lookup` returns for each `PARLEY_*` name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut s = Self::default();
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("PARLEY_LISTEN") {
            s.listen = parse("PARLEY_LISTEN", &v)?;
        }
        if let Some(v) = get("PARLEY_DATABASE_URL") {
            s.database_url = Secret::new(v);
        }
        if let Some(v) = get("PARLEY_JWT_SECRET") {
            s.jwt_secret = Secret::new(v);
        }
        if let Some(v) = get("PARLEY_INTERNAL_API_KEY") {
            s.internal_api_key = Some(Secret::new(v));
        }
        if let Some(v) = get("PARLEY_REQUIRE_CONTEXT_FOR") {
            s.require_context_for = v
                .split(',')
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect();
        }
        if let Some(v) = get("PARLEY_DB_POOL_SIZE") {
            s.db_pool_size = parse("PARLEY_DB_POOL_SIZE", &v)?;
        }
        if let Some(v) = get("PARLEY_DB_TIMEOUT_MS") {
            s.db_timeout = Duration::from_millis(parse("PARLEY_DB_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get("PARLEY_MAX_BODY_BYTES") {
            s.max_body_bytes = parse("PARLEY_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("PARLEY_ACTOR_IDLE_SECS") {
            s.actor_idle_timeout = Duration::from_secs(parse("PARLEY_ACTOR_IDLE_SECS", &v)?);
        }
        if let Some(v) = get("PARLEY_ACTOR_CALL_TIMEOUT_MS") {
            s.actor_call_timeout =
                Duration::from_millis(parse("PARLEY_ACTOR_CALL_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get("PARLEY_WS_OUTBOUND_QUEUE") {
            s.ws_outbound_queue = parse("PARLEY_WS_OUTBOUND_QUEUE", &v)?;
        }
        if let Some(v) = get("PARLEY_WS_BUFFER_BYTES") {
            s.ws_buffer_bytes = parse("PARLEY_WS_BUFFER_BYTES", &v)?;
        }
        if let Some(v) = get("PARLEY_WS_MAX_FRAME_BYTES") {
            s.ws_max_frame_bytes = parse("PARLEY_WS_MAX_FRAME_BYTES", &v)?;
        }
        if let Some(v) = get("PARLEY_WS_PING_SECS") {
            s.ws_ping_interval = Duration::from_secs(parse("PARLEY_WS_PING_SECS", &v)?);
        }
        if let Some(v) = get("PARLEY_MAX_CONNECTIONS_PER_USER") {
            s.max_connections_per_user = parse("PARLEY_MAX_CONNECTIONS_PER_USER", &v)?;
        }
        if let Some(v) = get("PARLEY_ALLOWED_ORIGINS") {
            s.allowed_origins = v
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect();
        }
        if let Some(v) = get("PARLEY_PRESENCE_TIMEOUT_SECS") {
            s.presence_timeout = Duration::from_secs(parse("PARLEY_PRESENCE_TIMEOUT_SECS", &v)?);
        }
        if let Some(v) = get("PARLEY_OFFLINE_GRACE_MS") {
            s.offline_grace = Duration::from_millis(parse("PARLEY_OFFLINE_GRACE_MS", &v)?);
        }
        if let Some(v) = get("PARLEY_REPLAY_EVENTS") {
            s.replay_events = parse("PARLEY_REPLAY_EVENTS", &v)?;
        }
        if let Some(v) = get("PARLEY_GROUP_COMMIT") {
            s.group_commit = parse_switch("PARLEY_GROUP_COMMIT", &v)?;
        }
        if let Some(v) = get("PARLEY_REPORT_EVIDENCE_MESSAGES") {
            s.report_evidence_messages = parse("PARLEY_REPORT_EVIDENCE_MESSAGES", &v)?;
        }
        if let Some(v) = get("PARLEY_RATE_LIMITS") {
            s.rate_limits.enabled = parse_switch("PARLEY_RATE_LIMITS", &v)?;
        }
        if let Some(v) = get("PARLEY_RATE_MESSAGES_PER_HOUR") {
            s.rate_limits.messages_per_hour = parse("PARLEY_RATE_MESSAGES_PER_HOUR", &v)?;
        }
        if let Some(v) = get("PARLEY_RATE_CONVERSATIONS_PER_HOUR") {
            s.rate_limits.conversations_per_hour = parse("PARLEY_RATE_CONVERSATIONS_PER_HOUR", &v)?;
        }
        if let Some(v) = get("PARLEY_RATE_UPLOADS_PER_HOUR") {
            s.rate_limits.uploads_per_hour = parse("PARLEY_RATE_UPLOADS_PER_HOUR", &v)?;
        }
        if let Some(v) = get("PARLEY_RATE_READS_PER_MINUTE") {
            s.rate_limits.reads_per_minute = parse("PARLEY_RATE_READS_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("PARLEY_TYPING_TIMEOUT_MS") {
            s.typing_timeout = Duration::from_millis(parse("PARLEY_TYPING_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get("PARLEY_TYPING_THROTTLE_MS") {
            s.typing_throttle = Duration::from_millis(parse("PARLEY_TYPING_THROTTLE_MS", &v)?);
        }
        s.validate()?;
        Ok(s)
    }

    /// True when the server would sign tokens with the public development secret.
    pub fn uses_development_secret(&self) -> bool {
        self.jwt_secret.expose() == DEVELOPMENT_JWT_SECRET
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("PARLEY_DB_POOL_SIZE", self.db_pool_size),
            (
                "PARLEY_MAX_CONNECTIONS_PER_USER",
                self.max_connections_per_user,
            ),
            ("PARLEY_WS_OUTBOUND_QUEUE", self.ws_outbound_queue),
            ("PARLEY_WS_BUFFER_BYTES", self.ws_buffer_bytes),
            ("PARLEY_MAX_BODY_BYTES", self.max_body_bytes),
            ("PARLEY_WS_MAX_FRAME_BYTES", self.ws_max_frame_bytes),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError {
                    name,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        if self
            .internal_api_key
            .as_ref()
            .is_some_and(|k| k.expose().len() < 16)
        {
            return Err(ConfigError {
                name: "PARLEY_INTERNAL_API_KEY",
                reason: "must be at least 16 bytes".into(),
            });
        }
        if self.jwt_secret.expose().len() < 16 {
            return Err(ConfigError {
                name: "PARLEY_JWT_SECRET",
                reason: "must be at least 16 bytes".into(),
            });
        }
        Ok(())
    }
}

/// An `on`/`off` setting.
fn parse_switch(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(ConfigError {
            name,
            reason: format!("expected on or off, got {other:?}"),
        }),
    }
}

fn parse<T: FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError {
        name,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_environment() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(s.uses_development_secret());
        assert_eq!(s.actor_idle_timeout, Duration::from_secs(600));
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = Settings::from_lookup(|name| match name {
            "PARLEY_LISTEN" => Some("0.0.0.0:9000".into()),
            "PARLEY_JWT_SECRET" => Some("a-very-long-production-secret".into()),
            "PARLEY_ACTOR_IDLE_SECS" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert!(!s.uses_development_secret());
        assert_eq!(s.actor_idle_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_name() {
        let err = Settings::from_lookup(|name| {
            (name == "PARLEY_DB_POOL_SIZE").then(|| "lots".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("PARLEY_DB_POOL_SIZE"));
        let err =
            Settings::from_lookup(|name| (name == "PARLEY_JWT_SECRET").then(|| "short".into()))
                .unwrap_err();
        assert!(err.to_string().contains("16 bytes"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings::default();
        let dump = format!("{s:?}");
        assert!(!dump.contains(DEVELOPMENT_JWT_SECRET));
        assert!(dump.contains("[redacted]"));
    }
}
