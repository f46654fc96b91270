//! `footprint`: what the server-side parts of one idle connection cost, each
//! measured alone in this process (resident memory before and after holding
//! `--count` of them, divided by the count). Together with the `connections`
//! scenario (the whole server, sockets included) it gives the breakdown of
//! an idle connection in the README.
//!
//! Parts:
//! * `task` — an idle tokio task (the shape of a connection's task);
//! * `queue` — a connection's bounded outbound queue as the server makes it
//!   (`chat::users::outbound_queue`), empty;
//! * `user` — everything the application keeps for a connected user: their
//!   actor (a ractor actor with its mailboxes and state) and its registration
//!   with presence, attached through `ChatCore::attach` exactly as a
//!   WebSocket is, minus the socket (needs the database, for the application).

use std::time::Duration;

use serde_json::{Value, json};

use crate::server::rss_kib;

#[derive(Clone, Debug, clap::Args)]
pub struct FootprintArgs {
    /// `task`, `queue` or `user`.
    #[arg(long)]
    pub part: String,
    /// How many to hold.
    #[arg(long, default_value_t = 20_000)]
    pub count: usize,
    /// The database the application starts against (for `user`).
    #[arg(
        long,
        env = "PARLEY_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/parley_load"
    )]
    pub database_url: String,
}

pub async fn run(args: &FootprintArgs, run_id: &str) -> anyhow::Result<Value> {
    let me = std::process::id();
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::with_capacity(args.count);
    // Built before the first reading, so that only the parts count.
    let chat = if args.part == "user" {
        let mut settings = parley::config::Settings::default();
        settings.database.url = parley::config::Secret::new(args.database_url.as_str());
        let pool = parley::persistence::connect_pool(&settings.database)?;
        parley::persistence::migrations::run(&pool).await?;
        let clock = std::sync::Arc::new(parley::domain::clock::SystemClock);
        Some(parley::chat::ChatCore::start(pool, &settings, clock).await?)
    } else {
        None
    };
    let before = rss_kib(me)?;
    for i in 0..args.count {
        match (args.part.as_str(), &chat) {
            ("task", _) => keep.push(Box::new(tokio::spawn(std::future::pending::<()>()))),
            ("queue", _) => keep.push(Box::new(parley::chat::users::outbound_queue(256))),
            ("user", Some(chat)) => {
                let user = parley::domain::UserId::parse(&format!("{run_id}-u{i}"))?;
                let (outbound, frames) = parley::chat::users::outbound_queue(256);
                let attachment = chat.attach(&user, outbound, None, "footprint").await?;
                keep.push(Box::new((attachment, frames)));
            }
            (other, _) => anyhow::bail!("unknown part {other:?}: task, queue or user"),
        }
    }
    // Let start-up work (unread-count loads) finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(me)?;
    let per_item = (after.saturating_sub(before) as f64 * 1024.0) / args.count as f64;
    println!(
        "footprint: {} × {}: RSS {before} KiB -> {after} KiB, {per_item:.0} bytes each",
        args.count, args.part
    );
    drop(keep);
    Ok(json!({
        "scenario": "footprint",
        "params": {"part": args.part, "count": args.count},
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_each": per_item,
    }))
}
