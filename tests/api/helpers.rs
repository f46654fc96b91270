//! The test harness: the real application on port 0 against the real local
//! Postgres (`PARLEY_TEST_DATABASE_URL`, default database `parley_test`), with
//! data isolated per test by unique user ids, plus typed HTTP and WebSocket
//! helpers.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parley::{
    Application,
    chat::ChatCore,
    config::{Secret, Settings},
    http::auth::JwtKeys,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message as WsMessage};
use uuid::Uuid;

pub const JWT_SECRET: &str = "integration-test-secret-0123456789";
pub const INTERNAL_API_KEY: &str = "integration-test-platform-key";

pub fn database_url() -> String {
    std::env::var("PARLEY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/parley_test".to_string())
}

/// Settings for a test server: port 0, the test database, a known secret.
pub fn test_settings() -> Settings {
    // Before any HTTP client of the tests is built (see `parley::push`).
    parley::push::install_tls_provider();
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.database.url = Secret::new(database_url());
    settings.database.pool_size = 8;
    settings.auth.jwt_secret = Secret::new(JWT_SECRET);
    settings.auth.internal_api_key = Some(Secret::new(INTERNAL_API_KEY));
    // Tests send hundreds of messages; the rate-limit tests switch them back on.
    settings.limits.enabled = false;
    // Emails of tests that do not look at them go to a scratch folder.
    settings.mail.dir = std::env::temp_dir().join("parley-test-mail");
    settings.attachments.blob_store = format!(
        "file://{}",
        std::env::temp_dir().join("parley-test-blobs").display()
    );
    settings.attachments.clamd_addr = Some(clamd_addr());
    // Retention runs only when a test asks (it would touch every test's data).
    settings.retention.daily_at = None;
    settings
}

/// clamd of the tests (`scripts/test.sh` starts it on 127.0.0.1:3310).
pub fn clamd_addr() -> String {
    std::env::var("PARLEY_TEST_CLAMD_ADDR").unwrap_or_else(|_| "127.0.0.1:3310".to_string())
}

pub struct TestApp {
    pub port: u16,
    pub http: reqwest::Client,
    pub keys: JwtKeys,
    pub pool: deadpool_postgres::Pool,
    pub chat: ChatCore,
    /// The clock the server's rules use; tests move it forward.
    pub clock: parley::domain::clock::ManualClock,
    /// Prefix of the node's keys and channels in Redis (cluster tests).
    pub redis_prefix: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    adjust(&mut settings);
    let clock = parley::domain::clock::ManualClock::default();
    let redis_prefix = settings.cluster.redis_prefix.clone();
    // The tests' own connections, to look at and disturb the database.
    let pool = parley::persistence::connect_pool(&settings.database).expect("test pool");
    let app = Application::build_with_clock(settings, std::sync::Arc::new(clock.clone()))
        .await
        .expect("application builds");
    let port = app.port();
    let chat = app.state().chat.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        port,
        http: reqwest::Client::new(),
        keys: JwtKeys::new(&Secret::new(JWT_SECRET)),
        pool,
        chat,
        clock,
        redis_prefix,
        stop: Some(stop),
        server: Some(server),
    }
}

/// The real `parley` binary as a child process on a free port, against the
/// test database, with `env` added; returns once it is ready.
pub async fn spawn_binary(env: &[(&str, String)]) -> (tokio::process::Child, u16) {
    parley::push::install_tls_provider();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let server = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("serve")
        .env("PARLEY_LISTEN", format!("127.0.0.1:{port}"))
        .env("PARLEY_DATABASE_URL", database_url())
        .env("PARLEY_JWT_SECRET", JWT_SECRET)
        .env("PARLEY_INTERNAL_API_KEY", INTERNAL_API_KEY)
        .env("PARLEY_RATE_LIMITS", "off")
        .env("PARLEY_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    // Over TLS (which this client does not speak) the port opening is enough.
    let tls = env.iter().any(|(k, _)| *k == "PARLEY_TLS_CERT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !if tls {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    } else {
        http.get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    } {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (server, port)
}

/// A TCP proxy in front of a local service (Redis, RabbitMQ) that a test can
/// break in the two ways networks break:
/// * [`TcpProxy::silence`]: the connections open at that moment stay open,
///   but nothing the service sends reaches the client any more (the failure
///   pub/sub shows behind some failovers); connections opened later work;
/// * [`TcpProxy::cut`]: every connection is closed and new ones are refused
///   until [`TcpProxy::restore`] (the service is down, as far as the client
///   can tell).
pub struct TcpProxy {
    pub port: u16,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    down: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl TcpProxy {
    pub async fn start(service_port: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let down = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let (current, is_down) = (generation.clone(), down.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *is_down.borrow() {
                    continue; // dropped: refused
                }
                let born = current.load(Ordering::SeqCst);
                let current = current.clone();
                let mut cut = is_down.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", service_port)).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = tokio::io::copy(&mut client_read, &mut server_write);
                    let downstream = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let n = server_read.read(&mut buffer).await?;
                            if n == 0 {
                                // The service closed: so does the proxy, towards the client.
                                client_write.shutdown().await?;
                                return Ok::<_, std::io::Error>(());
                            }
                            if current.load(Ordering::SeqCst) == born {
                                client_write.write_all(&buffer[..n]).await?;
                            }
                        }
                    };
                    tokio::select! {
                        _ = async { tokio::join!(upstream, downstream) } => {}
                        _ = cut.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Self {
            port,
            generation,
            down,
        }
    }

    pub fn silence(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn cut(&self) {
        self.down.send_replace(true);
    }

    pub fn restore(&self) {
        self.down.send_replace(false);
    }
}

/// A minimal SMTP server that accepts every message and hands each one's
/// raw text (headers and body) to the test.
pub struct SmtpSink {
    pub port: u16,
    pub received: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (deliver, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let deliver = deliver.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(text) = data.as_mut() {
                            if line == "." {
                                let _ = deliver.send(std::mem::take(text));
                                data = None;
                                let _ = write.write_all(b"250 queued\r\n").await;
                            } else {
                                text.push_str(line.strip_prefix('.').unwrap_or(&line));
                                text.push('\n');
                            }
                            continue;
                        }
                        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 sink\r\n",
                            "DATA" => {
                                data = Some(String::new());
                                b"354 go on\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        let _ = write.write_all(reply).await;
                    }
                });
            }
        });
        Self { port, received }
    }
}

/// The Redis the cluster tests use (`PARLEY_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("PARLEY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// `n` nodes sharing the test database and one Redis under a prefix of
/// their own, named `n0`, `n1`, …
pub async fn spawn_cluster(n: usize, adjust: impl Fn(&mut Settings)) -> Vec<TestApp> {
    let prefix = unique("parley-test");
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        nodes.push(
            spawn_app_with(|s| {
                s.cluster.redis_url = Some(Secret::new(redis_url()));
                s.cluster.redis_prefix = prefix.clone();
                s.cluster.node_id = Some(format!("n{i}"));
                adjust(s);
            })
            .await,
        );
    }
    nodes
}

/// A test server with a database of its own (created here, migrated by the
/// server), for tests that must lock whole tables without disturbing the
/// others. Drop it with [`drop_database`] at the end.
pub async fn spawn_app_on_own_database(adjust: impl FnOnce(&mut Settings)) -> (TestApp, String) {
    let name = unique("parley_test_own").replace('-', "_");
    on_test_database(&format!("CREATE DATABASE {name}")).await;
    let own_url = database_url_named(&name);
    let app = spawn_app_with(|s| {
        s.database.url = Secret::new(own_url);
        adjust(s);
    })
    .await;
    (app, name)
}

/// The URL of database `name` on the test database's server.
pub fn database_url_named(name: &str) -> String {
    let url = database_url();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// Drops a database made by [`spawn_app_on_own_database`].
pub async fn drop_database(name: &str) {
    on_test_database(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Runs one statement on a connection of its own to the test database
/// (`CREATE DATABASE` and `DROP DATABASE` refuse to run in a transaction).
async fn on_test_database(statement: &str) {
    let (admin, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("connects to the test database");
    tokio::spawn(connection);
    admin
        .simple_query(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::now_v7().simple())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops accepting, finishes in-flight requests, stops the actors.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
    }

    /// A new user with a valid token, known to the server (first request upserts it).
    pub async fn user(&self, role: &str) -> TestUser {
        let id = unique(role);
        let token = self
            .keys
            .mint(&id, &format!("User {id}"), role, None, 3600)
            .unwrap();
        let user = TestUser { id, token };
        let (status, body) = self.get(&user, "/chat/conversations").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        user
    }

    pub async fn get(&self, user: &TestUser, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    pub async fn post(&self, user: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
        self.json_request(reqwest::Method::POST, user, path, body)
            .await
    }

    pub async fn patch(&self, user: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
        self.json_request(reqwest::Method::PATCH, user, path, body)
            .await
    }

    /// A DELETE without a body.
    pub async fn delete(&self, user: &TestUser, path: &str) -> (StatusCode, Value) {
        decode(
            self.http
                .delete(self.url(path))
                .bearer_auth(&user.token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// GETs `path` as `user` until `done` holds for the answer (or panics
    /// after 30 s): for work that finishes in the background.
    pub async fn get_until(
        &self,
        user: &TestUser,
        path: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get(user, path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never got there: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A DELETE with a JSON body.
    pub async fn delete_with(
        &self,
        user: &TestUser,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.json_request(reqwest::Method::DELETE, user, path, body)
            .await
    }

    async fn json_request(
        &self,
        method: reqwest::Method,
        user: &TestUser,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&user.token)
            .json(&body);
        decode(request.send().await.unwrap()).await
    }

    /// Find-or-create; returns the status and the conversation.
    pub async fn open(
        &self,
        from: &TestUser,
        to: &TestUser,
        context: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut body = json!({ "participantId": to.id });
        if let Some(context) = context {
            body["context"] = context;
        }
        self.post(from, "/chat/conversations", body).await
    }

    /// Registers a context through the server-to-server API.
    pub async fn register_context(
        &self,
        kind: &str,
        id: &str,
        users: &[&TestUser],
        pre_accepted: bool,
    ) -> StatusCode {
        let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let body = json!({"title": format!("Job {id}"), "allowedUserIds": ids, "preAccepted": pre_accepted});
        self.platform(
            reqwest::Method::PUT,
            &format!("/internal/contexts/{kind}/{id}"),
            body,
        )
        .await
        .0
    }

    /// A server-to-server call of the host platform (with the API key).
    pub async fn platform(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let request = self
            .http
            .request(method, self.url(path))
            .header("x-api-key", INTERNAL_API_KEY)
            .json(&body);
        decode(request.send().await.unwrap()).await
    }

    /// A conversation between two people the platform already connected (a
    /// pre-accepted context, as a job application is): no message request.
    pub async fn conversation(&self, from: &TestUser, to: &TestUser) -> String {
        let context = unique("app");
        let status = self
            .register_context("application", &context, &[from, to], true)
            .await;
        assert!(status.is_success(), "{status}");
        let (status, conv) = self
            .open(
                from,
                to,
                Some(json!({"type": "application", "id": context})),
            )
            .await;
        assert!(status.is_success(), "{status} {conv}");
        conv["id"].as_str().unwrap().to_string()
    }

    /// A conversation between strangers: the first message is a request.
    pub async fn stranger_conversation(&self, from: &TestUser, to: &TestUser) -> String {
        let (status, conv) = self.open(from, to, None).await;
        assert!(status.is_success(), "{status} {conv}");
        conv["id"].as_str().unwrap().to_string()
    }

    pub async fn send_raw(
        &self,
        user: &TestUser,
        conversation: &str,
        body: &str,
        client_id: &str,
    ) -> (StatusCode, Value) {
        self.post(
            user,
            &format!("/chat/conversations/{conversation}/messages"),
            json!({ "body": body, "clientMessageId": client_id }),
        )
        .await
    }

    /// Sends a message and asserts it was stored; returns it.
    pub async fn send(&self, user: &TestUser, conversation: &str, body: &str) -> Value {
        let (status, message) = self
            .send_raw(user, conversation, body, &unique("cmid"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{message}");
        message
    }

    /// A WebSocket as a browser opens it: with a connect ticket in the URL.
    pub async fn ws(&self, user: &TestUser) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(self.ws_url(user).await)
            .await
            .expect("websocket connects");
        WsClient { stream }
    }

    /// `ws://…/ws?ticket=…` with a fresh ticket of `user`'s.
    pub async fn ws_url(&self, user: &TestUser) -> String {
        let (status, ticket) = self.post(user, "/realtime/ticket", Value::Null).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        format!(
            "ws://127.0.0.1:{}/ws?ticket={}",
            self.port,
            ticket["ticket"].as_str().unwrap()
        )
    }

    /// One long-poll (`GET /events/poll?{query}`); asserts it answered 200.
    pub async fn poll(&self, user: &TestUser, query: &str) -> Value {
        let response = self
            .http
            .get(self.url(&format!("/events/poll?{query}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// How many messages the conversation holds in Postgres.
    pub async fn stored_messages(&self, conversation: &str) -> i64 {
        self.sql_i64(
            "SELECT count(*) FROM messages WHERE conversation_id = $1::text::uuid",
            &[&conversation],
        )
        .await
    }

    /// A request without credentials (health, metrics, OpenAPI).
    pub async fn anonymous_get(&self, path: &str) -> (StatusCode, Value) {
        decode(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// Runs one SQL statement against the test database.
    pub async fn sql_execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) {
        let client = self.pool.get().await.unwrap();
        client.execute(sql, params).await.unwrap();
    }

    /// Runs one SQL query against the test database.
    pub async fn sql_i64(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> i64 {
        let client = self.pool.get().await.unwrap();
        client.query_one(sql, params).await.unwrap().get(0)
    }
}

async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Asserts the DESIGN.md error shape and returns the code.
pub fn error_code(body: &Value) -> &str {
    let error = &body["error"];
    assert!(
        error["message"].is_string(),
        "error body without message: {body}"
    );
    error["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error body without code: {body}"))
}

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn send_json(&mut self, value: Value) {
        self.stream
            .send(WsMessage::text(value.to_string()))
            .await
            .unwrap();
    }

    /// The next JSON event, skipping protocol frames; panics after `wait`.
    /// The next event within `wait`, notifications aside (see [`WsClient::next_event`]).
    pub async fn next_event_within(&mut self, wait: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let event = self.next_frame_until(deadline).await;
            if event["type"] != "notification.created" {
                return event;
            }
        }
    }

    /// The next event of any type before `deadline`.
    async fn next_frame_until(&mut self, deadline: tokio::time::Instant) -> Value {
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("timed out waiting for an event")
                .expect("socket closed")
                .expect("socket error");
            match message {
                WsMessage::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                WsMessage::Close(frame) => panic!("socket closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next event, notifications aside: those are the outbox's, whose
    /// jobs any server on the shared test database may run, so they arrive
    /// or not whatever the test does (`next_of_type("notification.created")`
    /// waits for one; the notification tests run on databases of their own).
    pub async fn next_event(&mut self) -> Value {
        self.next_event_within(Duration::from_secs(5)).await
    }

    /// The next event, or `None` when the server closes the socket first.
    pub async fn next_event_or_close(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("timed out waiting for an event or a close")?;
            match message.ok()? {
                WsMessage::Text(text)
                    if text.as_str().contains("\"type\":\"notification.created\"") => {}
                WsMessage::Text(text) => return Some(serde_json::from_str(text.as_str()).unwrap()),
                WsMessage::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Waits for the next event of `kind`, skipping others.
    pub async fn next_of_type(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let event = self.next_frame_until(deadline).await;
            if event["type"] == kind {
                return event;
            }
        }
    }

    /// Asserts that no text event arrives within `wait` (notifications
    /// aside, as for [`WsClient::next_event`]).
    pub async fn assert_silent(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout_at(deadline, self.stream.next()).await
        {
            if let WsMessage::Text(text) = message
                && !text.as_str().contains("\"type\":\"notification.created\"")
            {
                panic!("unexpected event: {text}");
            }
        }
    }
}

impl TestApp {
    /// A socket whose client side has a tiny receive buffer, so a client that
    /// does not read backs up into the server quickly.
    pub async fn ws_with_small_receive_buffer(&self, user: &TestUser) -> WsClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket
            .connect(([127, 0, 0, 1], self.port).into())
            .await
            .unwrap();
        let url = self.ws_url(user).await;
        let (stream, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
            .await
            .expect("websocket connects");
        WsClient { stream }
    }
}

impl WsClient {
    /// The close code, when the server closes within `wait` (text skipped).
    pub async fn close_within(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(WsMessage::Close(frame)))) => {
                    return Some(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => return Some(1006),
                Err(_) => return None,
            }
        }
    }

    /// Reads until the server closes; returns the text events and the close code.
    pub async fn drain_until_closed(&mut self, wait: Duration) -> (Vec<Value>, Option<u16>) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut events = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(WsMessage::Text(text)))) => {
                    events.push(serde_json::from_str(text.as_str()).unwrap())
                }
                Ok(Some(Ok(WsMessage::Close(frame)))) => {
                    return (events, frame.map(|f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => return (events, None),
                Err(_) => panic!(
                    "the server never closed the socket ({} events read)",
                    events.len()
                ),
            }
        }
    }
}

impl WsClient {
    /// Asserts that no event of `kind` arrives within `wait` (others are skipped).
    pub async fn assert_silent_of(&mut self, kind: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout_at(deadline, self.stream.next()).await
        {
            if let WsMessage::Text(text) = message {
                let event: Value = serde_json::from_str(text.as_str()).unwrap();
                assert_ne!(event["type"], kind, "unexpected {event}");
            }
        }
    }
}

impl TestApp {
    /// Opens `/ws` with extra request headers; returns the client or the HTTP status of the refusal.
    /// A WebSocket opened with extra request headers; `Err` with the close
    /// code when the server refuses it (it upgrades, then closes at once).
    pub async fn ws_with_headers(
        &self,
        user: &TestUser,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.ws_url(user).await.into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket upgrades");
        let mut client = WsClient { stream };
        match client.close_within(Duration::from_millis(300)).await {
            Some(code) => Err(code),
            None => Ok(client),
        }
    }
}

/// A Server-Sent Events client over a real HTTP response.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl TestApp {
    /// Opens `GET /events`, optionally resuming after `last_event_id`.
    pub async fn sse(&self, user: &TestUser, last_event_id: Option<&str>) -> SseClient {
        let mut request = self.http.get(self.url("/events")).bearer_auth(&user.token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        SseClient {
            response,
            buffer: String::new(),
        }
    }
}

impl SseClient {
    /// The next event's id and envelope, notifications aside (as for
    /// [`WsClient::next_event`]); panics after five seconds.
    pub async fn next_event(&mut self) -> (Option<String>, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let event: Value = serde_json::from_str(&data).unwrap();
                if event["type"] == "notification.created" {
                    continue;
                }
                return (id, event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("timed out waiting for an SSE event")
                .unwrap()
                .expect("the event stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event of `kind`, with its id.
    pub async fn next_of_type(&mut self, kind: &str) -> (Option<String>, Value) {
        loop {
            let (id, event) = self.next_event().await;
            if event["type"] == kind {
                return (id, event);
            }
        }
    }
}
