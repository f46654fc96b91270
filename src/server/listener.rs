//! The HTTP listener: accepts TCP connections and serves the router on each
//! over HTTP/1.1 (with upgrades to WebSocket), within limits that keep
//! clients who never send a request from exhausting the server:
//!
//! * **A global cap** on open connections (`PARLEY_MAX_CONNECTIONS`, below
//!   the process's file limit): beyond it a new connection is closed at once,
//!   counted in `parley_connections_refused_total` and logged (at most once a
//!   second), so that the server never hits "too many open files". A
//!   connection holds its place until its socket closes, WebSocket included.
//! * **A first-request timeout** (`PARLEY_HEADER_READ_TIMEOUT_SECS`): a
//!   connection that has not delivered a complete request head by then is
//!   closed; hyper applies the same timeout to every later request head, so
//!   idle keep-alive connections go too.
//! * **Room for the living**: at most `PARLEY_MAX_SILENT_CONNECTIONS`
//!   connections may be waiting for their first request; a new one pushes
//!   the oldest silent one out (`parley_connections_evicted_total`). Under a
//!   flood of silent sockets, a real client (who sends its request at once)
//!   still gets through, and `/healthz` keeps answering.
//! * **Refusals in the contract's shape**: hyper answers a request line or
//!   head it cannot take (414, 431, 400) itself, with an empty body; on a
//!   connection no request has reached yet, such an answer is replaced by the
//!   JSON error of DESIGN.md.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::connect_info::ConnectInfo};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch},
};
use tower::ServiceExt;

/// What the listener allows (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_silent: usize,
    pub header_read_timeout: Duration,
}

/// The listener's settings: its limits, and TLS when Parley terminates it.
#[derive(Clone)]
pub struct Listening {
    pub limits: ConnectionLimits,
    pub tls: Option<Arc<super::tls::Tls>>,
}

/// The most a lingering close reads away before closing anyway.
const LINGER_BYTES: usize = 1024 * 1024;

/// The largest request head hyper reads before answering 431 itself (a
/// request line over 64 KiB gets 414 from hyper first).
const MAX_HEAD_BYTES: usize = 128 * 1024;

/// Serves `router` on `listener` until `stop` completes; then stops
/// accepting, lets in-flight requests finish, and returns once every HTTP
/// connection is done (upgraded WebSockets are the realtime layer's to end).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    listening: Listening,
    stop: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let limits = listening.limits;
    if let Some(tls) = &listening.tls {
        tls.reload_on_hangup();
    }
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let silent = Arc::new(SilentQueue::new(limits.max_silent));
    let (stopping, stop_seen) = watch::channel(false);
    let refusal_log = AtomicU64::new(0);
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors (or another transient failure):
                    // wait a moment instead of spinning.
                    metrics::counter!("parley_accept_errors_total").increment(1);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            metrics::counter!("parley_connections_refused_total").increment(1);
            log_refusal(&refusal_log, limits.max_connections);
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let (router, silent, stop_seen) = (router.clone(), silent.clone(), stop_seen.clone());
        let within = limits.header_read_timeout;
        match &listening.tls {
            None => {
                tokio::spawn(connection(
                    tcp, peer, place, router, silent, within, stop_seen,
                ));
            }
            Some(tls) => {
                // The handshake is part of the first request's time.
                let acceptor = tls.acceptor();
                tokio::spawn(async move {
                    match tokio::time::timeout(within, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            connection(tls, peer, place, router, silent, within, stop_seen).await
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("parley_tls_handshake_failures_total").increment(1);
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!("parley_connections_timed_out_total").increment(1);
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    drop(stop_seen);
    let _ = stopping.send(true);
    stopping.closed().await;
    Ok(())
}

/// Logs a refusal over the cap, at most once a second.
fn log_refusal(last: &AtomicU64, cap: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if last.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(
            cap,
            "refusing connections: {cap} are open (PARLEY_MAX_CONNECTIONS)"
        );
    }
}

/// Serves one connection until it ends, is pushed out while silent, times
/// out before its first request, or the server stops.
async fn connection<T>(
    socket: T,
    peer: SocketAddr,
    place: OwnedSemaphorePermit,
    router: Router,
    silent: Arc<SilentQueue>,
    first_request_within: Duration,
    mut stop: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let proven = Arc::new(AtomicBool::new(false));
    let pushed_out = silent.enter(proven.clone());
    let io = Guarded {
        inner: socket,
        proven: proven.clone(),
        replacement: None,
        lingering: None,
        _place: place,
    };
    let marked = proven.clone();
    let service = router.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            marked.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        },
    );
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(first_request_within)
        .max_header_size(MAX_HEAD_BYTES)
        .serve_connection(
            TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(service),
        )
        .with_upgrades();
    tokio::pin!(served);
    tokio::pin!(pushed_out);
    let first_request = tokio::time::sleep(first_request_within);
    tokio::pin!(first_request);
    let mut asked_to_stop = false;
    loop {
        tokio::select! {
            _ = &mut served => return,
            _ = &mut pushed_out, if !proven.load(Ordering::Relaxed) => {
                metrics::counter!("parley_connections_evicted_total").increment(1);
                return;
            }
            () = &mut first_request, if !proven.load(Ordering::Relaxed) => {
                metrics::counter!("parley_connections_timed_out_total").increment(1);
                return;
            }
            _ = stop.changed(), if !asked_to_stop => {
                asked_to_stop = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The connections still waiting for their first request, oldest first.
struct SilentQueue {
    max: usize,
    waiting: Mutex<std::collections::VecDeque<(Arc<AtomicBool>, oneshot::Sender<()>)>>,
}

impl SilentQueue {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            waiting: Mutex::default(),
        }
    }

    /// Adds a connection; resolves when it is pushed out by newer ones.
    fn enter(&self, proven: Arc<AtomicBool>) -> oneshot::Receiver<()> {
        let (push_out, pushed_out) = oneshot::channel();
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        waiting.push_back((proven, push_out));
        if waiting.len() > self.max {
            waiting.retain(|(proven, tx)| !proven.load(Ordering::Relaxed) && !tx.is_closed());
        }
        while waiting.len() > self.max {
            if let Some((_, oldest)) = waiting.pop_front() {
                let _ = oldest.send(());
            }
        }
        pushed_out
    }
}

/// A connection's socket with its place under the cap (released when the
/// socket is dropped, after an upgrade too), and hyper's own refusals before
/// any request replaced by the contract's JSON error.
struct Guarded<T> {
    inner: T,
    proven: Arc<AtomicBool>,
    /// The JSON answer being written instead of hyper's, and how much of it is out.
    replacement: Option<(Vec<u8>, usize)>,
    /// After a replacement: our side is closed, and this much of what the
    /// client was still sending has been read away.
    lingering: Option<usize>,
    _place: OwnedSemaphorePermit,
}

/// The JSON error answer for hyper's own refusal `head`, if it is one.
fn replacement_for(head: &[u8]) -> Option<Vec<u8>> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let (code, message) = match status {
        b"400" => ("bad_request", "the request could not be parsed"),
        b"414" => ("uri_too_long", "the request line is too long"),
        b"431" => ("headers_too_large", "the request headers are too large"),
        _ => return None,
    };
    let reason = match status {
        b"400" => "Bad Request",
        b"414" => "URI Too Long",
        _ => "Request Header Fields Too Large",
    };
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    Some(
        format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            String::from_utf8_lossy(status),
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncWrite + Unpin> Guarded<T> {
    /// Writes what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                return Poll::Ready(Ok(()));
            }
            let n =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none()
            && !this.proven.load(Ordering::Relaxed)
            && let Some(answer) = replacement_for(buf)
        {
            this.replacement = Some((answer, 0));
        }
        if this.replacement.is_some() {
            // hyper's own answer is swallowed whole; ours goes out instead.
            std::task::ready!(this.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// After a replacement, a lingering close: our side shuts, and what the
    /// client is still sending (the rest of an oversized head) is read away
    /// (up to [`LINGER_BYTES`]) before the socket closes, so that the close
    /// does not reset the connection and lose the answer on its way.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        if self.replacement.is_none() {
            return Pin::new(&mut self.inner).poll_shutdown(cx);
        }
        if self.lingering.is_none() {
            std::task::ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            self.lingering = Some(0);
        }
        let mut scratch = [0u8; 8192];
        while let Some(read) = self.lingering.filter(|read| *read < LINGER_BYTES) {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    self.lingering = Some(read + buf.filled().len());
                }
                Poll::Ready(_) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_refusals_become_json_errors_and_nothing_else_changes() {
        let answer = replacement_for(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n")
            .expect("a refusal");
        let text = String::from_utf8(answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "uri_too_long");
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
        assert!(replacement_for(b"HTTP/1.1 200 OK\r\n").is_none());
        assert!(replacement_for(b"garbage").is_none());
    }

    #[test]
    fn a_full_silent_queue_pushes_out_the_oldest_silent_connection() {
        let queue = SilentQueue::new(2);
        let first = Arc::new(AtomicBool::new(false));
        let second = Arc::new(AtomicBool::new(false));
        let mut a = queue.enter(first.clone());
        let mut b = queue.enter(second.clone());
        second.store(true, Ordering::Relaxed); // b sent its request
        let mut c = queue.enter(Arc::new(AtomicBool::new(false)));
        assert!(a.try_recv().is_err(), "room: b no longer counts");
        let _d = queue.enter(Arc::new(AtomicBool::new(false)));
        assert!(a.try_recv().is_ok(), "the oldest silent one goes");
        assert!(b.try_recv().is_err() && c.try_recv().is_err());
    }
}
