//! `thread`: T context threads of M members each, every member connected on
//! a WebSocket; a total rate R of messages sent by the members in turn. Each
//! message must reach the M − 1 other members exactly once, in `seq` order:
//! delivery latency is measured to every one of them (what fan-out costs as
//! threads grow), and the loss check counts every delivery.

use std::{sync::Arc, time::Instant};

use anyhow::Context;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use super::chat::{self, Cast, ChatArgs, Member, Transport};
use crate::server::Target;

#[derive(Clone, Debug, clap::Args)]
pub struct ThreadArgs {
    /// Members of each thread (at most the server's PARLEY_MAX_THREAD_MEMBERS).
    #[arg(long, default_value_t = 6)]
    pub members: usize,
    /// Threads.
    #[arg(long, default_value_t = 100)]
    pub threads: usize,
    /// Messages per second, in total.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    #[arg(long, value_enum, default_value_t = Transport::Http)]
    pub transport: Transport,
}

pub async fn run(target: Arc<Target>, args: &ThreadArgs, run_id: &str) -> anyhow::Result<Value> {
    let setup_started = Instant::now();
    eprintln!(
        "thread: setting up {} threads of {} members",
        args.threads, args.members
    );
    let threads = stream::iter(0..args.threads)
        .map(|t| {
            let target = target.clone();
            let members = args.members;
            async move { booking_thread(&target, run_id, t, members).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut members = Vec::with_capacity(args.threads * args.members);
    for thread in threads {
        members.extend(thread?);
    }
    let cast = Cast {
        members,
        recipients_per_message: args.members.saturating_sub(1),
        scenario: "thread",
    };
    let chat = ChatArgs {
        users: args.threads * args.members,
        rate: args.rate,
        duration: args.duration,
        transport: args.transport,
    };
    chat::drive(target, &chat, run_id, cast, setup_started, None).await
}

/// Creates the members of thread `t` and the thread itself, as the platform
/// does (users first, then the context with its thread).
async fn booking_thread(
    target: &Target,
    run_id: &str,
    t: usize,
    size: usize,
) -> anyhow::Result<Vec<Member>> {
    let mut members = Vec::with_capacity(size);
    for k in 0..size {
        let id = format!("{run_id}-t{t}m{k}");
        let token = target.token(&id, "company")?;
        target.sign_in(&token).await?;
        members.push((id, token));
    }
    let listed: Vec<Value> = members
        .iter()
        .enumerate()
        .map(
            |(k, (id, _))| json!({ "userId": id, "role": if k == 0 { "worker" } else { "party" } }),
        )
        .collect();
    let response = target
        .http
        .put(target.url(&format!("/internal/contexts/loadtest-booking/{run_id}-{t}")))
        .header("x-api-key", &target.api_key)
        .json(&json!({ "title": format!("Booking {t}"), "thread": { "members": listed } }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    let conversation = body["thread"]["conversationId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("creating a thread failed: {status} {body}"))?;
    Ok(members
        .into_iter()
        .map(|(id, token)| Member {
            id,
            token,
            conversation: conversation.clone(),
            outbox: None,
        })
        .collect())
}
