//! Open-loop load generator for Parley.
//!
//! Scenarios (`connections`, `chat`, `thread`, `history`, `reconnect`, `typing`, `push`, `uploads`, `search`) create their own users and
//! conversations through the public API, minting tokens with the server's
//! secret. Sends follow a schedule fixed in advance; latency is measured from
//! each operation's *intended* start into an HdrHistogram, so a stall cannot
//! hide. Each run prints a table and writes a JSON file with every figure and
//! the exact parameters. The server must run with `PARLEY_RATE_LIMITS=off` and
//! a `PARLEY_INTERNAL_API_KEY` equal to `--api-key` (see the README).

mod loss;
mod scenario;
mod schedule;
mod server;
mod stats;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use clap::{Parser, Subcommand};

use crate::{
    scenario::{chat::ChatArgs, connections::ConnectionsArgs, history::HistoryArgs},
    server::Target,
};

#[derive(Parser)]
#[command(name = "loadtest", about = "Open-loop load generator for Parley")]
struct Cli {
    /// The server under test; several (comma-separated) for the nodes of a
    /// cluster, over which clients are spread.
    #[arg(long, default_value = "127.0.0.1:8080", value_delimiter = ',')]
    server: Vec<SocketAddr>,
    /// The server's PARLEY_JWT_SECRET (tokens are minted with it).
    #[arg(long, env = "PARLEY_JWT_SECRET", default_value = parley::config::DEVELOPMENT_JWT_SECRET)]
    secret: String,
    /// The server's PARLEY_INTERNAL_API_KEY (contexts are registered with it).
    #[arg(
        long,
        env = "PARLEY_INTERNAL_API_KEY",
        default_value = "loadtest-platform-key"
    )]
    api_key: String,
    /// The server's pid, for its memory (found by port when omitted; always
    /// by port for several servers).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Source addresses 127.0.0.1..=N to spread sockets over.
    #[arg(long, default_value_t = 16)]
    sources: u8,
    /// Where to write the JSON report (default loadtest/results/<scenario>-<time>.json).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hold many idle WebSockets; connect rate and server memory per connection.
    Connections(ConnectionsArgs),
    /// Users chatting in pairs at a fixed total rate; latency and loss.
    Chat(ChatArgs),
    /// Context threads of several members at a fixed total rate; delivery
    /// to every member and the loss check.
    Thread(scenario::thread::ThreadArgs),
    /// History pages at a fixed rate, optionally under chat load.
    History(HistoryArgs),
    /// A chat load during which a fraction of the sockets is killed and
    /// reconnected with resync; time to recovery and the loss check.
    Reconnect(ReconnectArgs),
    /// Typing indicators relayed between connected pairs; relay latency.
    Typing(scenario::typing::TypingArgs),
    /// Messages to recipients who are away, pushed to this generator acting
    /// as their push service; time to push and the outbox backlog.
    Push(scenario::push::PushArgs),
    /// Inbox-wide searches in a database of millions of messages (seeded
    /// first), optionally under chat load.
    Search(scenario::search::SearchArgs),
    /// Images uploaded, completed and scanned at a fixed rate; time from
    /// complete to available.
    Uploads(scenario::uploads::UploadsArgs),
    /// What the server-side parts of an idle connection cost, each alone, in
    /// this process (no server needed; `user` needs the database).
    Footprint(scenario::footprint::FootprintArgs),
}

#[derive(Clone, Debug, clap::Args)]
struct ReconnectArgs {
    #[command(flatten)]
    chat: ChatArgs,
    /// Fraction of the sockets to kill.
    #[arg(long, default_value_t = 0.25)]
    fraction: f64,
    /// Seconds into the run to kill them.
    #[arg(long, default_value_t = 5)]
    after: u64,
    /// Each killed client waits 200 ms plus up to this many milliseconds
    /// (spread evenly over the clients) before it reconnects.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Kill this node (its index in `--server`) instead of sockets: its
    /// clients reconnect to the next node and catch up.
    #[arg(long)]
    kill_node: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    // Two workers: the machine has two cores, shared with the server under test.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(Cli::parse()))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let target = Arc::new(Target::new(
        cli.server.clone(),
        &cli.secret,
        &cli.api_key,
        cli.sources,
    )?);
    let run_id = format!(
        "lt{}",
        uuid::Uuid::now_v7()
            .simple()
            .to_string()
            .get(..12)
            .unwrap_or("run")
    );
    let (name, report) = match &cli.scenario {
        Scenario::Connections(args) => {
            let pids = match (cli.server_pid, cli.server.as_slice()) {
                (Some(pid), [_]) => vec![pid],
                _ => cli
                    .server
                    .iter()
                    .map(|addr| server::pid_listening_on(addr.port()))
                    .collect::<anyhow::Result<_>>()?,
            };
            (
                "connections",
                scenario::connections::run(target, args, &run_id, &pids).await?,
            )
        }
        Scenario::Chat(args) => (
            "chat",
            scenario::chat::run(target, args, &run_id, None).await?,
        ),
        Scenario::Thread(args) => (
            "thread",
            scenario::thread::run(target, args, &run_id).await?,
        ),
        Scenario::Reconnect(args) => {
            if args.kill_node.is_some_and(|k| k >= cli.server.len()) {
                anyhow::bail!("--kill-node names a node beyond the --server list");
            }
            let mut chat = args.chat.clone();
            // Sends go over HTTP so that killing sockets loses no send.
            chat.transport = scenario::chat::Transport::Http;
            let disruption = scenario::chat::Disruption {
                fraction: args.fraction,
                after: std::time::Duration::from_secs(args.after),
                jitter: std::time::Duration::from_millis(args.jitter_ms),
                kill_node: args.kill_node,
            };
            (
                "reconnect",
                scenario::chat::run(target, &chat, &run_id, Some(disruption)).await?,
            )
        }
        Scenario::Typing(args) => (
            "typing",
            scenario::typing::run(target, args, &run_id).await?,
        ),
        Scenario::Push(args) => ("push", scenario::push::run(target, args, &run_id).await?),
        Scenario::Search(args) => (
            "search",
            scenario::search::run(target, args, &run_id).await?,
        ),
        Scenario::Uploads(args) => (
            "uploads",
            scenario::uploads::run(target, args, &run_id).await?,
        ),
        Scenario::History(args) => (
            "history",
            scenario::history::run(target, args, &run_id).await?,
        ),
        Scenario::Footprint(args) => ("footprint", scenario::footprint::run(args, &run_id).await?),
    };
    let out = cli
        .out
        .unwrap_or_else(|| PathBuf::from(format!("loadtest/results/{name}-{}.json", chat_time())));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("report written to {}", out.display());
    Ok(())
}

fn chat_time() -> u64 {
    scenario::chat::unix_micros() / 1_000_000
}
