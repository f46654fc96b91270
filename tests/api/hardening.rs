//! Regression tests for what an outside attack found (issue 17): each one
//! failed before its fix.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, error_code, spawn_app_with};

/// A retry of a stored message gets the original whatever happened since
/// (a block, a rate limit), costs none of the quota, and raises no signal.
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
    // Retries cost nothing: the second message of the quota is still there.
    for _ in 0..5 {
        let (status, again) = app.send_raw(&alice, &id, "first", "retry-1").await;
        assert_eq!((status, &again["id"]), (StatusCode::OK, &original["id"]));
    }
    let (status, _) = app.send_raw(&alice, &id, "second", "retry-2").await;
    assert_eq!(status, StatusCode::CREATED, "retries used no quota");
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
        let response = app
            .http
            .get(app.url("/chat/conversations"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
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
