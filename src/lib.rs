//! Parley: a self-hosted realtime chat server for two-sided marketplaces.
//!
//! Module map:
//! * [`config`] — typed settings: defaults overridden by `PARLEY_*` variables.
//! * [`domain`] — pure types and rules (ids, message text, events, errors); no I/O.
//! * [`persistence`] — Postgres: pool, migrations, one module per aggregate.
//! * [`actors`] — conversation and user actors, their supervisors, and
//!   [`actors::ChatCore`], the one door HTTP and WebSocket handlers use for writes.
//! * [`cluster`] — the event bus between conversation and user actors
//!   (in-process now; Redis pub/sub across nodes later).
//! * [`http`] — axum routers, auth, the JSON error shape, metrics, OpenAPI.
//! * [`ws`] — the WebSocket gateway and its client protocol.
//!
//! [`Application::build`] wires it together and binds the listener (port 0 in
//! tests); [`Application::run_until_stopped`] serves until SIGTERM or Ctrl-C.

pub mod actors;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod http;
pub mod persistence;
pub mod ws;

use std::{future::Future, sync::Arc, sync::OnceLock};

use dashmap::DashMap;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::{
    actors::ChatCore,
    config::Settings,
    http::{AppState, auth::JwtKeys},
};

/// How many users' claims each node remembers as already upserted.
const KNOWN_USERS_CAPACITY: usize = 100_000;

/// Latency buckets (seconds) for every histogram: sub-millisecond to seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A built server, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    /// Connects to Postgres, applies migrations, starts the actor system and
    /// binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.uses_development_secret() {
            tracing::warn!(
                "PARLEY_JWT_SECRET is not set: tokens are signed with the public development secret"
            );
        }
        let pool = persistence::connect_pool(&settings)?;
        let applied = persistence::migrations::run(&pool).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        let chat = ChatCore::start(pool.clone(), &settings).await?;
        let listener = TcpListener::bind(settings.listen).await?;
        let port = listener.local_addr()?.port();
        let state = AppState {
            jwt: Arc::new(JwtKeys::new(&settings.jwt_secret)),
            settings: Arc::new(settings),
            pool,
            chat,
            metrics: metrics_handle()?,
            known_users: Arc::new(DashMap::new()),
            known_users_capacity: KNOWN_USERS_CAPACITY,
        };
        Ok(Self {
            listener,
            port,
            state,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (the tests use its pool and actor handles).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes: stops accepting, finishes in-flight
    /// requests, then stops the actors.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(port = self.port, "parley listening");
        let chat = self.state.chat.clone();
        let router = http::router(self.state);
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(stop)
            .await;
        chat.stop();
        served
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every
/// application built in this process, e.g. by tests).
fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .install_recorder();
    match handle {
        Ok(handle) => Ok(HANDLE.get_or_init(|| handle).clone()),
        // Lost a race with another builder in this process: use theirs.
        Err(_) => HANDLE
            .get()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("metrics recorder unavailable")),
    }
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
