//! Every refusal answers the right status with the JSON error shape, and stores nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app, spawn_app_with};

#[tokio::test]
async fn missing_malformed_forged_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let other_keys = parley::http::auth::JwtKeys::new(&parley::config::Secret::new(
        "some-other-secret-0123456789",
    ));
    let tokens = [
        None,
        Some("not-a-jwt".to_string()),
        Some(
            other_keys
                .mint(&alice.id, "Alice", "recruiter", None, 3600)
                .unwrap(),
        ),
        Some(
            app.keys
                .mint(&alice.id, "Alice", "recruiter", None, -3600)
                .unwrap(),
        ),
        Some(
            app.keys
                .mint(&alice.id, "Alice", "wizard", None, 3600)
                .unwrap(),
        ),
    ];
    let paths = [
        ("GET", "/chat/conversations".to_string()),
        ("GET", format!("/chat/conversations/{id}")),
        ("POST", format!("/chat/conversations/{id}/messages")),
        ("GET", format!("/chat/conversations/{id}/messages")),
        ("POST", format!("/chat/conversations/{id}/read")),
    ];
    for token in &tokens {
        for (method, path) in &paths {
            let mut request = match *method {
                "GET" => app.http.get(app.url(path)),
                _ => app
                    .http
                    .post(app.url(path))
                    .json(&json!({"body": "x", "clientMessageId": "c", "seq": 1})),
            };
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path}"
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(error_code(&body), "unauthorized");
        }
    }
    let expired = app
        .keys
        .mint(&alice.id, "Alice", "recruiter", None, -3600)
        .unwrap();
    let response = app
        .http
        .get(app.url("/chat/conversations"))
        .bearer_auth(expired)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert_eq!(app.stored_messages(&id).await, 0);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_store_nothing() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 16 * 1024).await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let (status, body) = app
        .send_raw(&alice, &id, &"x".repeat(20 * 1024), "big-1")
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert_eq!(app.stored_messages(&id).await, 0);
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_bad_fields_are_refused() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let url = app.url(&format!("/chat/conversations/{id}/messages"));

    let raw = |body: &'static str, content_type: &'static str| {
        app.http
            .post(&url)
            .bearer_auth(&alice.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases = [
        (
            raw(r#"{"body": "hi", "clientMessageId": "#, "application/json")
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            raw(r#"{"body": "hi", "clientMessageId": "c1"}"#, "text/plain")
                .await
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            raw(r#"{"body": "hi"}"#, "application/json").await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            raw(
                r#"{"body": 7, "clientMessageId": "c1"}"#,
                "application/json",
            )
            .await
            .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            raw(
                r#"{"body": "hi", "clientMessageId": "c1", "sender": "x"}"#,
                "application/json",
            )
            .await
            .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ];
    for (response, status, code) in cases {
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), code);
    }

    for (body, code) in [
        ("   ", "empty_body"),
        ("\u{200B}\u{FEFF}", "empty_body"),
        ("invoice\u{202E}gpj.exe", "bidi_control"),
        ("null byte \u{0}", "control_characters"),
        ("escape \u{1b}[2J", "control_characters"),
    ] {
        let (status, answer) = app
            .send_raw(&alice, &id, body, &crate::helpers::unique("c"))
            .await;
        assert_eq!(
            (status, error_code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body:?}"
        );
    }
    let (status, answer) = app
        .send_raw(&alice, &id, &"é".repeat(5001), "too-long")
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "body_too_long")
    );
    let (status, answer) = app.send_raw(&alice, &id, "hi", "").await;
    assert_eq!(
        (status, error_code(&answer)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_message_id"
        )
    );
    assert_eq!(app.stored_messages(&id).await, 0);

    let (status, answer) = app
        .post(
            &alice,
            &format!("/chat/conversations/{id}/read"),
            json!({"seq": -1}),
        )
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_seq")
    );
    let (status, answer) = app
        .get(
            &alice,
            &format!("/chat/conversations/{id}/messages?after=1&before=-5"),
        )
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_query")
    );
    let (status, answer) = app
        .get(
            &alice,
            &format!("/chat/conversations/{id}/messages?limit=lots"),
        )
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_query")
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_json_shape() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let (status, body) = app.get(&alice, "/chat/nothing-here").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let response = app
        .http
        .delete(app.url("/chat/conversations"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "method_not_allowed");
}
