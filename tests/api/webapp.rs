//! The web app and the moderation console in real Chromium, driven by
//! web/app/app-check.mjs: one scenario per test so that they run in
//! parallel, each against a server of its own with the development sign-in
//! on. Screenshots of every screen land in `target/screenshots/`.

use serde_json::{Value, json};

use crate::browser::{Proxy, run_node};
use crate::helpers::{TestApp, spawn_app_with, unique};

/// A person of the scenario: an id of this run, a name and a role.
fn person(name: &str, role: &str) -> Value {
    json!({ "id": unique(&name.to_lowercase().replace(' ', "-")), "name": name, "role": role })
}

/// The fixture of two people the platform connected through a job
/// application (a pre-accepted context): `{<key>: person, …, "context": {…}}`.
async fn connected(app: &TestApp, people: [(&str, &str, &str); 2]) -> Value {
    let mut fixture = serde_json::Map::new();
    for (key, name, role) in people {
        fixture.insert(key.into(), person(name, role));
    }
    let id = unique("app");
    let ids: Vec<&Value> = fixture.values().map(|p| &p["id"]).collect();
    let title = "Senior Backend Engineer";
    let (status, body) = app
        .platform(
            reqwest::Method::PUT,
            &format!("/internal/contexts/application/{id}"),
            json!({ "title": title, "subtitle": "Application #1042", "allowedUserIds": ids, "preAccepted": true }),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    fixture.insert(
        "context".into(),
        json!({ "type": "application", "id": id, "title": title }),
    );
    Value::Object(fixture)
}

async fn scenario(name: &str, fixture: Value, app: &TestApp, app_url: String) {
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
    run_node(
        "web/app/app-check.mjs",
        &[
            ("PARLEY_URL", app.url("")),
            ("APP_URL", app_url),
            ("SCENARIO", name.to_owned()),
            ("FIXTURE", fixture.to_string()),
            ("SCREENSHOTS", screenshots.to_owned()),
            (
                "CHROMIUM",
                std::env::var("PARLEY_TEST_CHROMIUM").expect(
                    "PARLEY_TEST_CHROMIUM names chromium (scripts/test.sh installs it)",
                ),
            ),
            (
                "PLAYWRIGHT_CORE",
                std::env::var("PARLEY_TEST_PLAYWRIGHT_CORE")
                    .expect("PARLEY_TEST_PLAYWRIGHT_CORE names playwright-core (scripts/test.sh installs it)"),
            ),
        ],
        120,
    )
    .await;
}

async fn dev_app() -> TestApp {
    spawn_app_with(|s| s.auth.dev_login = Some(true)).await
}

/// Sign in, open a conversation from a context, send and receive live,
/// typing, the unread badge following a read in a second tab, receipts,
/// the inbox search.
#[tokio::test]
async fn two_people_chat_live_in_the_web_app() {
    let app = dev_app().await;
    let fixture = connected(
        &app,
        [
            ("alice", "Alice Rivera", "recruiter"),
            ("bob", "Bob Chen", "candidate"),
        ],
    )
    .await;
    scenario("chat", fixture, &app, app.url("")).await;
}

/// A stranger's message request: one message until accepted, the request
/// with its trust indicators and plain-text links, accept, then a block
/// that the sender sees only as "Message could not be delivered."
#[tokio::test]
async fn a_message_request_in_the_web_app_is_one_message_until_accepted() {
    let app = dev_app().await;
    let fixture = json!({
        "carol": person("Carol Diaz", "candidate"),
        "dan": person("Dan Okafor", "recruiter"),
    });
    scenario("requests", fixture, &app, app.url("")).await;
}

/// A report from the conversation reaches the moderation console with its
/// evidence; the admin suspends the user, whose composer says so at once;
/// the audit log shows it and filters; a removed message becomes a
/// placeholder in the conversation.
#[tokio::test]
async fn a_report_is_handled_in_the_moderation_console() {
    let app = dev_app().await;
    let mut fixture = connected(
        &app,
        [
            ("erin", "Erin Walsh", "recruiter"),
            ("frank", "Frank Moreau", "candidate"),
        ],
    )
    .await;
    fixture["admin"] = person("Mod Team", "admin");
    scenario("moderation", fixture, &app, app.url("")).await;
}

/// Offline and back: messages sent meanwhile appear exactly once, and the
/// one typed while offline is delivered once.
#[tokio::test]
async fn the_web_app_comes_back_from_offline_with_nothing_lost_or_doubled() {
    let app = dev_app().await;
    let fixture = connected(
        &app,
        [
            ("gina", "Gina Rossi", "recruiter"),
            ("hal", "Hal Berg", "candidate"),
        ],
    )
    .await;
    scenario("offline", fixture, &app, app.url("")).await;
}

/// Loaded through an nginx that does not pass WebSocket upgrades on, the
/// app works over Server-Sent Events.
#[tokio::test]
async fn with_websockets_blocked_the_web_app_works_over_sse() {
    let app = spawn_app_with(|s| {
        s.auth.dev_login = Some(true);
        s.realtime.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let proxy = Proxy::nginx_passing(app.port, false).await;
    let fixture = connected(
        &app,
        [
            ("ivy", "Ivy Novak", "recruiter"),
            ("jon", "Jon Park", "candidate"),
        ],
    )
    .await;
    let jon = &fixture["jon"];
    // Jon exists before Ivy opens the conversation with him (his first
    // request makes him known, as signing in would).
    let token = app
        .keys
        .mint(
            jon["id"].as_str().unwrap(),
            "Jon Park",
            "candidate",
            None,
            3600,
        )
        .unwrap();
    let jon_user = crate::helpers::TestUser {
        id: jon["id"].as_str().unwrap().to_owned(),
        token,
    };
    let (status, _) = app.get(&jon_user, "/chat/conversations").await;
    assert!(status.is_success());
    scenario(
        "sse",
        fixture,
        &app,
        format!("http://127.0.0.1:{}", proxy.port),
    )
    .await;
}
