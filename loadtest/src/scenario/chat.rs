//! `chat`: U users in U/2 connected pairs, all on WebSockets; a total rate R of
//! messages sent on an open-loop schedule over HTTP or `message.send`. Each
//! body carries its intended send time, so delivery latency is receive time
//! minus intended time. Every acknowledged message must reach the other
//! participant exactly once, in `seq` order.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{loss::LossCheck, schedule::Schedule, server::Target, stats::Latencies};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Http,
    Ws,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ChatArgs {
    /// Connected users (in pairs).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Messages per second, in total.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    #[arg(long, value_enum, default_value_t = Transport::Http)]
    pub transport: Transport,
}

/// What readers and senders report to the collector.
enum Observation {
    /// A member whose socket was killed has reconnected and caught up, this long after the drop.
    Recovered(u64),
    Delivered {
        recipient: usize,
        conversation: String,
        seq: i64,
        latency: u64,
    },
    Acked {
        conversation: String,
        seq: i64,
        latency: u64,
    },
    Error(String),
}

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The body of message `n`: it carries the intended send time.
fn body(intended_micros: u64, n: u64) -> String {
    format!("lt {intended_micros} {n}")
}

fn intended_from_body(body: &str) -> Option<u64> {
    body.split_whitespace().nth(1)?.parse().ok()
}

/// One connected user: its id, token, conversation, and (for `ws`) its send queue.
pub struct Member {
    pub id: String,
    pub token: String,
    pub conversation: String,
    pub outbox: Option<mpsc::Sender<String>>,
}

/// Who takes part in a load: the members, each in one conversation, and
/// how many others receive each message (1 in a pair).
pub struct Cast {
    pub members: Vec<Member>,
    pub recipients_per_message: usize,
    /// The scenario's name in the report.
    pub scenario: &'static str,
}

pub async fn run(
    target: Arc<Target>,
    args: &ChatArgs,
    run_id: &str,
    disruption: Option<Disruption>,
) -> anyhow::Result<Value> {
    let pairs = (args.users / 2).max(1);
    eprintln!("chat: setting up {pairs} pairs");
    let setup_started = Instant::now();
    let conversations = crate::server::pairs(&target, pairs, run_id, "").await?;
    let mut members = Vec::with_capacity(pairs * 2);
    for pair in conversations {
        members.push(Member {
            id: pair.a,
            token: pair.a_token,
            conversation: pair.conversation.clone(),
            outbox: None,
        });
        members.push(Member {
            id: pair.b,
            token: pair.b_token,
            conversation: pair.conversation,
            outbox: None,
        });
    }
    let cast = Cast {
        members,
        recipients_per_message: 1,
        scenario: "chat",
    };
    drive(target, args, run_id, cast, setup_started, disruption).await
}

/// Connects every member of `cast`, sends `args.rate` messages per second
/// for `args.duration` seconds from the members in turn, and reports ack and
/// delivery latencies and the loss check (every message to each of its
/// recipients exactly once, in order).
pub async fn drive(
    target: Arc<Target>,
    args: &ChatArgs,
    run_id: &str,
    cast: Cast,
    setup_started: Instant,
    disruption: Option<Disruption>,
) -> anyhow::Result<Value> {
    let Cast {
        mut members,
        recipients_per_message,
        scenario,
    } = cast;
    let (observe, mut observations) = mpsc::unbounded_channel::<Observation>();
    eprintln!("chat: connecting {} sockets", members.len());
    let tokens: Vec<String> = members.iter().map(|m| m.token.clone()).collect();
    let sockets = stream::iter(tokens.into_iter().enumerate())
        .map(|(n, token)| {
            let target = target.clone();
            async move { target.connect(&token, n).await }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await;
    let mut readers = Vec::new();
    let mut holders = Vec::new();
    let mut seen = Vec::new();
    for (n, socket) in sockets.into_iter().enumerate() {
        let (mut sink, source) = socket?.split();
        let me = members[n].id.clone();
        let observe = observe.clone();
        let last_seen = Arc::new(AtomicI64::new(0));
        seen.push(last_seen.clone());
        readers.push(spawn_reader(source, n, me, observe, last_seen, 0));
        if args.transport == Transport::Ws {
            let (outbox, mut queue) = mpsc::channel::<String>(1024);
            members[n].outbox = Some(outbox);
            tokio::spawn(async move {
                while let Some(frame) = queue.recv().await {
                    if sink.send(Message::text(frame)).await.is_err() {
                        break;
                    }
                }
            });
        } else {
            // Keep the write half alive (it answers pings) for the whole run.
            holders.push(tokio::spawn(async move {
                let _sink = sink;
                std::future::pending::<()>().await;
            }));
        }
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();

    // The collector owns all bookkeeping; `resolved` counts sends answered so far.
    let resolved = Arc::new(AtomicU64::new(0));
    let counted = resolved.clone();
    let collector = tokio::spawn(async move {
        let (mut delivery, mut ack, mut loss) = (
            Latencies::default(),
            Latencies::default(),
            LossCheck::with_recipients(recipients_per_message),
        );
        let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
        let mut recovery = Latencies::default();
        while let Some(o) = observations.recv().await {
            match o {
                Observation::Recovered(micros) => recovery.record_micros(micros),
                Observation::Delivered {
                    recipient,
                    conversation,
                    seq,
                    latency,
                } => {
                    delivery.record_micros(latency);
                    loss.received(&recipient.to_string(), &conversation, seq);
                }
                Observation::Acked {
                    conversation,
                    seq,
                    latency,
                } => {
                    counted.fetch_add(1, Ordering::Relaxed);
                    ack.record_micros(latency);
                    loss.acked(&conversation, seq);
                }
                Observation::Error(kind) => {
                    counted.fetch_add(1, Ordering::Relaxed);
                    *errors.entry(kind).or_default() += 1;
                }
            }
        }
        (delivery, ack, loss, errors, recovery)
    });

    eprintln!(
        "{scenario}: sending {} msg/s for {} s over {:?}",
        args.rate, args.duration, args.transport
    );
    let started = Instant::now();
    let started_unix = unix_micros();
    let schedule = Schedule::new(started, args.rate, Duration::from_secs(args.duration));
    let members_count = members.len();
    let members = Arc::new(members);
    let disrupting = disruption.map(|d| {
        let nodes = target.addrs.len();
        let chosen: Vec<usize> = match d.kill_node {
            Some(k) => (0..members.len()).filter(|n| n % nodes == k).collect(),
            None => {
                let step = (1.0 / d.fraction.clamp(0.01, 1.0)).round().max(1.0) as usize;
                (0..members.len()).step_by(step).collect()
            }
        };
        let mut victims = Vec::new();
        for &n in &chosen {
            let m = &members[n];
            victims.push((
                Rejoin {
                    n,
                    via: if d.kill_node.is_some() { n + 1 } else { n },
                    me: m.id.clone(),
                    token: m.token.clone(),
                    conversation: m.conversation.clone(),
                    last_seen: seen[n].clone(),
                },
                std::mem::replace(&mut readers[n], tokio::spawn(async {})),
                holders
                    .get_mut(n)
                    .map(|h| std::mem::replace(h, tokio::spawn(async {}))),
            ));
        }
        let (target, observe) = (target.clone(), observe.clone());
        let at = started + d.after;
        eprintln!(
            "chat: will kill {} of {} sockets after {:?}",
            victims.len(),
            members.len(),
            d.after
        );
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            if let Some(k) = d.kill_node {
                match crate::server::kill_node(target.addrs[k]) {
                    Ok(pid) => eprintln!("chat: killed node {k} (pid {pid})"),
                    Err(e) => eprintln!("chat: could not kill node {k}: {e}"),
                }
            }
            let dropped = Instant::now();
            let mut rejoins = Vec::new();
            let count = victims.len().max(1) as u32;
            for (k, (member, reader, holder)) in victims.into_iter().enumerate() {
                reader.abort();
                if let Some(holder) = holder {
                    holder.abort();
                }
                // Spread evenly over the jitter window, in a shuffled order.
                let slot = (k as u64).wrapping_mul(2_654_435_761) % u64::from(count);
                let delay = d.jitter * u32::try_from(slot).unwrap_or(0) / count;
                rejoins.push(tokio::spawn(rejoin(
                    target.clone(),
                    member,
                    dropped,
                    delay,
                    observe.clone(),
                )));
            }
            let mut handles = Vec::new();
            for r in rejoins {
                handles.push(r.await.map_err(anyhow::Error::from).and_then(|x| x));
            }
            handles
        })
    });
    for i in 0..schedule.total() {
        let intended = schedule.intended(i);
        tokio::time::sleep_until(intended.into()).await;
        let intended_unix = started_unix + (intended - started).as_micros() as u64;
        let member = &members[(i as usize) % members.len()];
        let text = body(intended_unix, i);
        let client_id = format!("{run_id}-{i}");
        match &member.outbox {
            Some(outbox) => {
                let frame = json!({"type": "message.send", "data": {
                    "conversationId": member.conversation, "body": text, "clientMessageId": client_id}});
                if outbox.try_send(frame.to_string()).is_err() {
                    let _ = observe.send(Observation::Error("client_backpressure".into()));
                }
            }
            None => {
                let (target, observe, members) = (target.clone(), observe.clone(), members.clone());
                tokio::spawn(async move {
                    let n = (i as usize) % members.len();
                    let member = &members[n];
                    let path = format!("/chat/conversations/{}/messages", member.conversation);
                    let send = |via: usize| {
                        target
                            .http
                            .post(target.url_on(via, &path))
                            .bearer_auth(&member.token)
                            .json(&json!({"body": text, "clientMessageId": client_id}))
                            .send()
                    };
                    // A client whose node is gone retries on another one
                    // (the same clientMessageId: never stored twice).
                    let sent = match send(n).await {
                        Err(e) if e.is_connect() && target.addrs.len() > 1 => send(n + 1).await,
                        sent => sent,
                    };
                    let observation = match sent {
                        Ok(response) if response.status().is_success() => {
                            match response.json::<Value>().await {
                                Ok(message) => Observation::Acked {
                                    conversation: message["conversationId"]
                                        .as_str()
                                        .unwrap_or_default()
                                        .to_owned(),
                                    seq: message["seq"].as_i64().unwrap_or(0),
                                    latency: unix_micros().saturating_sub(intended_unix),
                                },
                                Err(_) => Observation::Error("bad_response".into()),
                            }
                        }
                        Ok(response) => {
                            Observation::Error(format!("http {}", response.status().as_u16()))
                        }
                        Err(e) if e.is_timeout() => Observation::Error("timeout".into()),
                        Err(_) => Observation::Error("connection".into()),
                    };
                    let _ = observe.send(observation);
                });
            }
        }
    }
    let send_secs = started.elapsed().as_secs_f64();
    // Wait until every send is answered (acked or failed; at most a minute),
    // then let the last deliveries land before stopping the readers.
    let deadline = Instant::now() + Duration::from_secs(60);
    while resolved.load(Ordering::Relaxed) < schedule.total() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for reader in &readers {
        reader.abort();
    }
    drop(members);
    let mut rejoined = Vec::new();
    if let Some(disrupting) = disrupting {
        for handle in disrupting.await? {
            rejoined.push(handle?);
        }
    }
    for reader in rejoined {
        reader.abort();
    }
    drop(observe);
    let (delivery, ack, loss, errors, recovery) = collector.await?;
    let loss = loss.report();
    let users = members_count;
    println!(
        "\n{scenario}: {} users, {} msg/s target over {:?}, {} s",
        users, args.rate, args.transport, args.duration
    );
    println!("{}", crate::stats::header());
    println!("{}", ack.row("ack (send→stored)"));
    println!("{}", delivery.row("delivery (send→recv)"));
    if recovery.count() > 0 {
        println!("{}", recovery.row("recovery (drop→synced)"));
    }
    println!(
        "throughput {:.0} msg/s acknowledged; loss check: {} acked, {} missing, {} duplicates, {} out of order{}",
        loss.acked as f64 / send_secs,
        loss.acked,
        loss.missing,
        loss.duplicates,
        loss.out_of_order,
        if errors.is_empty() {
            String::new()
        } else {
            format!("; errors {errors:?}")
        }
    );
    Ok(json!({
        "scenario": scenario,
        "params": {"users": users, "recipients_per_message": recipients_per_message, "rate": args.rate, "duration_s": args.duration, "transport": format!("{:?}", args.transport)},
        "setup_s": setup_secs,
        "sent": schedule.total(),
        "throughput_msg_s": loss.acked as f64 / send_secs,
        "ack_latency": ack.summary(),
        "delivery_latency": delivery.summary(),
        "loss": loss.to_json(),
        "reconnect": disruption.map(|d| json!({
            "fraction": d.fraction, "kill_node": d.kill_node, "after_s": d.after.as_secs_f64(), "jitter_ms": d.jitter.as_millis() as u64, "recovery": recovery.summary(),
        })),
        "errors": errors,
    }))
}

type Source = futures_util::stream::SplitStream<crate::server::Socket>;

/// Reads one member's socket: deliveries (skipping `seq`s up to `skip_upto`,
/// which a catch-up already applied), acks and errors. `last_seen` follows the
/// highest `seq` received, for a later catch-up.
fn spawn_reader(
    mut source: Source,
    n: usize,
    me: String,
    observe: mpsc::UnboundedSender<Observation>,
    last_seen: Arc<AtomicI64>,
    skip_upto: i64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(frame)) = source.next().await {
            let Message::Text(text) = frame else { continue };
            let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let now = unix_micros();
            match event["type"].as_str() {
                Some("message.created") if event["data"]["senderId"] != me.as_str() => {
                    let data = &event["data"];
                    let seq = data["seq"].as_i64().unwrap_or(0);
                    if seq <= skip_upto {
                        continue;
                    }
                    last_seen.fetch_max(seq, Ordering::Relaxed);
                    let intended = data["body"]
                        .as_str()
                        .and_then(intended_from_body)
                        .unwrap_or(now);
                    let _ = observe.send(Observation::Delivered {
                        recipient: n,
                        conversation: data["conversationId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        seq,
                        latency: now.saturating_sub(intended),
                    });
                }
                Some("ack") => {
                    let message = &event["data"]["message"];
                    let intended = message["body"]
                        .as_str()
                        .and_then(intended_from_body)
                        .unwrap_or(now);
                    let _ = observe.send(Observation::Acked {
                        conversation: message["conversationId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        seq: message["seq"].as_i64().unwrap_or(0),
                        latency: now.saturating_sub(intended),
                    });
                }
                Some("error") => {
                    let _ =
                        observe.send(Observation::Error(format!("ws {}", event["data"]["code"])));
                }
                _ => {}
            }
        }
    })
}

/// Kill a fraction of the sockets at some point of the run, then reconnect
/// them the way the README tells clients to: catch up over REST
/// (`messages?after=<last seen>`), then follow the socket again.
#[derive(Clone, Copy, Debug)]
pub struct Disruption {
    pub fraction: f64,
    pub after: Duration,
    /// Reconnects are spread over this long (after a 200 ms pause).
    pub jitter: Duration,
    /// Instead of killing sockets, kill this node of the cluster (its index
    /// in `--server`, SIGKILL): its clients reconnect to the next node.
    pub kill_node: Option<usize>,
}

/// What a reconnecting member needs.
struct Rejoin {
    n: usize,
    /// The client index whose node it reconnects to (`n`, or the next
    /// node's when its own was killed).
    via: usize,
    me: String,
    token: String,
    conversation: String,
    last_seen: Arc<AtomicI64>,
}

/// Reconnects one member after its socket was killed at `dropped`, catches up,
/// and reports the time from the drop to being caught up.
async fn rejoin(
    target: Arc<Target>,
    member: Rejoin,
    dropped: Instant,
    delay: Duration,
    observe: mpsc::UnboundedSender<Observation>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    tokio::time::sleep(Duration::from_millis(200) + delay).await;
    let (sink, source) = target.connect(&member.token, member.via).await?.split();
    tokio::spawn(async move {
        let _sink = sink;
        std::future::pending::<()>().await;
    });
    loop {
        let after = member.last_seen.load(Ordering::Relaxed);
        let url = target.url_on(
            member.via,
            &format!(
                "/chat/conversations/{}/messages?after={after}&limit=100",
                member.conversation
            ),
        );
        let page: Value = target
            .http
            .get(url)
            .bearer_auth(&member.token)
            .send()
            .await?
            .json()
            .await?;
        let now = unix_micros();
        for message in page["items"].as_array().into_iter().flatten() {
            let seq = message["seq"].as_i64().unwrap_or(0);
            member.last_seen.fetch_max(seq, Ordering::Relaxed);
            if message["senderId"] == member.me.as_str() {
                continue;
            }
            let intended = message["body"]
                .as_str()
                .and_then(intended_from_body)
                .unwrap_or(now);
            let _ = observe.send(Observation::Delivered {
                recipient: member.n,
                conversation: member.conversation.clone(),
                seq,
                latency: now.saturating_sub(intended),
            });
        }
        if page["hasMore"] != true {
            break;
        }
    }
    let _ = observe.send(Observation::Recovered(dropped.elapsed().as_micros() as u64));
    let caught_up = member.last_seen.load(Ordering::Relaxed);
    Ok(spawn_reader(
        source,
        member.n,
        member.me,
        observe,
        member.last_seen,
        caught_up,
    ))
}

/// A chat load to run alongside another scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct Alongside {
    /// Also run a chat load at this many messages per second (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub chat_rate: f64,
    /// Users of that chat load.
    #[arg(long, default_value_t = 1000)]
    pub chat_users: usize,
}

/// Starts the chat load `alongside` for `duration` seconds (none when its
/// rate is 0), and waits until it is set up and sending.
pub async fn in_background(
    target: &Arc<Target>,
    alongside: &Alongside,
    duration: u64,
    run_id: &str,
) -> Option<tokio::task::JoinHandle<anyhow::Result<Value>>> {
    if alongside.chat_rate <= 0.0 {
        return None;
    }
    let users = alongside.chat_users;
    let args = ChatArgs {
        users,
        rate: alongside.chat_rate,
        duration,
        transport: Transport::Http,
    };
    let (target, run_id) = (target.clone(), format!("{run_id}-bg"));
    let handle = tokio::spawn(async move { run(target, &args, &run_id, None).await });
    // Let the chat load finish its set-up and start sending first.
    tokio::time::sleep(std::time::Duration::from_secs(
        ((users / 200) as u64).clamp(3, 30),
    ))
    .await;
    Some(handle)
}

/// The report of a chat load started by [`in_background`], once it ends.
pub async fn background_report(
    load: Option<tokio::task::JoinHandle<anyhow::Result<Value>>>,
) -> anyhow::Result<Option<Value>> {
    match load {
        Some(handle) => Ok(Some(handle.await??)),
        None => Ok(None),
    }
}

/// ` under N msg/s of chat` for a report's title (empty without a chat load).
pub fn under_chat(rate: f64) -> String {
    if rate > 0.0 {
        format!(" under {rate} msg/s of chat")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_intended_time() {
        assert_eq!(
            intended_from_body(&body(1_700_000_000_000_000, 7)),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(intended_from_body("hello"), None);
    }
}
