//! Parley: a self-hosted realtime chat server for two-sided marketplaces.
//!
//! Module map, top to bottom (arrows point down only):
//! * [`server`] — the one router that mounts both transports, the OpenAPI document,
//!   the listener with its connection limits, and TLS termination.
//! * [`http`] — the REST transport, and what every HTTP transport shares:
//!   [`http::AppState`], auth, the JSON error shape, the origin check, metrics.
//! * [`ws`] — the realtime transport: WebSocket gateway and client protocol,
//!   SSE and long-poll fallback (stands on `http`'s shared parts).
//! * [`jobs`] — the follow-up work of the outbox (notifications), through
//!   RabbitMQ or in process; a transport like the others, calling `chat`.
//! * [`chat`] — the application layer: every use case and policy decision,
//!   written once, and [`chat::dispatch`], the one route of every command
//!   to a conversation's actor.
//! * [`actors`] — conversation and user actors and their supervisors.
//! * [`persistence`] — Postgres: pool, migrations, one module per aggregate.
//! * [`cluster`] — what must hold across nodes: the event bus (delivering to a
//!   [`cluster::LocalSink`] the user side implements), presence, rate limits;
//!   in-process now, Redis later. Depends on nothing above it.
//! * [`domain`] — pure types and rules (ids, text, events, errors); no I/O,
//!   no transport types.
//! * [`config`] — typed settings in sections: defaults < file < `PARLEY_*`.
//! * Adapters to the outside, used by `chat`: [`mail`] (SMTP or files),
//!   [`push`] (web push), [`blobs`] (the blob store and its signed URLs),
//!   [`scanner`] (clamd), [`media`] (images re-encoded).
//!
//! [`Application::build`] wires it together and binds the listener (port 0 in
//! tests); [`Application::run_until_stopped`] serves until SIGTERM or Ctrl-C.

pub mod actors;
pub mod blobs;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod mail;
pub mod media;
pub mod persistence;
pub mod push;
pub mod scanner;
pub mod server;
pub mod ws;

use std::{future::Future, sync::Arc, sync::OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::{
    chat::ChatCore,
    config::Settings,
    http::{AppState, auth::JwtKeys},
};

/// Latency buckets (seconds) for every histogram: sub-millisecond to seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A built server, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    listening: server::listener::Listening,
    port: u16,
    state: AppState,
    /// Tells realtime connections the server is going away.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The outbox relay and job consumers (or the in-process runner).
    jobs: jobs::Jobs,
}

/// How long shutdown waits for realtime connections to say goodbye, and for
/// conversation actors to finish the commands they already hold.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Application {
    /// Connects to Postgres, applies migrations, starts the actor system and
    /// binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(domain::clock::SystemClock)).await
    }

    /// As [`Application::build`], with the clock the rules use (tests pass a
    /// `ManualClock` to let a suspension expire without waiting).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn domain::clock::Clock>,
    ) -> anyhow::Result<Self> {
        if settings.uses_development_secret() {
            tracing::warn!(
                "PARLEY_JWT_SECRET is not set: tokens are signed with the public development secret"
            );
        }
        let pool = persistence::connect_pool(&settings.database)?;
        let applied = persistence::migrations::run(&pool).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        let chat = ChatCore::start(pool, &settings, clock).await?;
        let jobs = jobs::Jobs::start(&chat, &settings.jobs).await?;
        let listener = listen(settings.server.listen, settings.server.listen_backlog)?;
        let port = listener.local_addr()?.port();
        let limits = server::listener::ConnectionLimits {
            max_connections: settings
                .server
                .max_connections
                .unwrap_or_else(default_connection_cap),
            max_silent: settings.server.max_silent_connections,
            header_read_timeout: settings.server.header_read_timeout,
        };
        tracing::info!(cap = limits.max_connections, "connection cap");
        let tls = match (&settings.server.tls_cert, &settings.server.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(server::tls::Tls::load(cert, key)?)),
            (None, None) => None,
            _ => anyhow::bail!("PARLEY_TLS_CERT and PARLEY_TLS_KEY go together"),
        };
        let listening = server::listener::Listening { limits, tls };
        let (shutdown, shutdown_signal) = tokio::sync::watch::channel(false);
        let state = AppState {
            shutdown: shutdown_signal,
            realtime: http::RealtimeTracker::default(),
            jwt: Arc::new(jwt_keys(&settings.auth)),
            settings: Arc::new(settings),
            chat,
            metrics: metrics_handle(),
        };
        Ok(Self {
            listener,
            listening,
            port,
            state,
            shutdown,
            jobs,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (the tests use its application handle).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, then shuts down gracefully: stops
    /// accepting, tells every realtime connection "going away" (after it has
    /// finished the frame in hand), lets in-flight HTTP requests finish, waits
    /// for the sockets to close and for the actors to process what they hold.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(port = self.port, "parley listening");
        let chat = self.state.chat.clone();
        let realtime = self.state.realtime.clone();
        let shutdown = self.shutdown;
        let jobs = self.jobs;
        let router = server::router(self.state);
        let signal = async move {
            stop.await;
            let _ = shutdown.send(true);
        };
        let served = server::listener::serve(self.listener, router, self.listening, signal).await;
        realtime.drained(SHUTDOWN_GRACE).await;
        jobs.stop();
        chat.stop(SHUTDOWN_GRACE).await;
        served
    }
}

/// How tokens are checked: the secret's HS256, or the identity provider's
/// keys when `PARLEY_JWT_JWKS_URL` names them.
fn jwt_keys(auth: &config::AuthSettings) -> JwtKeys {
    let keys = JwtKeys::new(&auth.jwt_secret)
        .with_max_ttl(auth.jwt_max_ttl_secs)
        .with_claims(&auth.jwt_name_claim, &auth.jwt_role_claim);
    match &auth.jwt_jwks_url {
        Some(url) => keys.with_provider(
            url.clone(),
            auth.jwt_issuer.clone(),
            auth.jwt_audience.clone(),
        ),
        None => keys,
    }
}

/// Nine tenths of the process's open-file limit (the rest is for Postgres,
/// Redis, RabbitMQ, files), or 10,000 where the limit cannot be read.
fn default_connection_cap() -> usize {
    let soft_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        });
    soft_limit.map_or(10_000, |n| n / 10 * 9)
}

/// Binds the listener with room for `backlog` connections waiting to be
/// accepted (the kernel caps it at `net.core.somaxconn`). Tokio's default of
/// 1,024 overflows when a thousand clients reconnect at once: the kernel then
/// drops their SYNs and each waits a full second to retry.
fn listen(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The process-wide Prometheus recorder, installed on first use and shared by
/// every application built in this process (tests build many). `get_or_init`
/// makes concurrent first callers wait for the one that installs it.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets(&LATENCY_BUCKETS) {
                Ok(with_buckets) => with_buckets,
                Err(e) => {
                    tracing::warn!(error = %e, "latency buckets refused; histograms become summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
