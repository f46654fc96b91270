//! `typing`: connected pairs; one side of each pair sends `typing.started`
//! every 2.5 s (just above the server's 2 s relay throttle, so every start is
//! relayed) on a staggered open-loop schedule; the other side measures the
//! relay latency from the send to the `typing.started` it receives.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{schedule::Schedule, server::Target, stats::Latencies};

/// Each typist refreshes this often (the server relays at most one start per 2 s).
const REFRESH: Duration = Duration::from_millis(2500);

#[derive(Clone, Debug, clap::Args)]
pub struct TypingArgs {
    /// Users (in pairs; one typist per pair).
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
}

pub async fn run(target: Arc<Target>, args: &TypingArgs, run_id: &str) -> anyhow::Result<Value> {
    let pairs = crate::server::pairs(&target, (args.users / 2).max(1), run_id, "t").await?;
    // When each conversation's latest start was sent.
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (record, mut recorded) = mpsc::unbounded_channel::<u64>();
    let mut typists = Vec::new();
    let sockets = stream::iter(pairs.iter().enumerate())
        .map(|(n, p)| {
            let (target, a, b) = (target.clone(), p.a_token.clone(), p.b_token.clone());
            async move {
                anyhow::Ok((
                    target.connect(&a, 2 * n).await?,
                    target.connect(&b, 2 * n + 1).await?,
                ))
            }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await;
    for (pair, sockets) in pairs.iter().zip(sockets) {
        let (typist, watcher) = sockets?;
        let (sent, record) = (sent_at.clone(), record.clone());
        tokio::spawn(async move {
            let mut watcher = watcher;
            while let Some(Ok(Message::Text(text))) = watcher.next().await {
                let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if event["type"] == "typing.started" {
                    let conversation = event["data"]["conversationId"].as_str().unwrap_or_default();
                    let at = sent.lock().ok().and_then(|m| m.get(conversation).copied());
                    if let Some(at) = at {
                        let _ = record.send(at.elapsed().as_micros() as u64);
                    }
                }
            }
        });
        typists.push((pair.conversation.clone(), typist.split().0));
    }
    drop(record);
    let started = Instant::now();
    let rate = typists.len() as f64 / REFRESH.as_secs_f64();
    let schedule = Schedule::new(started, rate, Duration::from_secs(args.duration));
    eprintln!(
        "typing: {} typists, {rate:.0} relayed starts/s for {} s",
        typists.len(),
        args.duration
    );
    for i in 0..schedule.total() {
        tokio::time::sleep_until(schedule.intended(i).into()).await;
        let count = typists.len();
        let (conversation, sink) = &mut typists[(i as usize) % count];
        let frame =
            json!({"type": "typing.started", "data": {"conversationId": conversation}}).to_string();
        if let Ok(mut sent) = sent_at.lock() {
            sent.insert(conversation.clone(), Instant::now());
        }
        let _ = sink.send(Message::text(frame)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(typists);
    let mut latencies = Latencies::default();
    while let Ok(micros) = tokio::time::timeout(Duration::from_secs(2), recorded.recv()).await {
        match micros {
            Some(m) => latencies.record_micros(m),
            None => break,
        }
    }
    println!(
        "\ntyping: {} typists, {rate:.0} starts/s, {} s",
        pairs.len(),
        args.duration
    );
    println!("{}", crate::stats::header());
    println!("{}", latencies.row("typing relay"));
    Ok(json!({
        "scenario": "typing",
        "params": {"users": pairs.len() * 2, "duration_s": args.duration, "starts_per_s": rate},
        "relayed": latencies.count(),
        "sent": schedule.total(),
        "relay_latency": latencies.summary(),
    }))
}
