//! Integration tests: the real server on port 0, the real Postgres, real HTTP
//! and WebSocket clients. One binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)] // failing loudly is what a test should do

mod attachments;
mod browser;
mod cluster;
mod contract;
mod conversations;
mod database_tls;
mod discipline;
mod errors;
mod fallback;
mod hardening;
mod helpers;
mod live;
mod messages;
mod moderation;
mod notifications;
mod privacy;
mod realtime;
mod resilience;
mod retention;
mod safety;
mod search;
mod threads;
mod webapp;
