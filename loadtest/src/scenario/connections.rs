//! `connections`: open N idle authenticated WebSockets (one user each, spread
//! over several 127.0.0.x source addresses), hold them, and report the connect
//! rate, failures, and the server's resident memory per connection.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::server::{Target, rss_kib};

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
}

pub async fn run(
    target: Arc<Target>,
    args: &ConnectionsArgs,
    run_id: &str,
    server_pid: u32,
) -> anyhow::Result<Value> {
    let tokens: Vec<String> = (0..args.count)
        .map(|i| target.token(&format!("{run_id}-c{i}"), "candidate"))
        .collect::<anyhow::Result<_>>()?;
    let rss_before = rss_kib(server_pid)?;
    eprintln!(
        "connections: opening {} sockets (server RSS {} KiB)",
        args.count, rss_before
    );
    let started = Instant::now();
    let results: Vec<_> = stream::iter(tokens.iter().enumerate())
        .map(|(n, token)| {
            let target = target.clone();
            async move { target.connect(token, n).await }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut failures: std::collections::BTreeMap<String, u64> = Default::default();
    let mut holders = Vec::new();
    for result in results {
        match result {
            Ok(socket) => {
                // Read (and so answer pings) while held.
                holders.push(tokio::spawn(async move {
                    let mut socket = socket;
                    while let Some(Ok(_)) = socket.next().await {}
                }));
            }
            Err(e) => {
                let kind = e.to_string().chars().take(60).collect::<String>();
                *failures.entry(kind).or_default() += 1;
            }
        }
    }
    let open = holders.len();
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let rss_after = rss_kib(server_pid)?;
    let per_connection =
        (rss_after.saturating_sub(rss_before) as f64 * 1024.0) / open.max(1) as f64;
    for holder in &holders {
        holder.abort();
    }
    println!(
        "\nconnections: {open} open of {} in {connect_secs:.2} s",
        args.count
    );
    println!(
        "  connect rate          {:>10.0} /s",
        open as f64 / connect_secs
    );
    println!("  server RSS before     {rss_before:>10} KiB");
    println!("  server RSS after      {rss_after:>10} KiB");
    println!("  per connection        {:>10.0} bytes", per_connection);
    if !failures.is_empty() {
        println!("  failures              {failures:?}");
    }
    Ok(json!({
        "scenario": "connections",
        "params": {"count": args.count, "concurrency": args.concurrency, "hold_s": args.hold},
        "open": open,
        "connect_s": connect_secs,
        "connect_rate_per_s": open as f64 / connect_secs,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_bytes_per_connection": per_connection,
        "failures": failures,
    }))
}
