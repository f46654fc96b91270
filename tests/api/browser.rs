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
async fn the_sdk_is_served_by_the_server_with_strict_headers() {
    let app = spawn_app().await;
    for (path, kind, marker) in [
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
        assert!(response.text().await.unwrap().contains(marker), "{path}");
    }
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
    let run = tokio::process::Command::new("node")
        .arg("web/sdk/integration.mjs")
        .env("PARLEY_URL", app.url(""))
        .env("ALICE_TOKEN", &alice.token)
        .env("BOB_TOKEN", &bob.token)
        .env("CONVERSATION", &conversation)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the SDK run ends within a minute")
        .expect("node runs (scripts/test.sh needs it)");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(app.stored_messages(&conversation).await, 4);
}
