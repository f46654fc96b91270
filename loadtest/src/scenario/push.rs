//! `push`: the notification path for people who are away. R recipients never
//! connect; each has subscribed one browser whose push service is this
//! generator (an HTTP listener on 127.0.0.1, answering 201 as a push service
//! does). Their partners send a total rate of messages over HTTP on an
//! open-loop schedule; each body carries its intended send time and its
//! number in the conversation. The generator decrypts every push (it holds
//! the "browser's" keys), reads the preview, and counts each message as
//! pushed when the first push showing it or a later message of its
//! conversation arrives (the server folds a conversation's messages of one
//! batch into one notification, so one push can stand for several).
//! Meanwhile it samples the server's outbox backlog from `/metrics`.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::post,
};
use base64ct::{Base64UrlUnpadded, Encoding};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use web_push_native::p256::{self, elliptic_curve::sec1::ToEncodedPoint};

use crate::{
    scenario::chat::unix_micros,
    schedule::Schedule,
    server::{Pair, Target},
    stats::Latencies,
};

/// The "browser's" key pair and auth secret, shared by every subscription of
/// the run (a push service cannot tell; it keeps decryption to one key).
const BROWSER_SECRET: [u8; 32] = [7; 32];
const BROWSER_AUTH: [u8; 16] = [9; 16];
/// How long to wait, after the last send, for the pushes still due.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, clap::Args)]
pub struct PushArgs {
    /// Recipients who are away (each in a pair with a sender).
    #[arg(long, default_value_t = 1000)]
    pub recipients: usize,
    /// Messages per second, in total.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Subscribe nobody and wait for no push: the same sends, for the
    /// baseline of the send latency (e.g. against a build without
    /// notifications).
    #[arg(long)]
    pub without_push: bool,
}

/// The messages sent to one recipient: the intended send time of each, by its
/// number in the conversation, and how many of them a push has shown so far.
#[derive(Default)]
struct Sent {
    intended: Vec<u64>,
    pushed: usize,
}

/// What the push listener shares with the run.
struct Listener {
    /// Per recipient (the index in the path of its endpoint).
    sent: Vec<Mutex<Sent>>,
    /// Time to push, per message.
    latencies: Mutex<Latencies>,
    pushes: AtomicU64,
    undecryptable: AtomicU64,
    /// Wakes the run when a message is first counted as pushed.
    progress: mpsc::UnboundedSender<()>,
}

/// The body of message `m` of a conversation: its intended send time and `m`.
fn body(intended_micros: u64, m: usize) -> String {
    format!("lt {intended_micros} {m}")
}

fn number_from_body(body: &str) -> Option<usize> {
    body.split_whitespace().nth(2)?.parse().ok()
}

async fn receive(
    State(listener): State<Arc<Listener>>,
    Path(recipient): Path<usize>,
    encrypted: Bytes,
) -> StatusCode {
    let received = unix_micros();
    listener.pushes.fetch_add(1, Ordering::Relaxed);
    let secret = p256::SecretKey::from_slice(&BROWSER_SECRET).expect("a valid scalar");
    let payload = web_push_native::decrypt(encrypted.to_vec(), &secret, &BROWSER_AUTH.into())
        .ok()
        .and_then(|plain| serde_json::from_slice::<Value>(&plain).ok());
    let shown = payload
        .as_ref()
        .and_then(|p| number_from_body(p["body"].as_str()?));
    let (Some(shown), Some(sent)) = (shown, listener.sent.get(recipient)) else {
        listener.undecryptable.fetch_add(1, Ordering::Relaxed);
        return StatusCode::CREATED;
    };
    let newly: Vec<u64> = {
        let mut sent = sent.lock().expect("not poisoned");
        let upto = (shown + 1).min(sent.intended.len());
        let from = sent.pushed.min(upto);
        sent.pushed = sent.pushed.max(upto);
        sent.intended[from..upto].to_vec()
    };
    if !newly.is_empty() {
        let mut latencies = listener.latencies.lock().expect("not poisoned");
        for intended in newly {
            latencies.record_micros(received.saturating_sub(intended));
        }
        let _ = listener.progress.send(());
    }
    StatusCode::CREATED
}

/// Subscribes `pair.b`'s "browser" at `endpoint`.
async fn subscribe(target: &Target, pair: &Pair, endpoint: String) -> anyhow::Result<()> {
    let secret = p256::SecretKey::from_slice(&BROWSER_SECRET)?;
    let public = secret.public_key().as_affine().to_encoded_point(false);
    let response = target
        .http
        .post(target.url("/users/me/push-subscriptions"))
        .bearer_auth(&pair.b_token)
        .json(&json!({"endpoint": endpoint, "keys": {
            "p256dh": Base64UrlUnpadded::encode_string(public.as_bytes()),
            "auth": Base64UrlUnpadded::encode_string(&BROWSER_AUTH),
        }}))
        .send()
        .await?;
    if !response.status().is_success() {
        anyhow::bail!("subscribing failed: {}", response.status());
    }
    Ok(())
}

/// The server's outbox backlog, from `/metrics`.
async fn outbox_backlog(target: &Target) -> Option<f64> {
    let text = target
        .http
        .get(target.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("parley_outbox_backlog "))?
        .trim()
        .parse()
        .ok()
}

pub async fn run(target: Arc<Target>, args: &PushArgs, run_id: &str) -> anyhow::Result<Value> {
    let recipients = args.recipients.max(1);
    let (progress, mut progressed) = mpsc::unbounded_channel();
    let listener = Arc::new(Listener {
        sent: (0..recipients).map(|_| Mutex::default()).collect(),
        latencies: Mutex::default(),
        pushes: AtomicU64::new(0),
        undecryptable: AtomicU64::new(0),
        progress,
    });
    let socket = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let push_service = socket.local_addr()?;
    let app = Router::new()
        .route("/push/{recipient}", post(receive))
        .with_state(listener.clone());
    tokio::spawn(async move { axum::serve(socket, app).await });

    eprintln!("push: setting up {recipients} pairs, recipients subscribed at {push_service}");
    let pairs = crate::server::pairs(&target, recipients, run_id, "p").await?;
    let subscribing = if args.without_push {
        &pairs[..0]
    } else {
        &pairs[..]
    };
    stream::iter(subscribing.iter().enumerate())
        .map(|(n, pair)| subscribe(&target, pair, format!("http://{push_service}/push/{n}")))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;

    let backlog_peak = Arc::new(Mutex::new(0.0_f64));
    let sampler = {
        let (target, peak) = (target.clone(), backlog_peak.clone());
        tokio::spawn(async move {
            loop {
                if let Some(rows) = outbox_backlog(&target).await
                    && let Ok(mut peak) = peak.lock()
                {
                    *peak = peak.max(rows);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    eprintln!(
        "push: sending {} msg/s for {} s to {recipients} recipients who are away",
        args.rate, args.duration
    );
    let (acked, mut acks) = mpsc::unbounded_channel::<Result<u64, String>>();
    let started = Instant::now();
    let started_unix = unix_micros();
    let schedule = Schedule::new(started, args.rate, Duration::from_secs(args.duration));
    let pairs = Arc::new(pairs);
    for i in 0..schedule.total() {
        let intended = schedule.intended(i);
        tokio::time::sleep_until(intended.into()).await;
        let intended_unix = started_unix + (intended - started).as_micros() as u64;
        let n = (i as usize) % recipients;
        let m = {
            let mut sent = listener.sent[n].lock().expect("not poisoned");
            sent.intended.push(intended_unix);
            sent.intended.len() - 1
        };
        let (target, pairs, acked) = (target.clone(), pairs.clone(), acked.clone());
        let client_id = format!("{run_id}-{i}");
        tokio::spawn(async move {
            let pair = &pairs[n];
            let sent = target
                .http
                .post(target.url(&format!(
                    "/chat/conversations/{}/messages",
                    pair.conversation
                )))
                .bearer_auth(&pair.a_token)
                .json(&json!({"body": body(intended_unix, m), "clientMessageId": client_id}))
                .send()
                .await;
            let outcome = match sent {
                Ok(response) if response.status().is_success() => {
                    Ok(unix_micros().saturating_sub(intended_unix))
                }
                Ok(response) => Err(format!("http {}", response.status().as_u16())),
                Err(_) => Err("connection".into()),
            };
            let _ = acked.send(outcome);
        });
    }
    drop(acked);
    let mut ack = Latencies::default();
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    while let Some(outcome) = acks.recv().await {
        match outcome {
            Ok(micros) => ack.record_micros(micros),
            Err(kind) => *errors.entry(kind).or_default() += 1,
        }
    }
    // Wait for the pushes still due, until all are in or nothing comes for a while.
    let deadline = Instant::now() + DRAIN;
    while !args.without_push
        && listener.latencies.lock().expect("not poisoned").count() < ack.count()
    {
        match tokio::time::timeout_at(deadline.into(), progressed.recv()).await {
            Ok(Some(())) => {}
            _ => break,
        }
    }
    sampler.abort();
    let pushed = std::mem::take(&mut *listener.latencies.lock().expect("not poisoned"));
    let backlog_peak = *backlog_peak.lock().expect("not poisoned");
    let pushes = listener.pushes.load(Ordering::Relaxed);
    let not_pushed = if args.without_push {
        0
    } else {
        ack.count().saturating_sub(pushed.count())
    };

    println!(
        "\npush: {recipients} recipients away, {} msg/s, {} s",
        args.rate, args.duration
    );
    println!("{}", crate::stats::header());
    println!("{}", ack.row("send ack"));
    println!("{}", pushed.row("time to push"));
    println!(
        "pushes received {pushes}, messages never pushed {not_pushed}, \
         undecryptable {}, outbox backlog peak {backlog_peak}, errors {errors:?}",
        listener.undecryptable.load(Ordering::Relaxed)
    );
    Ok(json!({
        "scenario": "push",
        "params": {"recipients": recipients, "rate": args.rate, "duration_s": args.duration},
        "sent": schedule.total(),
        "send_ack": ack.summary(),
        "time_to_push": pushed.summary(),
        "pushes_received": pushes,
        "messages_never_pushed": not_pushed,
        "outbox_backlog_peak": backlog_peak,
        "errors": errors,
    }))
}
