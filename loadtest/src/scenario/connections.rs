//! `connections`: open N idle authenticated WebSockets (one user each, spread
//! over several 127.0.0.x source addresses), hold them, and report the connect
//! rate, each connect's latency (TCP connect to the end of the upgrade),
//! failures, and the server's resident memory per connection.
//!
//! `--concurrency` is how many connects are in flight at once: with
//! `--count 1000 --concurrency 1000` it is a burst of 1,000 simultaneous
//! connects. `--rounds 2` closes every socket after the first round and
//! connects the same users again: the second round measures returning users
//! (known to the server; their user actors may still be in their offline
//! grace period unless `--pause` outlasts it).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::{
    server::{Target, rss_kib},
    stats::Latencies,
};

#[derive(Clone, Debug, clap::Args)]
pub struct ConnectionsArgs {
    /// Connections to open (this sandbox allows 20,000 open files per process).
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seconds to hold the connections before measuring and closing.
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
    /// How many times the same users connect (2: new users, then returning ones).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Seconds between closing one round's sockets and opening the next.
    #[arg(long, default_value_t = 1)]
    pub pause: u64,
}

/// What one round of connects measured.
struct Round {
    open: usize,
    connect_secs: f64,
    latencies: Latencies,
    failures: std::collections::BTreeMap<String, u64>,
    holders: Vec<tokio::task::JoinHandle<()>>,
}

impl Round {
    fn report(&self, n: usize) -> Value {
        json!({
            "round": n,
            "open": self.open,
            "connect_s": self.connect_secs,
            "connect_rate_per_s": self.open as f64 / self.connect_secs,
            "connect_latency": self.latencies.summary(),
            "failures": self.failures,
        })
    }
}

async fn connect_all(target: &Arc<Target>, tokens: &[String], concurrency: usize) -> Round {
    let started = Instant::now();
    let results: Vec<_> = stream::iter(tokens.iter().enumerate())
        .map(|(n, token)| {
            let target = target.clone();
            async move {
                let attempt = Instant::now();
                let socket = target.connect(token, n).await;
                (socket, attempt.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut round = Round {
        open: 0,
        connect_secs,
        latencies: Latencies::default(),
        failures: Default::default(),
        holders: Vec::new(),
    };
    for (result, took) in results {
        match result {
            Ok(socket) => {
                round
                    .latencies
                    .record_micros(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                // Read (and so answer pings) while held.
                round.holders.push(tokio::spawn(async move {
                    let mut socket = socket;
                    while let Some(Ok(_)) = socket.next().await {}
                }));
            }
            Err(e) => {
                let kind = e.to_string().chars().take(60).collect::<String>();
                *round.failures.entry(kind).or_default() += 1;
            }
        }
    }
    round.open = round.holders.len();
    round
}

pub async fn run(
    target: Arc<Target>,
    args: &ConnectionsArgs,
    run_id: &str,
    server_pids: &[u32],
) -> anyhow::Result<Value> {
    let tokens: Vec<String> = (0..args.count)
        .map(|i| target.token(&format!("{run_id}-c{i}"), "candidate"))
        .collect::<anyhow::Result<_>>()?;
    // Per node, then the sum (one node: the same figure).
    let rss_all =
        || -> anyhow::Result<Vec<u64>> { server_pids.iter().map(|pid| rss_kib(*pid)).collect() };
    let rss_before_nodes = rss_all()?;
    let rss_before: u64 = rss_before_nodes.iter().sum();
    let mut rss_after_nodes = rss_before_nodes.clone();
    let mut rss_after = rss_before;
    let mut per_connection = 0.0;
    let mut rounds = Vec::new();
    for n in 1..=args.rounds.max(1) {
        if n > 1 {
            tokio::time::sleep(Duration::from_secs(args.pause)).await;
        }
        eprintln!(
            "connections: round {n}: opening {} sockets, {} at a time (server RSS {} KiB)",
            args.count,
            args.concurrency,
            rss_all()?.iter().sum::<u64>()
        );
        let round = connect_all(&target, &tokens, args.concurrency).await;
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
        if n == 1 {
            rss_after_nodes = rss_all()?;
            rss_after = rss_after_nodes.iter().sum();
            per_connection =
                (rss_after.saturating_sub(rss_before) as f64 * 1024.0) / round.open.max(1) as f64;
        }
        for holder in &round.holders {
            holder.abort();
        }
        println!(
            "\nconnections: round {n}{}: {} open of {} in {:.2} s",
            if n == 1 {
                " (new users)"
            } else {
                " (returning users)"
            },
            round.open,
            args.count,
            round.connect_secs
        );
        println!(
            "  connect rate          {:>10.0} /s",
            round.open as f64 / round.connect_secs
        );
        println!(
            "{}\n{}",
            crate::stats::header(),
            round.latencies.row("connect (ms)")
        );
        if !round.failures.is_empty() {
            println!("  failures              {:?}", round.failures);
        }
        rounds.push(round.report(n));
    }
    println!("  server RSS before     {rss_before:>10} KiB");
    println!("  server RSS after      {rss_after:>10} KiB (round 1, all open)");
    println!("  per connection        {:>10.0} bytes", per_connection);
    let nodes = server_pids.len();
    let per_node: Vec<Value> = rss_before_nodes
        .iter()
        .zip(&rss_after_nodes)
        .map(|(before, after)| {
            // Client n talks to node n % nodes: each holds its share.
            let held = (first_open(&rounds) as f64 / nodes as f64).max(1.0);
            json!({"rss_before_kib": before, "rss_after_kib": after,
                   "bytes_per_connection": after.saturating_sub(*before) as f64 * 1024.0 / held})
        })
        .collect();
    if nodes > 1 {
        for (i, node) in per_node.iter().enumerate() {
            println!(
                "  node {i}: RSS {} -> {} KiB, {:.0} bytes per connection",
                node["rss_before_kib"],
                node["rss_after_kib"],
                node["bytes_per_connection"].as_f64().unwrap_or(0.0)
            );
        }
    }
    let first = rounds.first().cloned().unwrap_or(Value::Null);
    Ok(json!({
        "scenario": "connections",
        "params": {"count": args.count, "concurrency": args.concurrency, "hold_s": args.hold,
                   "rounds": args.rounds, "pause_s": args.pause},
        "open": first["open"],
        "connect_s": first["connect_s"],
        "connect_rate_per_s": first["connect_rate_per_s"],
        "rounds": rounds,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_bytes_per_connection": per_connection,
        "nodes": per_node,
    }))
}

/// How many sockets the first round held open.
fn first_open(rounds: &[Value]) -> u64 {
    rounds.first().and_then(|r| r["open"].as_u64()).unwrap_or(0)
}
