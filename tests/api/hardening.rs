//! Regression tests for what an outside attack found (issue 17): each one
//! failed before its fix.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, error_code, spawn_app_with};

/// A retry of a stored message gets the original whatever happened since
/// (the rate limit reached, a block), and refused retries raise no signal.
#[tokio::test]
async fn the_retry_of_a_stored_message_always_gets_the_original_for_free() {
    let app = spawn_app_with(|s| {
        s.limits.enabled = true;
        s.limits.messages_per_hour = 2;
    })
    .await;
    let (alice, bob) = (app.user("recruiter").await, app.user("candidate").await);
    let id = app.conversation(&alice, &bob).await;
    let (status, original) = app.send_raw(&alice, &id, "first", "retry-1").await;
    assert_eq!(status, StatusCode::CREATED);
    // Within the quota, retries cost nothing: the second unit is still there.
    for _ in 0..3 {
        let (status, again) = app.send_raw(&alice, &id, "first", "retry-1").await;
        assert_eq!((status, &again["id"]), (StatusCode::OK, &original["id"]));
    }
    let (status, _) = app.send_raw(&alice, &id, "second", "retry-2").await;
    assert_eq!(status, StatusCode::CREATED);
    // Over the limit, retries of a stored message still get it.
    for _ in 0..6 {
        let (status, again) = app.send_raw(&alice, &id, "first", "retry-1").await;
        assert_eq!((status, &again["id"]), (StatusCode::OK, &original["id"]));
    }
    let (status, body) = app.send_raw(&alice, &id, "third", "retry-3").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    // Over the limit and blocked since, the retry still gets the original.
    let (status, _) = app
        .post(&bob, "/chat/blocks", json!({ "userId": alice.id }))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for _ in 0..6 {
        let (status, again) = app.send_raw(&alice, &id, "first", "retry-1").await;
        assert_eq!((status, &again["id"]), (StatusCode::OK, &original["id"]));
    }
    assert_eq!(app.stored_messages(&id).await, 2);
    let signals = app
        .sql_i64(
            "SELECT count(*) FROM chat_reports WHERE reported_user_id = $1 AND signal = 'rate_limit_violations'",
            &[&alice.id],
        )
        .await;
    assert_eq!(signals, 0, "retries are no violations");
}

/// Reports need a relation (the reported user wrote to the reporter), are
/// rate-limited per reporter, and only several different reporters raise
/// the automated `report_volume` case.
#[tokio::test]
async fn reports_need_a_relation_are_limited_and_one_reporter_raises_no_case() {
    let app = spawn_app_with(|s| {
        s.limits.enabled = true;
        s.limits.reports_per_hour = 5;
    })
    .await;
    let (mallory, victim, stranger) = (
        app.user("recruiter").await,
        app.user("candidate").await,
        app.user("candidate").await,
    );
    async fn report(
        app: &TestApp,
        reporter: &TestUser,
        reported: &TestUser,
    ) -> (StatusCode, Value) {
        let body = json!({ "reportedUserId": reported.id, "category": "spam" });
        app.post(reporter, "/chat/reports", body).await
    }
    // From afar: the same answer as for someone who does not exist.
    let (status, body) = report(&app, &mallory, &victim).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let ghost = TestUser {
        id: crate::helpers::unique("ghost"),
        token: String::new(),
    };
    let (status, unknown) = report(&app, &mallory, &ghost).await;
    assert_eq!(
        (status, &unknown),
        (StatusCode::NOT_FOUND, &body),
        "indistinguishable"
    );
    // Opening an empty conversation is no relation either.
    app.stranger_conversation(&mallory, &victim).await;
    assert_eq!(
        report(&app, &mallory, &victim).await.0,
        StatusCode::NOT_FOUND
    );

    // Someone who wrote to you can be reported; again and again by one
    // reporter until the limit, and that raises no case.
    let id = app.conversation(&stranger, &mallory).await;
    app.send(&stranger, &id, "hello").await;
    let (status, _) = report(&app, &mallory, &stranger).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = report(&app, &mallory, &stranger).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = report(&app, &mallory, &stranger).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "the failed probes above counted too"
    );
    let cases = app
        .sql_i64(
            "SELECT count(*) FROM chat_reports WHERE reported_user_id = $1 AND signal = 'report_volume'",
            &[&stranger.id],
        )
        .await;
    assert_eq!(cases, 0, "one reporter is not a crowd");
}

/// Probing which user ids exist through blocks and new conversations runs
/// into a rate limit.
#[tokio::test]
async fn probing_for_user_ids_is_rate_limited() {
    let app = spawn_app_with(|s| {
        s.limits.enabled = true;
        s.limits.blocks_per_hour = 3;
        s.limits.conversations_per_hour = 3;
    })
    .await;
    let prober = app.user("recruiter").await;
    let mut answers = Vec::new();
    for n in 0..5 {
        let guess = format!("guess-{n}-{}", crate::helpers::unique("u"));
        let (status, _) = app
            .post(&prober, "/chat/blocks", json!({ "userId": guess }))
            .await;
        let (opened, _) = app
            .post(
                &prober,
                "/chat/conversations",
                json!({ "participantId": guess }),
            )
            .await;
        answers.push((status.as_u16(), opened.as_u16()));
    }
    assert_eq!(answers[..3], [(404, 404); 3]);
    assert_eq!(answers[3..], [(429, 429); 2]);
}

/// Tokens that are not valid yet, or claim to live too long, are refused.
#[tokio::test]
async fn tokens_not_yet_valid_or_living_too_long_are_refused() {
    let app = spawn_app_with(|s| s.auth.jwt_max_ttl_secs = 3600).await;
    let now = chrono::Utc::now().timestamp();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(crate::helpers::JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let base = |exp: i64| json!({ "sub": "t-user", "name": "T", "role": "candidate", "exp": exp });
    let mut early = base(now + 600);
    early["nbf"] = json!(now + 300);
    let century = base(now + 100 * 365 * 86_400);
    let two_hours = base(now + 7200);
    let fine = base(now + 600);
    for (token, expected) in [
        (sign(early), StatusCode::UNAUTHORIZED),
        (sign(century), StatusCode::UNAUTHORIZED),
        (sign(two_hours), StatusCode::UNAUTHORIZED),
        (sign(fine), StatusCode::OK),
    ] {
        let holder = TestUser {
            id: "t-user".into(),
            token,
        };
        assert_eq!(app.get(&holder, "/chat/conversations").await.0, expected);
    }
}

/// Opening a conversation (or having a request declined) does not make
/// anyone's presence visible: only people actually in contact see it.
#[tokio::test]
async fn presence_is_not_visible_through_an_empty_or_declined_conversation() {
    let app = crate::helpers::spawn_app().await;
    let (stalker, victim, colleague) = (
        app.user("recruiter").await,
        app.user("candidate").await,
        app.user("recruiter").await,
    );
    let _victim_online = app.ws(&victim).await;
    async fn looks(app: &TestApp, viewer: &TestUser, user: &TestUser) -> Value {
        let path = format!("/users/{}/presence", user.id);
        app.get(viewer, &path).await.1["status"].clone()
    }
    // An empty conversation, opened without a word.
    let id = app.stranger_conversation(&stalker, &victim).await;
    assert_eq!(looks(&app, &stalker, &victim).await, "offline");
    let mut stalker_ws = app.ws(&stalker).await;
    stalker_ws
        .send_json(json!({"type": "presence.subscribe", "data": {"userIds": [victim.id]}}))
        .await;
    assert_eq!(
        stalker_ws.next_of_type("presence.updated").await["data"]["status"],
        "offline"
    );
    // A request waiting for an answer, then declined.
    app.send(&stalker, &id, "hi").await;
    assert_eq!(looks(&app, &stalker, &victim).await, "offline");
    let (status, _) = app
        .post(
            &victim,
            &format!("/chat/conversations/{id}/decline"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(looks(&app, &stalker, &victim).await, "offline");
    // People the platform connected do see each other.
    app.conversation(&colleague, &victim).await;
    assert_eq!(looks(&app, &colleague, &victim).await, "online");
}

/// Typing frames for someone else's (or a made-up) conversation start no
/// actor and load nothing but a participation check.
#[tokio::test]
async fn an_outsiders_typing_frames_start_no_actor() {
    let app = crate::helpers::spawn_app().await;
    let (alice, bob, mallory) = (
        app.user("recruiter").await,
        app.user("candidate").await,
        app.user("candidate").await,
    );
    let id = app.conversation(&alice, &bob).await;
    let conversation = parley::domain::ConversationId(id.parse().unwrap());
    assert!(!app.chat.is_live(conversation), "nothing sent yet");
    let mut ws = app.ws(&mallory).await;
    for kind in ["typing.started", "typing.stopped"] {
        ws.send_json(json!({ "type": kind, "data": { "conversationId": id } }))
            .await;
        assert_eq!(ws.next_of_type("error").await["data"]["code"], "not_found");
    }
    assert!(!app.chat.is_live(conversation), "no actor for an outsider");
    let (status, _) = app
        .post(
            &mallory,
            &format!("/chat/conversations/{id}/typing"),
            json!({ "state": "started" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!app.chat.is_live(conversation));
    // A participant's signal does reach the conversation.
    let mut bob_ws = app.ws(&bob).await;
    let mut alice_ws = app.ws(&alice).await;
    alice_ws
        .send_json(json!({ "type": "typing.started", "data": { "conversationId": id } }))
        .await;
    assert_eq!(
        bob_ws.next_of_type("typing.started").await["data"]["userId"],
        alice.id.as_str()
    );
}

/// Thousands of silent sockets neither exhaust the server nor keep anyone
/// out: the oldest silent ones are pushed out, the rest time out, a global
/// cap holds, and `/healthz` and signed-in users are answered throughout.
#[tokio::test]
async fn silent_sockets_cannot_starve_the_server() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_with(|s| {
        s.server.max_connections = Some(400);
        s.server.max_silent_connections = 50;
        s.server.header_read_timeout = std::time::Duration::from_secs(2);
    })
    .await;
    let user = app.user("candidate").await;
    let mut silent = Vec::new();
    for _ in 0..600 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", app.port))
                .await
                .unwrap(),
        );
    }
    // Fresh clients still get answers while the flood sits there.
    let fresh = reqwest::Client::new();
    for _ in 0..3 {
        let health = fresh.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        let (status, _) = app.get(&user, "/chat/conversations").await;
        assert_eq!(status, StatusCode::OK);
    }
    // The oldest silent sockets were closed (pushed out, or over the cap).
    let mut first = silent.remove(0);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), first.read(&mut buf))
        .await
        .expect("closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        app.metrics_text()
            .await
            .contains("parley_connections_evicted_total"),
        "pushed out, not refused"
    );
    // Those left silent time out.
    let mut last = silent.pop().unwrap();
    let read = tokio::time::timeout(std::time::Duration::from_secs(6), last.read(&mut buf))
        .await
        .expect("timed out by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// Refusals at the edges carry the JSON error (or the WebSocket close code).
#[tokio::test]
async fn refusals_at_the_edges_carry_the_error_shape() {
    let app = crate::helpers::spawn_app().await;
    let user = app.user("candidate").await;
    let (status, body) = raw_get(
        app.port,
        &format!("/healthz?q={}", "a".repeat(100 * 1024)),
        "x-ok: 1",
    )
    .await;
    assert_eq!(status, 414);
    assert_eq!(error_code(&body), "uri_too_long");
    let padding = format!("x-padding: {}", "b".repeat(200 * 1024));
    let (status, body) = raw_get(app.port, "/healthz", &padding).await;
    assert_eq!(status, 431);
    assert_eq!(error_code(&body), "headers_too_large");
    // `/ws` asked without a WebSocket handshake.
    let (status, body) = raw_get(app.port, "/ws", "x-ok: 1").await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "websocket_handshake_required");

    // A WebSocket message over the limit, whole or in fragments: 1009.
    let mut ws = app.ws(&user).await;
    ws.send_json(json!({ "type": "presence.ping", "data": { "pad": "x".repeat(70 * 1024) } }))
        .await;
    assert_eq!(
        ws.close_within(std::time::Duration::from_secs(5)).await,
        Some(1009)
    );
}

/// Beyond the global cap a connection is closed at once (and counted);
/// places free up as silent ones time out.
#[tokio::test]
async fn the_connection_cap_holds() {
    let app = spawn_app_with(|s| {
        s.server.max_connections = Some(40);
        s.server.max_silent_connections = 1000;
        s.server.header_read_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", app.port))
                .await
                .unwrap(),
        );
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        if let Ok(response) = app.http.get(app.url("/metrics")).send().await {
            break response.text().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "places never freed up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        metrics.contains("parley_connections_refused_total"),
        "over the cap"
    );
    assert!(
        metrics.contains("parley_connections_timed_out_total"),
        "silent ones went"
    );
}

/// A raw HTTP/1.1 GET with one more header line (for requests no client
/// library will build or wait for): the status and the JSON body.
async fn raw_get(port: u16, target: &str, header: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nhost: localhost\r\n{header}\r\n\r\n");
    // The server may answer (and close) before it has read everything.
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Every answer, errors included, carries the security headers.
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = crate::helpers::spawn_app().await;
    let user = app.user("candidate").await;
    let answers = [
        app.http.get(app.url("/healthz")).send().await.unwrap(),
        app.http.get(app.url("/no/such/path")).send().await.unwrap(),
        app.http
            .get(app.url("/chat/conversations"))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap(),
        app.http
            .get(app.url("/chat/conversations"))
            .send()
            .await
            .unwrap(),
    ];
    for answer in answers {
        let h = answer.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
    }
}

/// A live session ends with its token (4002 on a WebSocket, a
/// `token_expired` notice on SSE) unless the client renews it in place with
/// `auth.refresh` — with a token of the same user only.
#[tokio::test]
async fn live_sessions_end_with_their_token_unless_renewed() {
    let app = crate::helpers::spawn_app().await;
    let known = app.user("candidate").await;
    let short = TestUser {
        id: known.id.clone(),
        token: app
            .keys
            .mint(&known.id, "Short", "candidate", None, 1)
            .unwrap(),
    };
    let mut expiring = app.ws(&short).await;
    let mut renewed = app.ws(&short).await;
    let mut sse = app.sse(&short, None).await;
    let other = app.user("candidate").await;
    renewed
        .send_json(json!({ "type": "auth.refresh", "data": { "token": other.token } }))
        .await;
    assert_eq!(
        renewed.next_of_type("error").await["data"]["code"],
        "forbidden"
    );
    renewed
        .send_json(json!({ "type": "auth.refresh", "data": { "token": known.token } }))
        .await;
    assert_eq!(
        renewed.next_of_type("system.notice").await["data"]["code"],
        "token_refreshed"
    );
    // exp is 1 s away, plus the 5 s leeway.
    assert_eq!(
        expiring
            .close_within(std::time::Duration::from_secs(10))
            .await,
        Some(4002)
    );
    let (_, notice) = sse.next_of_type("system.notice").await;
    assert_eq!(notice["data"]["code"], "token_expired");
    assert_eq!(
        renewed
            .close_within(std::time::Duration::from_millis(300))
            .await,
        None,
        "the renewed session goes on"
    );
}

/// An EC P-256 key made with openssl: the signing key, and its public JWK.
fn p256_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let run = |args: &[&str], input: Option<&[u8]>| {
        use std::io::Write;
        let mut child = std::process::Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl runs");
        if let Some(input) = input {
            child.stdin.take().unwrap().write_all(input).unwrap();
        } else {
            drop(child.stdin.take());
        }
        child.wait_with_output().unwrap().stdout
    };
    let sec1 = run(
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        None,
    );
    let pkcs8 = run(
        &["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"],
        Some(&sec1),
    );
    let public = run(&["ec", "-pubout", "-outform", "DER"], Some(&sec1));
    let point = &public[public.len() - 64..];
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": Base64UrlUnpadded::encode_string(&point[..32]),
        "y": Base64UrlUnpadded::encode_string(&point[32..]),
    });
    (jsonwebtoken::EncodingKey::from_ec_der(&pkcs8), jwk)
}

/// Tokens of a real identity provider: checked against its published keys
/// (ES256 here), its issuer and audience, the role read from where the
/// provider puts it; the HS256 secret no longer signs anything accepted; a
/// rotated key is fetched when first seen, and made-up key ids do not make
/// Parley hammer the provider.
#[tokio::test]
async fn tokens_of_an_identity_provider_are_checked_against_its_published_keys() {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    };
    let (key_a, jwk_a) = p256_key("a");
    let (key_b, jwk_b) = p256_key("b");
    let published = Arc::new(Mutex::new(json!({ "keys": [jwk_a] })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let jwks = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get({
            let (published, fetches) = (published.clone(), fetches.clone());
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                axum::Json(published.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, jwks).await });
    let app = spawn_app_with(|s| {
        s.auth.jwt_jwks_url = Some(jwks_url);
        s.auth.jwt_issuer = Some("https://idp.test/".into());
        s.auth.jwt_audience = Some("parley".into());
        s.auth.jwt_role_claim = "public_metadata.role".into();
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    let token = |key: &jsonwebtoken::EncodingKey, kid: &str, extra: Value| {
        let mut claims = json!({
            "sub": "idp-user", "name": "Ida", "iss": "https://idp.test/", "aud": "parley",
            "iat": now, "exp": now + 600, "public_metadata": { "role": "admin" },
        });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.into());
        TestUser {
            id: "idp-user".into(),
            token: jsonwebtoken::encode(&header, &claims, key).unwrap(),
        }
    };
    let status = |user: TestUser, path: &'static str| {
        let app = &app;
        async move { app.get(&user, path).await.0 }
    };
    // The provider's token signs in, with the role where the provider keeps it.
    assert_eq!(
        status(token(&key_a, "a", json!({})), "/admin/chat/reports").await,
        StatusCode::OK
    );
    let plain = token(&key_a, "a", json!({ "public_metadata": {} }));
    assert_eq!(
        status(plain, "/admin/chat/reports").await,
        StatusCode::FORBIDDEN,
        "no role: candidate"
    );
    for (why, refused) in [
        (
            "another issuer",
            token(&key_a, "a", json!({ "iss": "https://evil.test/" })),
        ),
        (
            "another audience",
            token(&key_a, "a", json!({ "aud": "someone-else" })),
        ),
        ("another key under a's id", token(&key_b, "a", json!({}))),
    ] {
        assert_eq!(
            status(refused, "/chat/conversations").await,
            StatusCode::UNAUTHORIZED,
            "{why}"
        );
    }
    // The development secret signs nothing accepted any more, nor does an
    // HMAC made with the public key's id.
    let hs = app
        .keys
        .mint("idp-user", "Ida", "admin", None, 600)
        .unwrap();
    let hs_user = TestUser {
        id: "idp-user".into(),
        token: hs,
    };
    assert_eq!(
        status(hs_user, "/chat/conversations").await,
        StatusCode::UNAUTHORIZED
    );
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("a".into());
    let forged = jsonwebtoken::encode(
        &header,
        &json!({ "sub": "idp-user", "iss": "https://idp.test/", "aud": "parley", "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(jwk_a["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    let forged_user = TestUser {
        id: "idp-user".into(),
        token: forged,
    };
    assert_eq!(
        status(forged_user, "/chat/conversations").await,
        StatusCode::UNAUTHORIZED
    );

    // Rotation: the provider now publishes b only.
    *published.lock().unwrap() = json!({ "keys": [jwk_b] });
    let before = fetches.load(Ordering::SeqCst);
    assert_eq!(
        status(token(&key_b, "b", json!({})), "/chat/conversations").await,
        StatusCode::OK
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        before + 1,
        "fetched once for the new key"
    );
    assert_eq!(
        status(token(&key_a, "a", json!({})), "/chat/conversations").await,
        StatusCode::UNAUTHORIZED,
        "the retired key is gone"
    );
    for n in 0..10 {
        let made_up = token(&key_b, &format!("made-up-{n}"), json!({}));
        assert_eq!(
            status(made_up, "/chat/conversations").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert!(
        fetches.load(Ordering::SeqCst) <= 5,
        "at most 5 fetches a minute, whatever key ids tokens make up"
    );
}

/// A self-signed certificate for localhost made with openssl, written to
/// `cert.pem` and `key.pem` in `dir`; returns its SHA-256 fingerprint.
fn certificate(dir: &std::path::Path) -> String {
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    fingerprint_of(&std::fs::read(dir.join("cert.pem")).unwrap())
}

fn fingerprint_of(pem: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(pem).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// TLS 1.3 terminated by Parley itself: HTTPS works with the certificate,
/// older TLS and plain HTTP do not, and a renewed certificate is served
/// after SIGHUP without a restart.
#[tokio::test]
async fn parley_terminates_tls_1_3_and_reloads_its_certificate_on_sighup() {
    let dir = std::env::temp_dir().join(crate::helpers::unique("tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let first = certificate(&dir);
    let (server, port) = crate::helpers::spawn_binary(&[
        (
            "PARLEY_TLS_CERT",
            dir.join("cert.pem").display().to_string(),
        ),
        ("PARLEY_TLS_KEY", dir.join("key.pem").display().to_string()),
    ])
    .await;
    let curl = |extra: &[&str]| {
        let output = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(dir.join("ca.pem"))
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(extra)
            .arg(format!("https://localhost:{port}/healthz"))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    std::fs::copy(dir.join("cert.pem"), dir.join("ca.pem")).unwrap();
    assert_eq!(curl(&[]), "200");
    assert_ne!(curl(&["--tls-max", "1.2"]), "200", "TLS 1.3 only");
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A renewed certificate, then SIGHUP: served from then on.
    let second = certificate(&dir);
    assert_ne!(first, second);
    let pid = server.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let served = || {
        let output = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "localhost",
            ])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .unwrap();
        fingerprint_of(&output.stdout)
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while served() != second {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate is never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    std::fs::copy(dir.join("cert.pem"), dir.join("ca.pem")).unwrap();
    assert_eq!(
        curl(&[]),
        "200",
        "the server lives on with the new certificate"
    );
}

/// A suspension ends the sessions opened before it, after the notice that
/// says why.
#[tokio::test]
async fn a_suspension_closes_the_users_live_sessions() {
    let app = crate::helpers::spawn_app().await;
    let (offender, victim, admin) = (
        app.user("recruiter").await,
        app.user("candidate").await,
        app.user("admin").await,
    );
    let id = app.conversation(&offender, &victim).await;
    app.send(&offender, &id, "pay me first").await;
    let (status, report) = app
        .post(
            &victim,
            "/chat/reports",
            json!({ "reportedUserId": offender.id, "category": "scam" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut session = app.ws(&offender).await;
    let (status, _) = app
        .post(
            &admin,
            &format!(
                "/admin/chat/reports/{}/action",
                report["id"].as_str().unwrap()
            ),
            json!({ "action": "suspend", "durationHours": 24 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (events, code) = session
        .drain_until_closed(std::time::Duration::from_secs(5))
        .await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "system.notice" && e["data"]["code"] == "messaging_suspended"),
        "{events:?}"
    );
    assert!(code.is_some(), "closed");
}
