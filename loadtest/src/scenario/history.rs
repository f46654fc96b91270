//! `history`: 50-message history pages loaded at a given rate (open loop),
//! optionally while a `chat` load runs in the same process.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::chat::{self, ChatArgs};
use crate::{schedule::Schedule, server::Target, stats::Latencies};

#[derive(Clone, Debug, clap::Args)]
pub struct HistoryArgs {
    /// Conversations to read from (each filled with `--messages` first).
    #[arg(long, default_value_t = 50)]
    pub conversations: usize,
    #[arg(long, default_value_t = 200)]
    pub messages: usize,
    /// Page loads per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Also run a chat load at this many messages per second (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub chat_rate: f64,
    /// Users of that chat load.
    #[arg(long, default_value_t = 1000)]
    pub chat_users: usize,
}

pub async fn run(target: Arc<Target>, args: &HistoryArgs, run_id: &str) -> anyhow::Result<Value> {
    eprintln!(
        "history: filling {} conversations with {} messages",
        args.conversations, args.messages
    );
    let pairs = crate::server::pairs(&target, args.conversations, run_id, "h").await?;
    let readers: Vec<(String, String)> = stream::iter(pairs.into_iter().enumerate())
        .map(|(i, pair)| {
            let target = target.clone();
            let messages = args.messages;
            async move {
                let url = target.url(&format!("/chat/conversations/{}/messages", pair.conversation));
                for n in 0..messages {
                    target
                        .http
                        .post(&url)
                        .bearer_auth(&pair.a_token)
                        .json(&json!({"body": format!("history filler {n}"), "clientMessageId": format!("{run_id}-h{i}-{n}")}))
                        .send()
                        .await?;
                }
                anyhow::Ok((pair.conversation, pair.b_token))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let readers = Arc::new(readers);

    let chat = (args.chat_rate > 0.0).then(|| {
        let chat_args = ChatArgs {
            users: args.chat_users,
            rate: args.chat_rate,
            duration: args.duration,
            transport: chat::Transport::Http,
        };
        let (target, run_id) = (target.clone(), format!("{run_id}-bg"));
        tokio::spawn(async move { chat::run(target, &chat_args, &run_id, None).await })
    });
    if chat.is_some() {
        // Let the chat load finish its set-up and start sending first.
        tokio::time::sleep(Duration::from_secs(
            ((args.chat_users / 200) as u64).clamp(3, 30),
        ))
        .await;
    }

    let (record, mut recorded) = mpsc::unbounded_channel::<Result<u64, String>>();
    let started = Instant::now();
    let schedule = Schedule::new(started, args.rate, Duration::from_secs(args.duration));
    for i in 0..schedule.total() {
        let intended = schedule.intended(i);
        tokio::time::sleep_until(intended.into()).await;
        let (target, readers, record) = (target.clone(), readers.clone(), record.clone());
        tokio::spawn(async move {
            let (conversation, token) = &readers[(i as usize) % readers.len()];
            let url = target.url(&format!(
                "/chat/conversations/{conversation}/messages?limit=50"
            ));
            let outcome = match target.http.get(url).bearer_auth(token).send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    Ok(intended.elapsed().as_micros() as u64)
                }
                Ok(r) => Err(format!("http {}", r.status().as_u16())),
                Err(_) => Err("connection".into()),
            };
            let _ = record.send(outcome);
        });
    }
    drop(record);
    let mut latencies = Latencies::default();
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    while let Some(outcome) = recorded.recv().await {
        match outcome {
            Ok(micros) => latencies.record_micros(micros),
            Err(kind) => *errors.entry(kind).or_default() += 1,
        }
    }
    let chat_report = match chat {
        Some(handle) => Some(handle.await??),
        None => None,
    };
    println!(
        "\nhistory: {} page loads/s for {} s{}",
        args.rate,
        args.duration,
        if args.chat_rate > 0.0 {
            format!(" under {} msg/s of chat", args.chat_rate)
        } else {
            String::new()
        }
    );
    println!("{}", crate::stats::header());
    println!("{}", latencies.row("history page (50)"));
    if !errors.is_empty() {
        println!("errors {errors:?}");
    }
    Ok(json!({
        "scenario": "history",
        "params": {"conversations": args.conversations, "messages": args.messages, "rate": args.rate,
                   "duration_s": args.duration, "chat_rate": args.chat_rate, "chat_users": args.chat_users},
        "page_latency": latencies.summary(),
        "errors": errors,
        "chat": chat_report,
    }))
}
