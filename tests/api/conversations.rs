//! Find-or-create, de-duplication, visibility and the inbox.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{error_code, spawn_app, unique};

#[tokio::test]
async fn conversations_are_deduplicated_in_both_directions_and_per_context() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;

    let (status, first) = app.open(&alice, &bob, None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(first["otherParticipant"]["id"], bob.id.as_str());
    let (status, again) = app.open(&alice, &bob, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], first["id"]);
    let (status, reverse) = app.open(&bob, &alice, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reverse["id"], first["id"]);
    assert_eq!(reverse["otherParticipant"]["id"], alice.id.as_str());

    let (app1, app2) = (unique("app"), unique("app"));
    for id in [&app1, &app2] {
        assert_eq!(
            app.register_context("application", id, &[&alice, &bob], false)
                .await,
            StatusCode::CREATED
        );
    }
    // The registered title is the banner, whatever the request says.
    let job =
        json!({"type": "application", "id": app1, "title": "Ignored", "subtitle": "Café Nord"});
    let (status, in_context) = app.open(&alice, &bob, Some(job)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(in_context["id"], first["id"]);
    assert_eq!(in_context["context"]["title"], format!("Job {app1}"));
    let (status, same_context) = app
        .open(
            &bob,
            &alice,
            Some(json!({"type": "application", "id": app1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same_context["id"], in_context["id"]);
    let (status, other_context) = app
        .open(
            &alice,
            &bob,
            Some(json!({"type": "application", "id": app2})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(other_context["id"], in_context["id"]);
}

#[tokio::test]
async fn concurrent_creation_yields_one_conversation() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let attempts = (0..12).map(|i| {
        let (from, to) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        app.open(from, to, None)
    });
    let results = futures_util::future::join_all(attempts).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{results:?}");
    assert!(
        results.iter().all(|(_, c)| c["id"] == results[0].1["id"]),
        "{results:?}"
    );
}

#[tokio::test]
async fn invalid_creation_requests_are_refused() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;

    let (status, body) = app.open(&alice, &alice, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "self_conversation")
    );
    // Neither a participant nor a thread's context.
    let (status, body) = app.post(&alice, "/chat/conversations", json!({})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "participant_required")
    );
    let (status, body) = app
        .post(
            &alice,
            "/chat/conversations",
            json!({"participantID": bob.id}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let (status, body) = app
        .open(
            &alice,
            &crate::helpers::TestUser {
                id: "ghost-never-seen".into(),
                token: String::new(),
            },
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, body) = app
        .open(&alice, &bob, Some(json!({"type": "application", "id": ""})))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_context")
    );

    let conversations = app
        .sql_i64(
            "SELECT count(*) FROM conversations WHERE user_low IN ($1, $2) OR user_high IN ($1, $2)",
            &[&alice.id, &bob.id],
        )
        .await;
    assert_eq!(conversations, 0, "a refused request stored nothing");
}

#[tokio::test]
async fn only_participants_see_a_conversation() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let mallory = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;

    let (status, conv) = app.get(&bob, &format!("/chat/conversations/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(conv["otherParticipant"]["id"], alice.id.as_str());
    for path in [
        format!("/chat/conversations/{id}"),
        format!("/chat/conversations/{}", uuid::Uuid::now_v7()),
        "/chat/conversations/not-a-uuid".to_string(),
    ] {
        let (status, body) = app.get(&mallory, &path).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn inbox_lists_newest_activity_first_with_cursor_pages_and_unread_filter() {
    let app = spawn_app().await;
    let me = app.user("candidate").await;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(app.user("recruiter").await);
    }
    let mut ids = Vec::new();
    for other in &others {
        let id = app.conversation(other, &me).await;
        app.send(other, &id, "hello").await;
        ids.push(id);
    }
    // The first conversation becomes the most recent; I answer it, so it has nothing unread.
    app.send(&me, &ids[0], "hi back").await;

    let (status, page) = app.get(&me, "/chat/conversations?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![ids[0].as_str(), ids[2].as_str()]);
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["items"][0]["lastMessage"]["body"], "hi back");
    assert_eq!(page["items"][0]["unreadCount"], 0);
    assert_eq!(page["items"][1]["unreadCount"], 1);

    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&me, &format!("/chat/conversations?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["id"], ids[1].as_str());
    assert_eq!(rest["hasMore"], false);
    assert!(rest["nextCursor"].is_null());

    let (_, unread) = app.get(&me, "/chat/conversations?filter=unread").await;
    let unread_ids: Vec<&str> = unread["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(unread_ids, vec![ids[2].as_str(), ids[1].as_str()]);

    for bad in ["filter=spam", "limit=0", "cursor=garbage"] {
        let (status, body) = app.get(&me, &format!("/chat/conversations?{bad}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        error_code(&body);
    }
}

#[tokio::test]
async fn an_empty_conversation_is_listed_only_for_its_creator() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let (_, alice_inbox) = app.get(&alice, "/chat/conversations").await;
    assert_eq!(alice_inbox["items"][0]["id"], id.as_str());
    let (_, bob_inbox) = app.get(&bob, "/chat/conversations").await;
    assert_eq!(bob_inbox["items"].as_array().unwrap().len(), 0);
    app.send(&alice, &id, "now it has a message").await;
    let (_, bob_inbox) = app.get(&bob, "/chat/conversations").await;
    assert_eq!(bob_inbox["items"][0]["id"], id.as_str());
}
