//! What a browser page on the host platform's origin needs from the server:
//! CORS for the REST API and the HTTP fallbacks, tokens out of URLs, and
//! refusals it can read.

use reqwest::{Method, StatusCode, header};

use crate::helpers::{spawn_app, spawn_app_with};

const SHOP: &str = "https://shop.example";

#[tokio::test]
async fn pages_of_allowed_origins_may_call_the_api_and_others_may_not() {
    let app = spawn_app_with(|s| s.realtime.allowed_origins = vec![SHOP.into()]).await;
    let user = app.user("candidate").await;
    let preflight = |origin: &'static str, headers: &'static str| {
        app.http
            .request(Method::OPTIONS, app.url("/chat/conversations"))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
            .send()
    };
    let allowed = preflight(SHOP, "authorization,content-type").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let h = allowed.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    let allowed_headers = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    assert!(
        h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none(),
        "bearer tokens, no cookies"
    );
    assert!(
        h[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let stranger = preflight("https://evil.example", "authorization")
        .await
        .unwrap();
    assert!(
        stranger
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    // The platform's key is for servers, never for pages.
    let key = preflight(SHOP, "x-api-key").await.unwrap();
    let listed = key
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(!listed.contains("x-api-key"), "{listed}");

    // The answers themselves say who may read them, and expose Retry-After.
    for path in ["/chat/conversations", "/events/poll?timeout=1"] {
        let answer = app
            .http
            .get(app.url(path))
            .header(header::ORIGIN, SHOP)
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        let h = answer.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP, "{path}");
        assert!(
            h[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("retry-after"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_connect_ticket_opens_one_fallback_stream_and_tokens_stay_out_of_urls() {
    let app = spawn_app_with(|s| s.realtime.allowed_origins = vec![SHOP.into()]).await;
    let user = app.user("candidate").await;
    let anonymous = app
        .http
        .post(app.url("/realtime/ticket"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, issued) = app
        .post(&user, "/realtime/ticket", serde_json::Value::Null)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let ticket = issued["ticket"].as_str().unwrap();
    assert!(ticket.len() >= 40, "{ticket}");
    assert!(issued["expiresAt"].is_string());

    let poll = |query: String| {
        app.http
            .get(app.url(&format!("/events/poll?timeout=1&{query}")))
            .header(header::ORIGIN, SHOP)
            .send()
    };
    let first = poll(format!("ticket={ticket}")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    let again = poll(format!("ticket={ticket}")).await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::UNAUTHORIZED,
        "a ticket is spent by its first use"
    );
    let token = poll(format!("token={}", user.token)).await.unwrap();
    assert_eq!(
        token.status(),
        StatusCode::UNAUTHORIZED,
        "no tokens in URLs by default"
    );
    // A ticket is for the realtime endpoints only.
    let (status, ticket) = app
        .post(&user, "/realtime/ticket", serde_json::Value::Null)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let elsewhere = app
        .http
        .get(app.url(&format!(
            "/chat/conversations?ticket={}",
            ticket["ticket"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_sdk_and_the_app_are_served_by_the_server_with_strict_headers() {
    let app = spawn_app().await;
    for (path, kind, marker) in [
        ("/app/", "text/html", "/app/main.js"),
        (
            "/app/chat.js",
            "text/javascript",
            "export async function mount",
        ),
        ("/app/app.css", "text/css", ".inbox-row"),
        ("/app/admin/", "text/html", "/app/admin/admin.js"),
        (
            "/sdk/parley.js",
            "text/javascript",
            "export class ParleyClient",
        ),
        (
            "/sdk/parley.d.ts",
            "application/typescript",
            "export declare class ParleyClient",
        ),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let h = response.headers().clone();
        assert!(
            h[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert!(response.text().await.unwrap().contains(marker), "{path}");
    }
    // A page may run its own scripts and call its own API, nothing else.
    let page = app.http.get(app.url("/app/")).send().await.unwrap();
    let policy = policy_of(&page);
    for rule in [
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(rule), "{policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    // Directory paths without their slash are sent to it; nothing else is served.
    let not_following = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let no_slash = not_following
        .get(app.url("/app/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_slash.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(no_slash.headers()[header::LOCATION], "/app/admin/");
    for path in [
        "/app/app-check.mjs",
        "/app/../Cargo.toml",
        "/sdk/parley.test.mjs",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // With a real secret, no development sign-in is offered.
    let (_, config) = app.anonymous_get("/app/config.json").await;
    assert_eq!(
        config,
        serde_json::json!({ "devLogin": false, "tokenUrl": null })
    );
}

/// A response's Content-Security-Policy.
fn policy_of(response: &reqwest::Response) -> String {
    response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_app_can_be_served_from_a_directory_and_take_tokens_from_the_platform() {
    let dir = std::env::temp_dir().join(crate::helpers::unique("web"));
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("app/index.html"),
        "<!doctype html><title>edited</title>",
    )
    .unwrap();
    let token_url = "https://platform.example/parley/token";
    let app = spawn_app_with(|s| {
        s.server.web_dir = Some(dir.clone());
        s.auth.app_token_url = Some(token_url.into());
    })
    .await;
    let page = app.http.get(app.url("/app/")).send().await.unwrap();
    let policy = policy_of(&page);
    assert!(
        policy.contains("connect-src 'self' https://platform.example;"),
        "{policy}"
    );
    assert!(page.text().await.unwrap().contains("edited"));
    // A listed file the directory lacks is missing, not taken from the binary.
    let missing = app.http.get(app.url("/app/chat.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let (_, config) = app.anonymous_get("/app/config.json").await;
    assert_eq!(config["tokenUrl"], token_url);
}

#[tokio::test]
async fn development_sign_in_exists_only_when_switched_on() {
    let body = serde_json::json!({ "userId": "ana", "name": "Ana", "role": "candidate" });
    let real = spawn_app().await;
    let response = real
        .http
        .post(real.url("/dev/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "a real secret: off by default"
    );

    let dev = spawn_app_with(|s| s.auth.dev_login = Some(true)).await;
    let response = dev
        .http
        .post(dev.url("/dev/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let token: serde_json::Value = response.json().await.unwrap();
    let me = dev
        .http
        .get(dev.url("/users/me/settings"))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK, "the minted token signs in");
    let bad = serde_json::json!({ "userId": "ana", "name": "Ana", "role": "superuser" });
    let response = dev
        .http
        .post(dev.url("/dev/token"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The browser SDK (its long-poll transport, which node can run) against
/// this server: tickets, sync, live delivery, and the outbox across a
/// network outage (web/sdk/integration.mjs).
#[tokio::test]
async fn the_sdk_delivers_live_and_sends_what_was_written_offline_once() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("recruiter").await, app.user("candidate").await);
    let conversation = app.conversation(&alice, &bob).await;
    run_node(
        "web/sdk/integration.mjs",
        &[
            ("PARLEY_URL", app.url("")),
            ("ALICE_TOKEN", alice.token.clone()),
            ("BOB_TOKEN", bob.token.clone()),
            ("CONVERSATION", conversation.clone()),
        ],
        60,
    )
    .await;
    assert_eq!(app.stored_messages(&conversation).await, 4);
}

/// A reverse proxy in front of a test server, on a port of its own.
pub(crate) struct Proxy {
    child: tokio::process::Child,
    pub(crate) port: u16,
}

impl Proxy {
    /// nginx with the README's configuration: `Host` becomes the upstream's,
    /// the page's host travels as `X-Forwarded-Host`.
    async fn nginx(upstream: u16) -> Self {
        Self::nginx_passing(upstream, true).await
    }

    /// nginx that passes WebSocket upgrades on, or (`false`) does not, as
    /// proxies that know nothing of WebSockets do.
    pub(crate) async fn nginx_passing(upstream: u16, websockets: bool) -> Self {
        let binary = std::env::var("PARLEY_TEST_NGINX")
            .expect("PARLEY_TEST_NGINX names nginx (scripts/test.sh installs it)");
        let port = free_port();
        let dir = std::env::temp_dir().join(crate::helpers::unique("nginx"));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let upgrade = if websockets {
            "proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;"
        } else {
            ""
        };
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
             events {{}}
             http {{
               access_log off;
               client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
               uwsgi_temp_path {d}; scgi_temp_path {d};
               map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
               server {{
                 listen 127.0.0.1:{port};
                 location / {{
                   proxy_pass http://127.0.0.1:{upstream};
                   proxy_http_version 1.1;
                   {upgrade}
                   proxy_set_header X-Forwarded-Host $http_host;
                   proxy_set_header X-Forwarded-Proto $scheme;
                   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                   proxy_buffering off;
                   proxy_read_timeout 1h;
                 }}
               }}
             }}"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = tokio::process::Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        Self::ready(child, port).await
    }

    /// Caddy with the README's Caddyfile (it keeps the page's `Host`).
    async fn caddy(upstream: u16) -> Self {
        let binary = std::env::var("PARLEY_TEST_CADDY")
            .expect("PARLEY_TEST_CADDY names caddy (scripts/test.sh installs it)");
        let port = free_port();
        let dir = std::env::temp_dir().join(crate::helpers::unique("caddy"));
        std::fs::create_dir_all(&dir).unwrap();
        let caddyfile = format!(
            "{{\n  admin off\n  auto_https off\n  storage file_system {}\n}}\nhttp://127.0.0.1:{port} {{\n  reverse_proxy 127.0.0.1:{upstream}\n}}\n",
            dir.display()
        );
        std::fs::write(dir.join("Caddyfile"), caddyfile).unwrap();
        let child = tokio::process::Command::new(binary)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(dir.join("Caddyfile"))
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", &dir)
            .env("XDG_CONFIG_HOME", &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("caddy starts");
        Self::ready(child, port).await
    }

    /// Waits until the proxy accepts connections.
    async fn ready(child: tokio::process::Child, port: u16) -> Self {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the proxy never listened on {port}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Self { child, port }
    }

    /// A WebSocket through the proxy, as the page on the proxy's origin
    /// opens it; `Err` with the close code when refused.
    async fn page_socket(
        &self,
        app: &crate::helpers::TestApp,
        user: &crate::helpers::TestUser,
    ) -> Result<crate::helpers::WsClient, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let (status, ticket) = app
            .post(user, "/realtime/ticket", serde_json::Value::Null)
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let url = format!(
            "ws://127.0.0.1:{}/ws?ticket={}",
            self.port,
            ticket["ticket"].as_str().unwrap()
        );
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "origin",
            format!("http://127.0.0.1:{}", self.port).parse().unwrap(),
        );
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the upgrade passes the proxy");
        let mut client = crate::helpers::WsClient { stream };
        match client
            .close_within(std::time::Duration::from_millis(300))
            .await
        {
            Some(code) => Err(code),
            None => Ok(client),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A port free now (bound, then released for a proxy to take).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn behind_nginx_and_caddy_the_pages_own_origin_may_connect() {
    let trusting =
        spawn_app_with(|s| s.realtime.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let (alice, bob) = (
        trusting.user("recruiter").await,
        trusting.user("candidate").await,
    );
    let conversation = trusting.conversation(&alice, &bob).await;
    let nginx = Proxy::nginx(trusting.port).await;
    let mut socket = nginx
        .page_socket(&trusting, &bob)
        .await
        .expect("same origin through nginx");
    let sent = trusting
        .send(&alice, &conversation, "through the proxy")
        .await;
    assert_eq!(
        socket.next_of_type("message.created").await["data"]["id"],
        sent["id"]
    );

    // Without trusting the proxy, nginx's rewritten Host makes the page
    // look cross-site, and a forged X-Forwarded-Host from anyone else is
    // ignored: refused, with a code the page can read.
    let wary = spawn_app().await;
    let carol = wary.user("candidate").await;
    let nginx_wary = Proxy::nginx(wary.port).await;
    assert_eq!(
        nginx_wary.page_socket(&wary, &carol).await.err(),
        Some(parley::ws::connection::CLOSE_FORBIDDEN)
    );
    // Caddy keeps the page's Host: nothing to configure.
    let caddy = Proxy::caddy(wary.port).await;
    assert!(
        caddy.page_socket(&wary, &carol).await.is_ok(),
        "same origin through Caddy"
    );
}

/// The SDK in real Chromium, on a page of another origin that imports it
/// from Parley (CORS), connects with a ticket over WebSocket, receives live
/// and sends, without a console error (web/sdk/browser-check.mjs).
#[tokio::test]
async fn the_sdk_works_in_chromium_from_a_page_of_the_host_platform() {
    sdk_in_chromium(false).await;
}

/// The same behind a proxy that does not pass WebSockets on: the SDK falls
/// back to Server-Sent Events and nothing else changes.
#[tokio::test]
async fn with_websockets_blocked_the_sdk_in_chromium_falls_back_to_sse() {
    sdk_in_chromium(true).await;
}

async fn sdk_in_chromium(block_websocket: bool) {
    let page_port = free_port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let app = spawn_app_with(|s| s.realtime.allowed_origins = vec![page_origin.clone()]).await;
    let (alice, bob) = (app.user("recruiter").await, app.user("candidate").await);
    let conversation = app.conversation(&alice, &bob).await;
    // Kept alive for the run: the page talks to Parley through it.
    let proxy = match block_websocket {
        true => Some(Proxy::nginx_passing(app.port, false).await),
        false => None,
    };
    let parley_url = proxy
        .as_ref()
        .map_or_else(|| app.url(""), |p| format!("http://127.0.0.1:{}", p.port));
    let chromium = std::env::var("PARLEY_TEST_CHROMIUM")
        .expect("PARLEY_TEST_CHROMIUM names chromium (scripts/test.sh installs it)");
    let playwright = std::env::var("PARLEY_TEST_PLAYWRIGHT_CORE")
        .expect("PARLEY_TEST_PLAYWRIGHT_CORE names playwright-core's index.mjs (scripts/test.sh installs it)");
    let block = if block_websocket { "1" } else { "0" };
    run_node(
        "web/sdk/browser-check.mjs",
        &[
            ("PARLEY_URL", parley_url),
            ("PAGE_PORT", page_port.to_string()),
            ("ALICE_TOKEN", alice.token.clone()),
            ("BOB_TOKEN", bob.token.clone()),
            ("CONVERSATION", conversation),
            ("BLOCK_WEBSOCKET", block.to_owned()),
            ("CHROMIUM", chromium),
            ("PLAYWRIGHT_CORE", playwright),
        ],
        90,
    )
    .await;
}

/// Runs a node script of the SDK's with `env`; asserts it succeeds within
/// `limit` seconds, showing its output when it does not.
pub(crate) async fn run_node(script: &str, env: &[(&str, String)], limit: u64) {
    let run = tokio::process::Command::new("node")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(limit), run)
        .await
        .unwrap_or_else(|_| panic!("{script} ends within {limit} s"))
        .expect("node runs (scripts/test.sh needs it)");
    assert!(
        output.status.success(),
        "{script}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
