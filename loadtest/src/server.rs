//! What the generator needs from the server under test: its address, tokens
//! signed with its secret, the platform API, and its resident memory.

use std::{fs, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use parley::{config::Secret, http::auth::JwtKeys};
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, client_async_with_config,
    tungstenite::{client::IntoClientRequest, protocol::WebSocketConfig},
};

/// How to reach and authenticate against the server under test: one node,
/// or several nodes of a cluster, over which clients are spread (client `n`
/// talks to node `n % nodes`, so the two members of a pair, `2k` and
/// `2k + 1`, are on different nodes).
pub struct Target {
    pub addrs: Vec<SocketAddr>,
    pub keys: JwtKeys,
    pub api_key: String,
    pub http: reqwest::Client,
    /// Distinct 127.0.0.x source addresses to spread client sockets over.
    pub sources: u8,
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Target {
    pub fn new(
        addrs: Vec<SocketAddr>,
        secret: &str,
        api_key: &str,
        sources: u8,
    ) -> anyhow::Result<Self> {
        if addrs.is_empty() {
            bail!("no server to test");
        }
        parley::push::install_tls_provider();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            addrs,
            keys: JwtKeys::new(&Secret::new(secret)),
            api_key: api_key.to_owned(),
            http,
            sources: sources.max(1),
        })
    }

    /// The node client `n` talks to.
    pub fn node(&self, n: usize) -> SocketAddr {
        self.addrs[n % self.addrs.len()]
    }

    /// A URL on the first node (set-up calls).
    pub fn url(&self, path: &str) -> String {
        self.url_on(0, path)
    }

    /// A URL on the node client `n` talks to.
    pub fn url_on(&self, n: usize, path: &str) -> String {
        format!("http://{}{path}", self.node(n))
    }

    /// GETs `url` with `token`; a failure is named for the error counts.
    pub async fn get_ok(&self, url: String, token: &str) -> Result<reqwest::Response, String> {
        match self.http.get(url).bearer_auth(token).send().await {
            Ok(r) if r.status().is_success() => Ok(r),
            Ok(r) => Err(format!("http {}", r.status().as_u16())),
            Err(_) => Err("connection".into()),
        }
    }

    /// A token for `user` (valid for a day).
    pub fn token(&self, user: &str, role: &str) -> anyhow::Result<String> {
        self.keys.mint(user, user, role, None, 86_400)
    }

    /// Opens a WebSocket for `token` (a bearer header, as a server-side client
    /// sends it) from source address 127.0.0.(1 + n % sources),
    /// with small buffers so that tens of thousands of clients fit in memory.
    pub async fn connect(&self, token: &str, n: usize) -> anyhow::Result<Socket> {
        let socket = TcpSocket::new_v4()?;
        let source = 1 + (n % usize::from(self.sources)) as u8;
        socket.bind(SocketAddr::from(([127, 0, 0, source], 0)))?;
        let stream = socket.connect(self.node(n)).await?;
        stream.set_nodelay(true)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(4096);
        let mut request = format!("ws://{}/ws", self.node(n)).into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (socket, _) =
            client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(config)).await?;
        Ok(socket)
    }

    /// Registers a pre-accepted context for two users and opens their
    /// conversation (so no message request gets in the way); returns its id.
    pub async fn connected_pair(
        &self,
        run: &str,
        a: &str,
        b: &str,
        a_token: &str,
    ) -> anyhow::Result<String> {
        let context = format!("{run}-{a}");
        let registered = self
            .http
            .put(self.url(&format!("/internal/contexts/loadtest/{context}")))
            .header("x-api-key", &self.api_key)
            .json(&json!({"allowedUserIds": [a, b], "preAccepted": true}))
            .send()
            .await?;
        if !registered.status().is_success() {
            bail!(
                "registering a context failed: {} (is PARLEY_INTERNAL_API_KEY set to --api-key?)",
                registered.status()
            );
        }
        let created = self
            .http
            .post(self.url("/chat/conversations"))
            .bearer_auth(a_token)
            .json(&json!({"participantId": b, "context": {"type": "loadtest", "id": context}}))
            .send()
            .await?;
        let status = created.status();
        let body: serde_json::Value = created.json().await?;
        body["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("creating a conversation failed: {status} {body}"))
    }

    /// Makes the server know `user` (its first authenticated request upserts it).
    pub async fn sign_in(&self, token: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .get(self.url("/chat/conversations?limit=1"))
            .bearer_auth(token)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("sign-in failed: {}", response.status());
        }
        Ok(())
    }
}

/// Two users the platform connected, and their conversation.
pub struct Pair {
    pub a: String,
    pub a_token: String,
    pub b: String,
    pub b_token: String,
    pub conversation: String,
}

/// Creates `count` connected pairs (user ids `<run>-<tag>a<i>` / `<run>-<tag>b<i>`).
pub async fn pairs(
    target: &Arc<Target>,
    count: usize,
    run_id: &str,
    tag: &str,
) -> anyhow::Result<Vec<Pair>> {
    stream::iter(0..count)
        .map(|i| {
            let target = target.clone();
            async move {
                let (a, b) = (format!("{run_id}-{tag}a{i}"), format!("{run_id}-{tag}b{i}"));
                let (a_token, b_token) = (
                    target.token(&a, "recruiter")?,
                    target.token(&b, "candidate")?,
                );
                target.sign_in(&a_token).await?;
                target.sign_in(&b_token).await?;
                let conversation = target.connected_pair(run_id, &a, &b, &a_token).await?;
                anyhow::Ok(Pair {
                    a,
                    a_token,
                    b,
                    b_token,
                    conversation,
                })
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Resident set size of `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")
}

/// Kills (SIGKILL) the server listening on `addr`; returns its pid.
pub fn kill_node(addr: SocketAddr) -> anyhow::Result<u32> {
    let pid = pid_listening_on(addr.port())?;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -KILL {pid} failed");
    }
    Ok(pid)
}

/// The pid of the process listening on `port` (scans /proc; needs the same user or root).
pub fn pid_listening_on(port: u16) -> anyhow::Result<u32> {
    let tcp = fs::read_to_string("/proc/net/tcp")?;
    let wanted = format!(":{port:04X}");
    let inode = tcp
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() > 9 && cols[1].ends_with(&wanted) && cols[3] == "0A")
        .map(|cols| cols[9].to_owned())
        .context("nothing listens on that port")?;
    let needle = format!("socket:[{inode}]");
    for entry in fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == needle))
        {
            return Ok(pid);
        }
    }
    bail!("no process owns the listening socket")
}
