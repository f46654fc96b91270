//! `uploads`: images of about `--kib` KiB (random pixels, so PNG cannot
//! shrink them) sent at a fixed rate on an open-loop schedule by U uploaders,
//! each in a conversation of its own and listening on a WebSocket: declare,
//! PUT to the signed URL, complete; then the time from the complete's answer
//! to the `attachment.updated` that says `available` (scan by clamd, the
//! image re-encoded with its preview and thumbnail). The server needs clamd
//! (`scripts/loadtest.sh` starts it).

use std::{
    collections::HashMap,
    io::Cursor,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{schedule::Schedule, server::Target, stats::Latencies};

/// How long to wait, after the last upload, for the scans still due.
const DRAIN: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, clap::Args)]
pub struct UploadsArgs {
    /// Uploads per second, in total.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Size of each image, roughly, in KiB.
    #[arg(long, default_value_t = 1024)]
    pub kib: usize,
    /// Uploaders (each in a conversation of its own).
    #[arg(long, default_value_t = 20)]
    pub uploaders: usize,
}

/// A PNG of random pixels of about `kib` KiB.
fn noise_png(kib: usize) -> anyhow::Result<Vec<u8>> {
    let side = ((kib * 1024 / 3) as f64).sqrt().ceil() as u32;
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let picture = image::RgbImage::from_fn(side, side, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        image::Rgb([seed as u8, (seed >> 8) as u8, (seed >> 16) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

pub async fn run(target: Arc<Target>, args: &UploadsArgs, run_id: &str) -> anyhow::Result<Value> {
    let png = Arc::new(noise_png(args.kib)?);
    let pairs = crate::server::pairs(&target, args.uploaders.max(1), run_id, "u").await?;
    // When each attachment's complete was answered, until it is seen available.
    let completed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (record, mut recorded) = mpsc::unbounded_channel::<(String, u64)>();
    for (n, pair) in pairs.iter().enumerate() {
        let socket = target.connect(&pair.a_token, n).await?;
        let (sink, mut source) = socket.split();
        let (completed, record) = (completed.clone(), record.clone());
        tokio::spawn(async move {
            let _sink = sink;
            while let Some(Ok(Message::Text(text))) = source.next().await {
                let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                let status = event["data"]["status"].as_str().unwrap_or_default();
                if event["type"] != "attachment.updated" || status == "pending_scan" {
                    continue;
                }
                let id = event["data"]["id"].as_str().unwrap_or_default().to_owned();
                let at = completed.lock().ok().and_then(|mut m| m.remove(&id));
                if let Some(at) = at {
                    let _ = record.send((status.to_owned(), at.elapsed().as_micros() as u64));
                }
            }
        });
    }
    drop(record);
    eprintln!(
        "uploads: {} uploads/s of {} KiB for {} s by {} uploaders",
        args.rate,
        png.len() / 1024,
        args.duration,
        pairs.len()
    );
    let (failed, mut failures) = mpsc::unbounded_channel::<String>();
    let started = Instant::now();
    let schedule = Schedule::new(started, args.rate, Duration::from_secs(args.duration));
    let pairs = Arc::new(pairs);
    let mut sends = Vec::new();
    for i in 0..schedule.total() {
        tokio::time::sleep_until(schedule.intended(i).into()).await;
        let (target, pairs, png, completed, failed) = (
            target.clone(),
            pairs.clone(),
            png.clone(),
            completed.clone(),
            failed.clone(),
        );
        sends.push(tokio::spawn(async move {
            let pair = &pairs[(i as usize) % pairs.len()];
            if let Err(e) = upload(&target, pair, &png, i, &completed).await {
                let _ = failed.send(e.to_string());
            }
        }));
    }
    drop(failed);
    stream::iter(sends)
        .for_each(|s| async {
            let _ = s.await;
        })
        .await;
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    while let Some(e) = failures.recv().await {
        *errors.entry(e).or_default() += 1;
    }
    let mut available = Latencies::default();
    let mut blocked = 0_u64;
    let deadline = Instant::now() + DRAIN;
    loop {
        let waiting = completed.lock().map(|m| m.len()).unwrap_or(0);
        if waiting == 0 {
            break;
        }
        match tokio::time::timeout_at(deadline.into(), recorded.recv()).await {
            Ok(Some((status, micros))) if status == "available" => available.record_micros(micros),
            Ok(Some(_)) => blocked += 1,
            _ => break,
        }
    }
    while let Ok((status, micros)) = recorded.try_recv() {
        if status == "available" {
            available.record_micros(micros);
        } else {
            blocked += 1;
        }
    }
    let never = completed.lock().map(|m| m.len()).unwrap_or(0);
    println!(
        "\nuploads: {} uploads/s of {} KiB images, {} s",
        args.rate,
        png.len() / 1024,
        args.duration
    );
    println!("{}", crate::stats::header());
    println!("{}", available.row("complete → available"));
    println!("blocked {blocked}, never available {never}, errors {errors:?}");
    Ok(json!({
        "scenario": "uploads",
        "params": {"rate": args.rate, "duration_s": args.duration, "bytes": png.len(), "uploaders": pairs.len()},
        "sent": schedule.total(),
        "complete_to_available": available.summary(),
        "blocked": blocked,
        "never_available": never,
        "errors": errors,
    }))
}

/// Declares, uploads and completes one image; records when the complete was answered.
async fn upload(
    target: &Target,
    pair: &crate::server::Pair,
    png: &[u8],
    i: u64,
    completed: &Mutex<HashMap<String, Instant>>,
) -> anyhow::Result<()> {
    let started: Value = target
        .http
        .post(target.url(&format!("/chat/conversations/{}/attachments", pair.conversation)))
        .bearer_auth(&pair.a_token)
        .json(&json!({"filename": format!("photo-{i}.png"), "contentType": "image/png", "size": png.len()}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let url = started["upload"]["url"].as_str().unwrap_or_default();
    let url = if url.starts_with('/') {
        target.url(url)
    } else {
        url.to_owned()
    };
    target
        .http
        .put(url)
        .header("content-type", "image/png")
        .body(png.to_vec())
        .send()
        .await?
        .error_for_status()?;
    let id = started["attachment"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Listed before the complete is sent (its `available` may come before
    // the answer does: then the time counts from the request), and timed
    // from the answer when that comes first.
    if let Ok(mut waiting) = completed.lock() {
        waiting.insert(id.clone(), Instant::now());
    }
    target
        .http
        .post(target.url(&format!("/chat/attachments/{id}/complete")))
        .bearer_auth(&pair.a_token)
        .send()
        .await?
        .error_for_status()?;
    if let Ok(mut waiting) = completed.lock()
        && let Some(at) = waiting.get_mut(&id)
    {
        *at = Instant::now();
    }
    Ok(())
}
