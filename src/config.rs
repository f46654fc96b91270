//! Typed settings for the whole server, in sections, from three layers:
//! defaults < an optional TOML file (`PARLEY_CONFIG=path`) < `PARLEY_*`
//! environment variables.
//!
//! Every knob is listed once, in [`KNOBS`], with its file section and key,
//! its environment variable and how to apply it; both layers go through the
//! same parser, so a value means the same wherever it is written. Every knob
//! has a default that works on a development machine with a local Postgres,
//! so `parley serve` needs no configuration at all (the README's table lists
//! them). An unknown key in the file is refused, so a typo cannot pass
//! unnoticed. Values that are secrets are wrapped in [`Secret`] so they
//! never reach a log line or a `Debug` dump.
//!
//! Sections: `server`, `auth`, `database`, `chat`, `realtime`, `limits`,
//! `cluster`, `jobs`, `mail`, `push`; the blob settings join as a section of their own.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

/// The longest lifetime a token may claim unless configured otherwise (a day).
pub const DEFAULT_JWT_MAX_TTL_SECS: u64 = 86_400;

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

/// All server settings. Construct with [`Settings::load`] or start from
/// [`Settings::default`] and adjust fields (tests do this).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub database: DatabaseSettings,
    pub chat: ChatSettings,
    pub realtime: RealtimeSettings,
    pub limits: RateLimits,
    pub cluster: ClusterSettings,
    pub jobs: JobSettings,
    pub mail: MailSettings,
    pub push: PushSettings,
    pub attachments: AttachmentSettings,
    pub retention: RetentionSettings,
}

/// `[server]`: the HTTP listener.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Address and port of the HTTP/WebSocket listener.
    pub listen: SocketAddr,
    /// Largest accepted HTTP request body (413 beyond it).
    pub max_body_bytes: usize,
    /// Connections the kernel queues before they are accepted (capped by
    /// `net.core.somaxconn`): room for a reconnect storm.
    pub listen_backlog: u32,
    /// Open connections at most (WebSockets included); beyond, new ones are
    /// closed at once. `None`: nine tenths of the process's file limit.
    pub max_connections: Option<usize>,
    /// Connections that may wait for their first request at once; a new one
    /// pushes the oldest silent one out (a flood of silent sockets cannot
    /// keep real clients out).
    pub max_silent_connections: usize,
    /// How long a request head may take to arrive (the first one from the
    /// moment the connection opens, later ones from the previous answer).
    pub header_read_timeout: Duration,
    /// Terminate TLS 1.3 here with this certificate chain and key (PEM
    /// files; both or neither); reloaded on SIGHUP.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Serve the web app and the SDK (`/app/…`, `/sdk/…`) from this
    /// directory (laid out like the repository's `web/`) instead of the
    /// copies built into the binary: for working on them without rebuilding.
    pub web_dir: Option<std::path::PathBuf>,
}

/// `[auth]`: who may call.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// HS256 secret that user tokens are signed with.
    pub jwt_secret: Secret,
    /// The longest lifetime a token may claim (`exp` minus `iat`, or minus
    /// now): a leaked token is worth at most this long.
    pub jwt_max_ttl_secs: u64,
    /// A real identity provider's key set (`https://…/.well-known/jwks.json`):
    /// tokens are then checked against its keys (RS256/ES256…), never the
    /// secret.
    pub jwt_jwks_url: Option<String>,
    /// The `iss` such tokens must carry (unset: not checked).
    pub jwt_issuer: Option<String>,
    /// The `aud` such tokens must carry (unset: not checked).
    pub jwt_audience: Option<String>,
    /// Where the display name is in the claims (a claim's name, or a dotted
    /// path such as `public_metadata.name`).
    pub jwt_name_claim: String,
    /// Where the role is (e.g. `public_metadata.role` for Clerk,
    /// `https://example.com/role` for an Auth0 custom claim); missing:
    /// `candidate`.
    pub jwt_role_claim: String,
    /// The key the host platform sends as `X-Api-Key` on the
    /// server-to-server API (`/internal/...`). Unset: that API refuses
    /// every request.
    pub internal_api_key: Option<Secret>,
    /// Accept `?token=` on the realtime endpoints (old clients). Off: they
    /// take a bearer header or a single-use connect ticket (`?ticket=`), so
    /// tokens stay out of URLs, logs and browser histories.
    pub token_in_url: bool,
    /// `POST /dev/token` mints a token for any typed user (two browser
    /// windows chatting in a minute). `None`: on exactly when the public
    /// development secret signs tokens; never on with a real secret unless
    /// switched on here.
    pub dev_login: Option<bool>,
    /// Where the web app (`/app/`) gets its tokens in production: a URL of
    /// the host platform answering `{"token": "..."}` to a signed-in user
    /// (fetched with the platform's cookies). Unset: the development
    /// sign-in, when on.
    pub app_token_url: Option<String>,
}

/// `[database]`: Postgres, the only required service.
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub url: Secret,
    /// Maximum pooled connections.
    pub pool_size: usize,
    /// How long to wait for a pooled connection, and the statement timeout
    /// set on each connection.
    pub timeout: Duration,
}

/// `[chat]`: the product rules and the conversation actors.
#[derive(Clone, Debug)]
pub struct ChatSettings {
    /// Roles that may only start conversations inside a registered context
    /// (e.g. `candidate`).
    pub require_context_for: Vec<String>,
    /// Messages frozen into a report's evidence.
    pub report_evidence_messages: i64,
    /// A conversation actor with no traffic for this long is passivated
    /// (stopped; it is rebuilt from Postgres on next use).
    pub actor_idle_timeout: Duration,
    /// The longest any request waits on an actor before answering 503.
    pub actor_call_timeout: Duration,
    /// Concurrent messages are written in shared transactions (one commit
    /// for many); off commits each alone.
    pub group_commit: bool,
    /// Most members one context thread may have (fan-out grows with it).
    pub max_thread_members: usize,
}

/// `[realtime]`: WebSocket, SSE and long-poll connections, presence, typing.
#[derive(Clone, Debug)]
pub struct RealtimeSettings {
    /// Frames buffered per connection before it is treated as a slow
    /// consumer and closed.
    pub outbound_queue: usize,
    /// WebSocket read buffer allocated per connection (it grows for a larger
    /// frame), and the write size past which frames are written out.
    pub buffer_bytes: usize,
    /// Largest accepted client frame/message.
    pub max_frame_bytes: usize,
    /// Interval of protocol pings; a peer silent for three intervals is
    /// considered dead and its socket is reaped.
    pub ping_interval: Duration,
    /// Simultaneous realtime connections one user may hold; the next is refused.
    pub max_connections_per_user: usize,
    /// Origins allowed to open realtime connections (`/ws`, `/events`,
    /// `/events/poll`) from a browser (`*` for any). Empty: requests with no
    /// `Origin`, or whose `Origin` matches the `Host` they were sent to.
    pub allowed_origins: Vec<String>,
    /// The origin pages are served from when it is not the `Host` Parley
    /// sees (behind a proxy that rewrites `Host`): same-origin like it.
    pub public_origin: Option<String>,
    /// Reverse proxies whose `X-Forwarded-Host` (or `Forwarded: host=`) is
    /// believed for the same-origin check; from anyone else it is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A connection with no `presence.ping` for this long no longer counts
    /// towards its user being online.
    pub presence_timeout: Duration,
    /// After a user's last connection closes they stay online, and their
    /// recent events stay replayable, this long.
    pub offline_grace: Duration,
    /// Recent events kept per connected user for SSE and long-poll resumption.
    pub replay_events: usize,
    /// A typist who sends no refresh for this long is announced as stopped.
    pub typing_timeout: Duration,
    /// At most one relayed `typing.started` per user and conversation per interval.
    pub typing_throttle: Duration,
}

/// `[limits]`: per-user rate limits; the defaults are the product spec's. A
/// limit of 0 means "no limit of that kind".
#[derive(Clone, Debug)]
pub struct RateLimits {
    /// Off lifts every limit (load tests only).
    pub enabled: bool,
    pub messages_per_hour: u32,
    /// Conversations started.
    pub conversations_per_hour: u32,
    /// Lists, history pages, syncs, presence look-ups.
    pub reads_per_minute: u32,
    /// Attachments started.
    pub uploads_per_hour: u32,
    /// Reports filed (each also needs a relation with the reported user).
    pub reports_per_hour: u32,
    /// Blocks made.
    pub blocks_per_hour: u32,
}

/// `[cluster]`: several nodes joined by Redis. With no `redis_url` the node
/// runs alone and needs no Redis at all.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// Redis, the nodes' mailbox (unset: a single node, everything in process).
    pub redis_url: Option<Secret>,
    /// This node's name on the bus; unset, a fresh random one per start.
    pub node_id: Option<String>,
    /// Prefix of every Redis key and channel, so that two deployments (or
    /// two test runs) can share one Redis.
    pub redis_prefix: String,
    /// How long a node's ownership of a conversation lasts unless renewed
    /// (renewed every third of it): how soon a dead node's conversations are
    /// taken over.
    pub lease_ttl: Duration,
}

/// `[jobs]`: follow-up work (notifications) from the outbox.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// RabbitMQ (unset: each node runs the outbox itself, in process).
    pub amqp_url: Option<Secret>,
    /// Prefix of the exchange and queue names (`{prefix}.notifications`, …),
    /// so two deployments (or test runs) can share a broker.
    pub amqp_prefix: String,
    /// Jobs a consumer holds unacknowledged at once.
    pub prefetch: u16,
}

/// `[mail]`: notification emails.
#[derive(Clone, Debug)]
pub struct MailSettings {
    /// `smtp://[user:pass@]host:port` (`?tls=required` for STARTTLS) or
    /// `smtps://…`; unset, emails are written as `.eml` files to `dir`.
    pub smtp_url: Option<Secret>,
    /// Where emails go when there is no SMTP server.
    pub dir: std::path::PathBuf,
    /// The sender (`Name <address>`).
    pub from: String,
    /// The web app's address, for the links in emails.
    pub public_url: String,
    /// A user is emailed only after being away (no connection anywhere) this long.
    pub delay: Duration,
    /// At most one email per conversation per this long.
    pub batch: Duration,
    /// At most this many emails per user per hour.
    pub per_hour: u32,
}

/// `[retention]`: how long records are kept, and when the daily jobs that
/// enforce it run. A number of days of 0 keeps forever (never archives).
#[derive(Clone, Debug)]
pub struct RetentionSettings {
    /// Message bodies are purged (the message stays, redacted) after this long.
    pub message_days: u32,
    /// Audit rows are deleted after this long.
    pub audit_days: u32,
    /// Conversations idle this long are archived for both participants.
    pub auto_archive_days: u32,
    /// A finished data export can be downloaded for this long.
    pub export_hours: u32,
    /// The time of day (UTC) at which the daily jobs run (`off`: only when
    /// an admin runs them).
    pub daily_at: Option<chrono::NaiveTime>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            message_days: 730,
            audit_days: 1095,
            auto_archive_days: 90,
            export_hours: 72,
            daily_at: chrono::NaiveTime::from_hms_opt(3, 0, 0),
        }
    }
}

/// `[attachments]`: files sent in conversations, their blob store and scanner.
#[derive(Clone, Debug)]
pub struct AttachmentSettings {
    /// Off, every attachment endpoint answers 404 `attachments_disabled`.
    pub enabled: bool,
    /// `file:///path` (or a relative `file://./path`): a directory, whose
    /// signed URLs Parley serves itself; or `s3://bucket`.
    pub blob_store: String,
    /// The S3 endpoint (`http://127.0.0.1:9000`) for `s3://` stores that are
    /// not AWS itself; region and credentials come from the usual `AWS_*`
    /// variables.
    pub s3_endpoint: Option<String>,
    /// clamd: `host:port` or a Unix socket path. Unset, nothing can be
    /// scanned, so no attachment becomes available.
    pub clamd_addr: Option<String>,
    /// Largest file other than an image.
    pub max_bytes: u64,
    /// Largest image.
    pub max_image_bytes: u64,
    /// MIME types that may be sent.
    pub allowed_types: Vec<String>,
    /// Attachments are deleted this long after their upload…
    pub retention_days: u32,
    /// …and images after this long.
    pub image_retention_days: u32,
}

/// `[push]`: web push (VAPID).
#[derive(Clone, Debug)]
pub struct PushSettings {
    /// The VAPID private key: the 32-byte P-256 scalar, base64url. Unset, a
    /// fresh key is made at each start (fine for development only: browsers'
    /// subscriptions are bound to the key).
    pub vapid_private_key: Option<Secret>,
    /// Who runs this server, for push services (`mailto:` or `https:`).
    pub vapid_subject: String,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            vapid_private_key: None,
            vapid_subject: "mailto:admin@localhost".into(),
        }
    }
}

/// The types attachments may have by default: images, PDF, plain text and
/// the common office documents.
pub const DEFAULT_ATTACHMENT_TYPES: [&str; 13] = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "application/pdf",
    "text/plain",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
];

impl Default for AttachmentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            blob_store: "file://./data/blobs".into(),
            s3_endpoint: None,
            clamd_addr: None,
            max_bytes: 10 * 1024 * 1024,
            max_image_bytes: 5 * 1024 * 1024,
            allowed_types: DEFAULT_ATTACHMENT_TYPES.map(String::from).to_vec(),
            retention_days: 365,
            image_retention_days: 90,
        }
    }
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            dir: "data/mail".into(),
            from: "Parley <no-reply@localhost>".into(),
            public_url: "http://127.0.0.1:8080".into(),
            delay: Duration::from_secs(300),
            batch: Duration::from_secs(900),
            per_hour: 10,
        }
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            amqp_url: None,
            amqp_prefix: "parley".into(),
            prefetch: 256,
        }
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            node_id: None,
            redis_prefix: "parley".into(),
            lease_ttl: Duration::from_secs(10),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
            listen_backlog: 4096,
            max_connections: None,
            max_silent_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            tls_cert: None,
            tls_key: None,
            web_dir: None,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::new(DEVELOPMENT_JWT_SECRET),
            jwt_max_ttl_secs: DEFAULT_JWT_MAX_TTL_SECS,
            jwt_jwks_url: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_name_claim: "name".into(),
            jwt_role_claim: "role".into(),
            internal_api_key: None,
            token_in_url: false,
            dev_login: None,
            app_token_url: None,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://postgres@127.0.0.1:5432/parley"),
            pool_size: 32,
            timeout: Duration::from_secs(5),
        }
    }
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            require_context_for: Vec::new(),
            report_evidence_messages: 50,
            actor_idle_timeout: Duration::from_secs(600),
            actor_call_timeout: Duration::from_secs(5),
            group_commit: true,
            max_thread_members: 50,
        }
    }
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        Self {
            outbound_queue: 256,
            buffer_bytes: 1024,
            max_frame_bytes: 64 * 1024,
            ping_interval: Duration::from_secs(30),
            max_connections_per_user: 8,
            allowed_origins: Vec::new(),
            public_origin: None,
            trusted_proxies: Vec::new(),
            presence_timeout: Duration::from_secs(90),
            offline_grace: Duration::from_secs(10),
            replay_events: 256,
            typing_timeout: Duration::from_secs(6),
            typing_throttle: Duration::from_secs(2),
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            messages_per_hour: 100,
            conversations_per_hour: 20,
            reads_per_minute: 600,
            uploads_per_hour: 10,
            reports_per_hour: 10,
            blocks_per_hour: 30,
        }
    }
}

/// A setting that is set but cannot be used, or a config file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {name}: {reason}")]
pub struct ConfigError {
    name: String,
    reason: String,
}

impl ConfigError {
    fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// One setting: where it sits in the file, its environment variable, and
/// how a value is applied.
struct Knob {
    section: &'static str,
    key: &'static str,
    env: &'static str,
    apply: fn(&mut Settings, &str) -> Result<(), String>,
}

/// Every setting, once.
#[rustfmt::skip]
const KNOBS: &[Knob] = &[
    Knob { section: "server", key: "listen", env: "PARLEY_LISTEN", apply: |s, v| set(&mut s.server.listen, v) },
    Knob { section: "server", key: "max_body_bytes", env: "PARLEY_MAX_BODY_BYTES", apply: |s, v| set(&mut s.server.max_body_bytes, v) },
    Knob { section: "server", key: "listen_backlog", env: "PARLEY_LISTEN_BACKLOG", apply: |s, v| set(&mut s.server.listen_backlog, v) },
    Knob { section: "server", key: "max_connections", env: "PARLEY_MAX_CONNECTIONS", apply: |s, v| { let mut n = 0usize; set(&mut n, v)?; s.server.max_connections = Some(n).filter(|n| *n > 0); Ok(()) } },
    Knob { section: "server", key: "max_silent_connections", env: "PARLEY_MAX_SILENT_CONNECTIONS", apply: |s, v| set(&mut s.server.max_silent_connections, v) },
    Knob { section: "server", key: "header_read_timeout_secs", env: "PARLEY_HEADER_READ_TIMEOUT_SECS", apply: |s, v| secs(&mut s.server.header_read_timeout, v) },
    Knob { section: "server", key: "tls_cert", env: "PARLEY_TLS_CERT", apply: |s, v| { s.server.tls_cert = Some(v.into()).filter(|p: &std::path::PathBuf| !p.as_os_str().is_empty()); Ok(()) } },
    Knob { section: "server", key: "tls_key", env: "PARLEY_TLS_KEY", apply: |s, v| { s.server.tls_key = Some(v.into()).filter(|p: &std::path::PathBuf| !p.as_os_str().is_empty()); Ok(()) } },
    Knob { section: "server", key: "web_dir", env: "PARLEY_WEB_DIR", apply: |s, v| { s.server.web_dir = Some(v.into()).filter(|d: &std::path::PathBuf| !d.as_os_str().is_empty()); Ok(()) } },
    Knob { section: "auth", key: "jwt_secret", env: "PARLEY_JWT_SECRET", apply: |s, v| { s.auth.jwt_secret = Secret::new(v); Ok(()) } },
    Knob { section: "auth", key: "jwt_jwks_url", env: "PARLEY_JWT_JWKS_URL", apply: |s, v| { s.auth.jwt_jwks_url = web_url(v)?; Ok(()) } },
    Knob { section: "auth", key: "jwt_issuer", env: "PARLEY_JWT_ISSUER", apply: |s, v| { s.auth.jwt_issuer = Some(v.to_owned()).filter(|v| !v.is_empty()); Ok(()) } },
    Knob { section: "auth", key: "jwt_audience", env: "PARLEY_JWT_AUDIENCE", apply: |s, v| { s.auth.jwt_audience = Some(v.to_owned()).filter(|v| !v.is_empty()); Ok(()) } },
    Knob { section: "auth", key: "jwt_name_claim", env: "PARLEY_JWT_NAME_CLAIM", apply: |s, v| { s.auth.jwt_name_claim = v.to_owned(); Ok(()) } },
    Knob { section: "auth", key: "jwt_role_claim", env: "PARLEY_JWT_ROLE_CLAIM", apply: |s, v| { s.auth.jwt_role_claim = v.to_owned(); Ok(()) } },
    Knob { section: "auth", key: "jwt_max_ttl_secs", env: "PARLEY_JWT_MAX_TTL_SECS", apply: |s, v| set(&mut s.auth.jwt_max_ttl_secs, v) },
    Knob { section: "auth", key: "internal_api_key", env: "PARLEY_INTERNAL_API_KEY", apply: |s, v| { s.auth.internal_api_key = Some(Secret::new(v)); Ok(()) } },
    Knob { section: "auth", key: "token_in_url", env: "PARLEY_TOKEN_IN_URL", apply: |s, v| switch(&mut s.auth.token_in_url, v) },
    Knob { section: "auth", key: "dev_login", env: "PARLEY_DEV_LOGIN", apply: |s, v| { let mut on = false; switch(&mut on, v)?; s.auth.dev_login = Some(on); Ok(()) } },
    Knob { section: "auth", key: "app_token_url", env: "PARLEY_APP_TOKEN_URL", apply: |s, v| { s.auth.app_token_url = web_url(v)?; Ok(()) } },
    Knob { section: "database", key: "url", env: "PARLEY_DATABASE_URL", apply: |s, v| { s.database.url = Secret::new(v); Ok(()) } },
    Knob { section: "database", key: "pool_size", env: "PARLEY_DB_POOL_SIZE", apply: |s, v| set(&mut s.database.pool_size, v) },
    Knob { section: "database", key: "timeout_ms", env: "PARLEY_DB_TIMEOUT_MS", apply: |s, v| millis(&mut s.database.timeout, v) },
    Knob { section: "chat", key: "require_context_for", env: "PARLEY_REQUIRE_CONTEXT_FOR", apply: |s, v| { s.chat.require_context_for = list(v, ""); Ok(()) } },
    Knob { section: "chat", key: "report_evidence_messages", env: "PARLEY_REPORT_EVIDENCE_MESSAGES", apply: |s, v| set(&mut s.chat.report_evidence_messages, v) },
    Knob { section: "chat", key: "actor_idle_secs", env: "PARLEY_ACTOR_IDLE_SECS", apply: |s, v| secs(&mut s.chat.actor_idle_timeout, v) },
    Knob { section: "chat", key: "actor_call_timeout_ms", env: "PARLEY_ACTOR_CALL_TIMEOUT_MS", apply: |s, v| millis(&mut s.chat.actor_call_timeout, v) },
    Knob { section: "chat", key: "group_commit", env: "PARLEY_GROUP_COMMIT", apply: |s, v| switch(&mut s.chat.group_commit, v) },
    Knob { section: "chat", key: "max_thread_members", env: "PARLEY_MAX_THREAD_MEMBERS", apply: |s, v| set(&mut s.chat.max_thread_members, v) },
    Knob { section: "realtime", key: "outbound_queue", env: "PARLEY_WS_OUTBOUND_QUEUE", apply: |s, v| set(&mut s.realtime.outbound_queue, v) },
    Knob { section: "realtime", key: "buffer_bytes", env: "PARLEY_WS_BUFFER_BYTES", apply: |s, v| set(&mut s.realtime.buffer_bytes, v) },
    Knob { section: "realtime", key: "max_frame_bytes", env: "PARLEY_WS_MAX_FRAME_BYTES", apply: |s, v| set(&mut s.realtime.max_frame_bytes, v) },
    Knob { section: "realtime", key: "ping_secs", env: "PARLEY_WS_PING_SECS", apply: |s, v| secs(&mut s.realtime.ping_interval, v) },
    Knob { section: "realtime", key: "max_connections_per_user", env: "PARLEY_MAX_CONNECTIONS_PER_USER", apply: |s, v| set(&mut s.realtime.max_connections_per_user, v) },
    Knob { section: "realtime", key: "allowed_origins", env: "PARLEY_ALLOWED_ORIGINS", apply: |s, v| { s.realtime.allowed_origins = list(v, "/"); Ok(()) } },
    Knob { section: "realtime", key: "public_origin", env: "PARLEY_PUBLIC_ORIGIN", apply: |s, v| { s.realtime.public_origin = Some(v.trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()); Ok(()) } },
    Knob { section: "realtime", key: "trusted_proxies", env: "PARLEY_TRUSTED_PROXIES", apply: |s, v| { s.realtime.trusted_proxies = list(v, "").iter().map(|ip| ip.parse().map_err(|_| format!("{ip} is not an IP address"))).collect::<Result<_, _>>()?; Ok(()) } },
    Knob { section: "realtime", key: "presence_timeout_secs", env: "PARLEY_PRESENCE_TIMEOUT_SECS", apply: |s, v| secs(&mut s.realtime.presence_timeout, v) },
    Knob { section: "realtime", key: "offline_grace_ms", env: "PARLEY_OFFLINE_GRACE_MS", apply: |s, v| millis(&mut s.realtime.offline_grace, v) },
    Knob { section: "realtime", key: "replay_events", env: "PARLEY_REPLAY_EVENTS", apply: |s, v| set(&mut s.realtime.replay_events, v) },
    Knob { section: "realtime", key: "typing_timeout_ms", env: "PARLEY_TYPING_TIMEOUT_MS", apply: |s, v| millis(&mut s.realtime.typing_timeout, v) },
    Knob { section: "realtime", key: "typing_throttle_ms", env: "PARLEY_TYPING_THROTTLE_MS", apply: |s, v| millis(&mut s.realtime.typing_throttle, v) },
    Knob { section: "cluster", key: "redis_url", env: "PARLEY_REDIS_URL", apply: |s, v| { s.cluster.redis_url = (!v.is_empty()).then(|| Secret::new(v)); Ok(()) } },
    Knob { section: "cluster", key: "node_id", env: "PARLEY_NODE_ID", apply: |s, v| { s.cluster.node_id = (!v.is_empty()).then(|| v.to_owned()); Ok(()) } },
    Knob { section: "cluster", key: "redis_prefix", env: "PARLEY_REDIS_PREFIX", apply: |s, v| { s.cluster.redis_prefix = v.to_owned(); Ok(()) } },
    Knob { section: "cluster", key: "lease_ttl_ms", env: "PARLEY_LEASE_TTL_MS", apply: |s, v| millis(&mut s.cluster.lease_ttl, v) },
    Knob { section: "jobs", key: "amqp_url", env: "PARLEY_AMQP_URL", apply: |s, v| { s.jobs.amqp_url = (!v.is_empty()).then(|| Secret::new(v)); Ok(()) } },
    Knob { section: "jobs", key: "amqp_prefix", env: "PARLEY_AMQP_PREFIX", apply: |s, v| { s.jobs.amqp_prefix = v.to_owned(); Ok(()) } },
    Knob { section: "jobs", key: "prefetch", env: "PARLEY_AMQP_PREFETCH", apply: |s, v| set(&mut s.jobs.prefetch, v) },
    Knob { section: "mail", key: "smtp_url", env: "PARLEY_SMTP_URL", apply: |s, v| { s.mail.smtp_url = (!v.is_empty()).then(|| Secret::new(v)); Ok(()) } },
    Knob { section: "mail", key: "dir", env: "PARLEY_MAIL_DIR", apply: |s, v| { s.mail.dir = v.into(); Ok(()) } },
    Knob { section: "mail", key: "from", env: "PARLEY_MAIL_FROM", apply: |s, v| { s.mail.from = v.to_owned(); Ok(()) } },
    Knob { section: "mail", key: "public_url", env: "PARLEY_PUBLIC_URL", apply: |s, v| { s.mail.public_url = v.trim_end_matches('/').to_owned(); Ok(()) } },
    Knob { section: "mail", key: "email_delay_secs", env: "PARLEY_EMAIL_DELAY_SECS", apply: |s, v| secs(&mut s.mail.delay, v) },
    Knob { section: "mail", key: "email_batch_secs", env: "PARLEY_EMAIL_BATCH_SECS", apply: |s, v| secs(&mut s.mail.batch, v) },
    Knob { section: "mail", key: "emails_per_hour", env: "PARLEY_EMAILS_PER_HOUR", apply: |s, v| set(&mut s.mail.per_hour, v) },
    Knob { section: "push", key: "vapid_private_key", env: "PARLEY_VAPID_PRIVATE_KEY", apply: |s, v| { s.push.vapid_private_key = (!v.is_empty()).then(|| Secret::new(v)); Ok(()) } },
    Knob { section: "push", key: "vapid_subject", env: "PARLEY_VAPID_SUBJECT", apply: |s, v| { s.push.vapid_subject = v.to_owned(); Ok(()) } },
    Knob { section: "attachments", key: "enabled", env: "PARLEY_ATTACHMENTS", apply: |s, v| switch(&mut s.attachments.enabled, v) },
    Knob { section: "attachments", key: "blob_store", env: "PARLEY_BLOB_STORE", apply: |s, v| { s.attachments.blob_store = v.to_owned(); Ok(()) } },
    Knob { section: "attachments", key: "s3_endpoint", env: "PARLEY_S3_ENDPOINT", apply: |s, v| { s.attachments.s3_endpoint = (!v.is_empty()).then(|| v.to_owned()); Ok(()) } },
    Knob { section: "attachments", key: "clamd_addr", env: "PARLEY_CLAMD_ADDR", apply: |s, v| { s.attachments.clamd_addr = (!v.is_empty()).then(|| v.to_owned()); Ok(()) } },
    Knob { section: "attachments", key: "max_bytes", env: "PARLEY_ATTACHMENT_MAX_BYTES", apply: |s, v| set(&mut s.attachments.max_bytes, v) },
    Knob { section: "attachments", key: "max_image_bytes", env: "PARLEY_ATTACHMENT_MAX_IMAGE_BYTES", apply: |s, v| set(&mut s.attachments.max_image_bytes, v) },
    Knob { section: "attachments", key: "allowed_types", env: "PARLEY_ATTACHMENT_TYPES", apply: |s, v| { s.attachments.allowed_types = list(v, ""); Ok(()) } },
    Knob { section: "attachments", key: "retention_days", env: "PARLEY_ATTACHMENT_RETENTION_DAYS", apply: |s, v| set(&mut s.attachments.retention_days, v) },
    Knob { section: "attachments", key: "image_retention_days", env: "PARLEY_IMAGE_RETENTION_DAYS", apply: |s, v| set(&mut s.attachments.image_retention_days, v) },
    Knob { section: "retention", key: "message_days", env: "PARLEY_MESSAGE_RETENTION_DAYS", apply: |s, v| set(&mut s.retention.message_days, v) },
    Knob { section: "retention", key: "audit_days", env: "PARLEY_AUDIT_RETENTION_DAYS", apply: |s, v| set(&mut s.retention.audit_days, v) },
    Knob { section: "retention", key: "auto_archive_days", env: "PARLEY_AUTO_ARCHIVE_DAYS", apply: |s, v| set(&mut s.retention.auto_archive_days, v) },
    Knob { section: "retention", key: "export_hours", env: "PARLEY_EXPORT_RETENTION_HOURS", apply: |s, v| set(&mut s.retention.export_hours, v) },
    Knob { section: "retention", key: "daily_at", env: "PARLEY_JOBS_DAILY_AT", apply: |s, v| { s.retention.daily_at = if v == "off" { None } else { Some(chrono::NaiveTime::parse_from_str(v, "%H:%M").map_err(|e| format!("expected HH:MM (UTC) or off: {e}"))?) }; Ok(()) } },
    Knob { section: "limits", key: "enabled", env: "PARLEY_RATE_LIMITS", apply: |s, v| switch(&mut s.limits.enabled, v) },
    Knob { section: "limits", key: "messages_per_hour", env: "PARLEY_RATE_MESSAGES_PER_HOUR", apply: |s, v| set(&mut s.limits.messages_per_hour, v) },
    Knob { section: "limits", key: "conversations_per_hour", env: "PARLEY_RATE_CONVERSATIONS_PER_HOUR", apply: |s, v| set(&mut s.limits.conversations_per_hour, v) },
    Knob { section: "limits", key: "reads_per_minute", env: "PARLEY_RATE_READS_PER_MINUTE", apply: |s, v| set(&mut s.limits.reads_per_minute, v) },
    Knob { section: "limits", key: "uploads_per_hour", env: "PARLEY_RATE_UPLOADS_PER_HOUR", apply: |s, v| set(&mut s.limits.uploads_per_hour, v) },
    Knob { section: "limits", key: "reports_per_hour", env: "PARLEY_RATE_REPORTS_PER_HOUR", apply: |s, v| set(&mut s.limits.reports_per_hour, v) },
    Knob { section: "limits", key: "blocks_per_hour", env: "PARLEY_RATE_BLOCKS_PER_HOUR", apply: |s, v| set(&mut s.limits.blocks_per_hour, v) },
];

/// The variable naming the optional config file.
pub const CONFIG_FILE_VAR: &str = "PARLEY_CONFIG";

impl Settings {
    /// Defaults, then the file named by `PARLEY_CONFIG` (if set), then the
    /// process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let file = match std::env::var(CONFIG_FILE_VAR) {
            Ok(path) if !path.trim().is_empty() => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::new(CONFIG_FILE_VAR, format!("{path}: {e}")))?,
            ),
            _ => None,
        };
        Self::from_sources(file.as_deref(), |name| std::env::var(name).ok())
    }

    /// Defaults, overridden by the TOML text `file`, overridden by whatever
    /// `env` returns for each `PARLEY_*` name.
    pub fn from_sources(
        file: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let table = match file {
            Some(text) => toml::from_str::<toml::Table>(text)
                .map_err(|e| ConfigError::new(CONFIG_FILE_VAR, e.to_string()))?,
            None => toml::Table::new(),
        };
        refuse_unknown_keys(&table)?;
        let mut settings = Self::default();
        for knob in KNOBS {
            let from_env = env(knob.env).filter(|v| !v.trim().is_empty());
            let (value, name) = match from_env {
                Some(v) => (v, knob.env.to_owned()),
                None => match table.get(knob.section).and_then(|s| s.get(knob.key)) {
                    Some(v) => (
                        file_value(v).ok_or_else(|| {
                            ConfigError::new(
                                knob.file_name(),
                                "expected a string, number, boolean or list of strings",
                            )
                        })?,
                        knob.file_name(),
                    ),
                    None => continue,
                },
            };
            (knob.apply)(&mut settings, value.trim())
                .map_err(|reason| ConfigError::new(name, reason))?;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// True when the server would sign tokens with the public development secret.
    pub fn uses_development_secret(&self) -> bool {
        self.auth.jwt_secret.expose() == DEVELOPMENT_JWT_SECRET
    }

    /// Whether `POST /dev/token` mints tokens (see [`AuthSettings::dev_login`]).
    pub fn dev_login_enabled(&self) -> bool {
        self.auth
            .dev_login
            .unwrap_or_else(|| self.uses_development_secret())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("PARLEY_DB_POOL_SIZE", self.database.pool_size),
            (
                "PARLEY_MAX_CONNECTIONS_PER_USER",
                self.realtime.max_connections_per_user,
            ),
            ("PARLEY_WS_OUTBOUND_QUEUE", self.realtime.outbound_queue),
            ("PARLEY_WS_BUFFER_BYTES", self.realtime.buffer_bytes),
            ("PARLEY_MAX_BODY_BYTES", self.server.max_body_bytes),
            ("PARLEY_WS_MAX_FRAME_BYTES", self.realtime.max_frame_bytes),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(name, "must be greater than zero"));
            }
        }
        if self
            .auth
            .internal_api_key
            .as_ref()
            .is_some_and(|k| k.expose().len() < 16)
        {
            return Err(ConfigError::new(
                "PARLEY_INTERNAL_API_KEY",
                "must be at least 16 bytes",
            ));
        }
        let name_like = |v: &str| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !name_like(&self.cluster.redis_prefix) {
            return Err(ConfigError::new(
                "PARLEY_REDIS_PREFIX",
                "must be 1-64 letters, digits, '-', '_' or '.'",
            ));
        }
        if self
            .cluster
            .node_id
            .as_deref()
            .is_some_and(|id| !name_like(id))
        {
            return Err(ConfigError::new(
                "PARLEY_NODE_ID",
                "must be 1-64 letters, digits, '-', '_' or '.'",
            ));
        }
        if self.cluster.lease_ttl < Duration::from_millis(300) {
            return Err(ConfigError::new(
                "PARLEY_LEASE_TTL_MS",
                "must be at least 300 ms",
            ));
        }
        if self.auth.jwt_secret.expose().len() < 16 {
            return Err(ConfigError::new(
                "PARLEY_JWT_SECRET",
                "must be at least 16 bytes",
            ));
        }
        Ok(())
    }
}

impl Knob {
    /// How the file spells it: `section.key`.
    fn file_name(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }
}

fn refuse_unknown_keys(table: &toml::Table) -> Result<(), ConfigError> {
    for (section, keys) in table {
        let Some(keys) = keys.as_table() else {
            return Err(ConfigError::new(section.as_str(), "expected a [section]"));
        };
        for key in keys.keys() {
            if !KNOBS.iter().any(|k| k.section == section && k.key == key) {
                return Err(ConfigError::new(
                    format!("{section}.{key}"),
                    "no such setting",
                ));
            }
        }
    }
    Ok(())
}

/// A file value in the text form the environment would give it.
fn file_value(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Boolean(b) => Some(if *b { "on" } else { "off" }.to_owned()),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        _ => None,
    }
}

/// An `http(s)://` URL, or nothing for an empty value.
fn web_url(value: &str) -> Result<Option<String>, String> {
    match value {
        "" => Ok(None),
        v if (v.starts_with("https://") || v.starts_with("http://"))
            && !v.contains(char::is_whitespace)
            && !v.contains(['\'', ';', ',']) =>
        {
            Ok(Some(v.to_owned()))
        }
        _ => Err("must be an http:// or https:// URL".into()),
    }
}

fn set<T: FromStr>(field: &mut T, value: &str) -> Result<(), String>
where
    T::Err: fmt::Display,
{
    *field = value.parse().map_err(|e: T::Err| e.to_string())?;
    Ok(())
}

fn millis(field: &mut Duration, value: &str) -> Result<(), String> {
    *field = Duration::from_millis(
        value
            .parse()
            .map_err(|e: std::num::ParseIntError| e.to_string())?,
    );
    Ok(())
}

fn secs(field: &mut Duration, value: &str) -> Result<(), String> {
    *field = Duration::from_secs(
        value
            .parse()
            .map_err(|e: std::num::ParseIntError| e.to_string())?,
    );
    Ok(())
}

/// An `on`/`off` setting.
fn switch(field: &mut bool, value: &str) -> Result<(), String> {
    *field = match value {
        "on" => true,
        "off" => false,
        other => return Err(format!("expected on or off, got {other:?}")),
    };
    Ok(())
}

/// A comma-separated list, each item trimmed (and stripped of `trailing`).
fn list(value: &str, trailing: &str) -> Vec<String> {
    value
        .split(',')
        .map(|item| item.trim().trim_end_matches(trailing).to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_sources(None, |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_need_no_environment() {
        let s = from_env(&[]).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert!(s.uses_development_secret());
        assert_eq!(s.chat.actor_idle_timeout, Duration::from_secs(600));
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = from_env(&[
            ("PARLEY_LISTEN", "0.0.0.0:9000"),
            ("PARLEY_JWT_SECRET", "a-very-long-production-secret"),
            ("PARLEY_ACTOR_IDLE_SECS", "5"),
        ])
        .unwrap();
        assert_eq!(s.server.listen.port(), 9000);
        assert!(!s.uses_development_secret());
        assert_eq!(s.chat.actor_idle_timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let file = r#"
            [server]
            listen = "0.0.0.0:9100"
            [realtime]
            allowed_origins = ["https://app.example.com/", "https://admin.example.com"]
            offline_grace_ms = 250
            [chat]
            group_commit = false
        "#;
        let s = Settings::from_sources(Some(file), |name| {
            (name == "PARLEY_LISTEN").then(|| "127.0.0.1:9200".to_owned())
        })
        .unwrap();
        assert_eq!(s.server.listen.port(), 9200, "environment wins");
        assert_eq!(
            s.realtime.allowed_origins,
            vec!["https://app.example.com", "https://admin.example.com"]
        );
        assert_eq!(s.realtime.offline_grace, Duration::from_millis(250));
        assert!(!s.chat.group_commit);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_setting() {
        let err =
            Settings::from_sources(Some("[server]\nlisten_on = \"x\""), |_| None).unwrap_err();
        assert!(err.to_string().contains("server.listen_on"), "{err}");
        let err =
            Settings::from_sources(Some("[database]\npool_size = \"lots\""), |_| None).unwrap_err();
        assert!(err.to_string().contains("database.pool_size"), "{err}");
        let err = from_env(&[("PARLEY_DB_POOL_SIZE", "lots")]).unwrap_err();
        assert!(err.to_string().contains("PARLEY_DB_POOL_SIZE"));
        let err = from_env(&[("PARLEY_JWT_SECRET", "short")]).unwrap_err();
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
