//! Reports, moderation, sanctions, rate limits, automated signals and the
//! audit trail, through the public API.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, error_code, spawn_app, spawn_app_with};

async fn report(app: &TestApp, reporter: &TestUser, body: Value) -> Value {
    let (status, receipt) = app.post(reporter, "/chat/reports", body).await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    receipt
}

/// Waits for an automated report about `user` raised by `signal` (signals are filed in the background).
async fn await_signal(app: &TestApp, admin: &TestUser, user: &TestUser, signal: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, queue) = app
            .get(admin, "/admin/chat/reports?status=open&limit=200")
            .await;
        assert_eq!(status, StatusCode::OK);
        if let Some(found) = queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["reportedUserId"] == user.id.as_str() && r["signal"] == signal)
        {
            assert_eq!(found["source"], "automated");
            return found.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {signal} report for {}",
            user.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_report_freezes_evidence_that_a_later_redaction_does_not_change() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let spammer = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&spammer, &bob).await;
    app.send(&spammer, &id, "hello").await;
    let bad = app.send(&spammer, &id, "send me your bank details").await;
    app.send(&bob, &id, "no way").await;
    let mut bob_ws = app.ws(&bob).await;

    let receipt = report(
        &app,
        &bob,
        json!({"reportedUserId": spammer.id, "conversationId": id, "messageId": bad["id"], "category": "scam",
               "description": "asks for bank details", "block": true}),
    )
    .await;
    assert_eq!(receipt["blocked"], true);
    let (status, _) = app.send_raw(&spammer, &id, "hello?", "after-report").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "reporting with block: true blocked them"
    );

    let report_id = receipt["id"].as_str().unwrap();
    let (status, before) = app
        .get(&admin, &format!("/admin/chat/reports/{report_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let evidence = before["evidence"].clone();
    let bodies: Vec<&str> = evidence["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["hello", "send me your bank details", "no way"]);
    assert_eq!(evidence["participants"].as_array().unwrap().len(), 2);
    assert_eq!(evidence["conversation"]["id"], id.as_str());

    // A moderator redacts the message: participants see a placeholder, at once.
    let (status, redacted) = app
        .post(
            &admin,
            &format!(
                "/admin/chat/messages/{}/redact",
                bad["id"].as_str().unwrap()
            ),
            json!({"reason": "scam"}),
        )
        .await;
    assert_eq!(
        (status, redacted["redacted"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let updated = bob_ws.next_of_type("message.updated").await;
    assert_eq!(
        (
            updated["data"]["id"].as_str(),
            updated["data"]["redacted"].as_bool()
        ),
        (bad["id"].as_str(), Some(true))
    );
    assert_ne!(updated["data"]["body"], "send me your bank details");
    let (_, history) = app
        .get(&bob, &format!("/chat/conversations/{id}/messages"))
        .await;
    assert_ne!(history["items"][1]["body"], "send me your bank details");
    // ...while moderators still read the original, and the evidence is untouched.
    let (_, original) = app
        .get(&admin, &format!("/admin/chat/conversations/{id}/messages"))
        .await;
    assert_eq!(original["items"][1]["body"], "send me your bank details");
    let (_, after) = app
        .get(&admin, &format!("/admin/chat/reports/{report_id}"))
        .await;
    assert_eq!(after["evidence"], evidence, "the evidence is frozen");
}

#[tokio::test]
async fn every_admin_endpoint_refuses_non_admins() {
    let app = spawn_app().await;
    let user = app.user("recruiter").await;
    let some_id = uuid::Uuid::now_v7();
    let gets = [
        "/admin/chat/reports".to_string(),
        format!("/admin/chat/reports/{some_id}"),
        format!("/admin/chat/conversations/{some_id}/messages"),
        "/admin/chat/audit".to_string(),
    ];
    for path in gets {
        let (status, body) = app.get(&user, &path).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{path}"
        );
    }
    let posts = [
        (
            format!("/admin/chat/reports/{some_id}/action"),
            json!({"action": "ban"}),
        ),
        (
            format!("/admin/chat/messages/{some_id}/redact"),
            json!({"reason": "x"}),
        ),
    ];
    for (path, body) in posts {
        let (status, answer) = app.post(&user, &path, body).await;
        assert_eq!(
            (status, error_code(&answer)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_suspension_stops_sending_until_it_expires_and_warnings_reach_the_user() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let offender = app.user("recruiter").await;
    let victim = app.user("candidate").await;
    let id = app.conversation(&offender, &victim).await;
    app.send(&offender, &id, "rude words").await;
    let mut offender_ws = app.ws(&offender).await;

    let first = report(
        &app,
        &victim,
        json!({"reportedUserId": offender.id, "category": "harassment"}),
    )
    .await;
    let (status, _) = app
        .post(
            &admin,
            &format!(
                "/admin/chat/reports/{}/action",
                first["id"].as_str().unwrap()
            ),
            json!({"action": "warn", "note": "Please keep it professional."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let notice = offender_ws.next_of_type("system.notice").await;
    assert_eq!(
        (
            notice["data"]["code"].as_str(),
            notice["data"]["message"].as_str()
        ),
        (Some("warning"), Some("Please keep it professional."))
    );

    let second = report(
        &app,
        &victim,
        json!({"reportedUserId": offender.id, "category": "harassment"}),
    )
    .await;
    let action = format!(
        "/admin/chat/reports/{}/action",
        second["id"].as_str().unwrap()
    );
    let (status, body) = app
        .post(&admin, &action, json!({"action": "suspend"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_duration")
    );
    let (status, _) = app
        .post(
            &admin,
            &action,
            json!({"action": "suspend", "durationHours": 2, "note": "cool off"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app
        .send_raw(&offender, &id, "let me explain", "susp-1")
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "messaging_suspended")
    );
    let stranger = app.user("candidate").await;
    let (status, body) = app.open(&offender, &stranger, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "messaging_suspended")
    );
    let (status, _) = app
        .get(&offender, &format!("/chat/conversations/{id}/messages"))
        .await;
    assert_eq!(status, StatusCode::OK, "reading stays possible");

    app.clock.advance(chrono::Duration::hours(3));
    app.send(&offender, &id, "sorry about earlier").await;

    let (_, queue) = app.get(&admin, "/admin/chat/reports?status=actioned").await;
    let actioned: Vec<&str> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(actioned.contains(&second["id"].as_str().unwrap()));

    let third = report(
        &app,
        &victim,
        json!({"reportedUserId": offender.id, "category": "harassment"}),
    )
    .await;
    let (status, _) = app
        .post(
            &admin,
            &format!(
                "/admin/chat/reports/{}/action",
                third["id"].as_str().unwrap()
            ),
            json!({"action": "ban"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.clock.advance(chrono::Duration::days(3650));
    let (status, body) = app.send_raw(&offender, &id, "still here", "ban-1").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "messaging_suspended")
    );
}

#[tokio::test]
async fn limits_answer_429_with_retry_after_and_repeat_offenders_are_queued() {
    let app = spawn_app_with(|s| {
        s.limits.enabled = true;
        s.limits.messages_per_hour = 3;
        s.limits.conversations_per_hour = 3;
    })
    .await;
    let admin = app.user("admin").await;
    let chatty = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&chatty, &bob).await;
    for n in 0..3 {
        app.send(&chatty, &id, &format!("m{n}")).await;
    }
    let response = app
        .http
        .post(app.url(&format!("/chat/conversations/{id}/messages")))
        .bearer_auth(&chatty.token)
        .json(&json!({"body": "one too many", "clientMessageId": "over"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1200).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "rate_limited");
    assert_eq!(app.stored_messages(&id).await, 3);

    // Limits are per user: Bob is unaffected.
    app.send(&bob, &id, "my turn").await;

    // New conversations are limited (the one above counted); finding an existing one is not.
    let (others, mut statuses) = (
        vec![
            app.user("candidate").await,
            app.user("candidate").await,
            app.user("candidate").await,
        ],
        Vec::new(),
    );
    for other in &others {
        statuses.push(app.open(&chatty, other, None).await.0);
    }
    assert_eq!(
        statuses,
        vec![
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(app.open(&chatty, &others[0], None).await.0, StatusCode::OK);

    // Hitting the limits again and again is an abuse signal.
    for n in 0..4 {
        let (status, _) = app
            .send_raw(&chatty, &id, "again", &format!("again-{n}"))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    let queued = await_signal(&app, &admin, &chatty, "rate_limit_violations").await;
    assert_eq!(queued["category"], "automated");
}

#[tokio::test]
async fn link_heavy_requests_unwelcome_requests_and_report_bursts_raise_signals() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;

    let linker = app.user("recruiter").await;
    let target = app.user("candidate").await;
    let id = app.stranger_conversation(&linker, &target).await;
    app.send(
        &linker,
        &id,
        "apply at a.io/1 b.io/2 and https://c.example.com/3",
    )
    .await;
    await_signal(&app, &admin, &linker, "link_heavy_request").await;

    let pest = app.user("company").await;
    for _ in 0..3 {
        let victim = app.user("candidate").await;
        let conversation = app.stranger_conversation(&pest, &victim).await;
        app.send(&pest, &conversation, "work for us").await;
        let (status, _) = app
            .post(
                &victim,
                &format!("/chat/conversations/{conversation}/decline"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    await_signal(&app, &admin, &pest, "unwelcome_requests").await;

    let troll = app.user("candidate").await;
    for _ in 0..3 {
        let reporter = app.user("recruiter").await;
        let conversation = app.conversation(&troll, &reporter).await;
        app.send(&troll, &conversation, "you again").await;
        report(
            &app,
            &reporter,
            json!({"reportedUserId": troll.id, "category": "harassment"}),
        )
        .await;
    }
    let burst = await_signal(&app, &admin, &troll, "report_volume").await;
    assert_eq!(burst["reporterId"], Value::Null);
}

#[tokio::test]
async fn audited_actions_are_listed_and_cannot_be_deleted_through_the_api() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.stranger_conversation(&alice, &bob).await;
    app.send(&alice, &id, "hi").await;
    app.post(&bob, &format!("/chat/conversations/{id}/accept"), json!({}))
        .await;
    app.post(
        &bob,
        &format!("/chat/conversations/{id}/archive"),
        json!({}),
    )
    .await;
    app.post(&bob, "/chat/blocks", json!({"userId": alice.id}))
        .await;
    let receipt = report(
        &app,
        &bob,
        json!({"reportedUserId": alice.id, "conversationId": id, "category": "spam"}),
    )
    .await;
    let report_path = format!("/admin/chat/reports/{}", receipt["id"].as_str().unwrap());
    app.get(&admin, &report_path).await;
    app.get(&admin, &format!("/admin/chat/conversations/{id}/messages"))
        .await;
    app.post(
        &admin,
        &format!("{report_path}/action"),
        json!({"action": "dismiss", "note": "not spam"}),
    )
    .await;

    let (status, bob_log) = app
        .get(&admin, &format!("/admin/chat/audit?actor={}", bob.id))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut actions: Vec<&str> = bob_log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        vec![
            "block.created",
            "conversation.archived",
            "report.created",
            "request.accepted"
        ]
    );
    let (_, admin_log) = app
        .get(&admin, &format!("/admin/chat/audit?actor={}", admin.id))
        .await;
    let mut admin_actions: Vec<&str> = admin_log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    admin_actions.sort();
    assert_eq!(
        admin_actions,
        vec![
            "admin.conversation_read",
            "admin.report_read",
            "moderation.dismiss"
        ]
    );
    let (_, created) = app
        .get(
            &admin,
            &format!(
                "/admin/chat/audit?action=conversation.created&target={}",
                bob.id
            ),
        )
        .await;
    assert_eq!(created["items"][0]["actorId"], alice.id.as_str());

    for method in [
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ] {
        let response = app
            .http
            .request(method, app.url("/admin/chat/audit"))
            .bearer_auth(&admin.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
