//! `history`: 50-message history pages loaded at a given rate (open loop),
//! optionally while a `chat` load runs in the same process.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use super::chat;
use crate::{schedule::open_loop, server::Target};

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
    /// A chat load alongside (`--chat-rate`, `--chat-users`).
    #[command(flatten)]
    pub chat: chat::Alongside,
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

    let chat = chat::in_background(&target, &args.chat, args.duration, run_id).await;
    let (latencies, errors) = open_loop(args.rate, Duration::from_secs(args.duration), |i| {
        let (target, readers) = (target.clone(), readers.clone());
        async move {
            let (conversation, token) = &readers[(i as usize) % readers.len()];
            let url = target.url(&format!(
                "/chat/conversations/{conversation}/messages?limit=50"
            ));
            let response = target.get_ok(url, token).await?;
            let _ = response.bytes().await;
            Ok(())
        }
    })
    .await;
    let chat_report = chat::background_report(chat).await?;
    println!(
        "\nhistory: {} page loads/s for {} s{}",
        args.rate,
        args.duration,
        chat::under_chat(args.chat.chat_rate)
    );
    println!("{}", crate::stats::header());
    println!("{}", latencies.row("history page (50)"));
    if !errors.is_empty() {
        println!("errors {errors:?}");
    }
    Ok(json!({
        "scenario": "history",
        "params": {"conversations": args.conversations, "messages": args.messages, "rate": args.rate,
                   "duration_s": args.duration, "chat_rate": args.chat.chat_rate, "chat_users": args.chat.chat_users},
        "page_latency": latencies.summary(),
        "errors": errors,
        "chat": chat_report,
    }))
}
