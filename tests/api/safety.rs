//! Safety between strangers: blocks, message requests, mute and archive,
//! rate limits, reports, moderation and the audit log.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, TestUser, error_code, spawn_app};

async fn audit_count(app: &TestApp, action: &str, actor: &str) -> i64 {
    app.sql_i64(
        "SELECT count(*) FROM audit_log WHERE action = $1 AND actor_id = $2",
        &[&action, &actor],
    )
    .await
}

async fn share_receipts(app: &TestApp, user: &TestUser) {
    let (status, _) = app
        .patch(user, "/users/me/settings", json!({"readReceipts": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_block_stops_everything_in_both_directions_with_an_indistinguishable_error() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    app.send(&alice, &id, "hello").await;
    app.send(&bob, &id, "hi").await;
    share_receipts(&app, &alice).await;
    share_receipts(&app, &bob).await;
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_ws = app.ws(&bob).await;

    let (status, _) = app
        .post(&bob, "/chat/blocks", json!({"userId": alice.id}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .post(&bob, "/chat/blocks", json!({"userId": alice.id}))
        .await;
    assert_eq!(status, StatusCode::OK, "blocking twice is harmless");
    assert_eq!(
        bob_ws.next_of_type("block.created").await["data"]["userId"],
        alice.id.as_str()
    );

    // The blocked sender gets the neutral answer, and nothing is stored.
    let (status, body) = app
        .send_raw(&alice, &id, "are you there?", "blocked-1")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"error": {"code": "not_delivered", "message": "Message could not be delivered."}})
    );
    let (status, body) = app
        .send_raw(&bob, &id, "going the other way", "blocked-2")
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "not_delivered")
    );
    assert_eq!(app.stored_messages(&id).await, 2);

    // No typing, presence or read receipts cross the block, either way.
    alice_ws
        .send_json(json!({"type": "typing.started", "data": {"conversationId": id}}))
        .await;
    alice_ws
        .send_json(json!({"type": "presence.subscribe", "data": {"userIds": [bob.id]}}))
        .await;
    bob_ws
        .send_json(json!({"type": "presence.subscribe", "data": {"userIds": [alice.id]}}))
        .await;
    app.post(
        &bob,
        &format!("/chat/conversations/{id}/read"),
        json!({"seq": 2}),
    )
    .await;
    app.post(
        &alice,
        &format!("/chat/conversations/{id}/read"),
        json!({"seq": 2}),
    )
    .await;
    for socket in [&mut alice_ws, &mut bob_ws] {
        socket
            .assert_silent_of("typing.started", Duration::from_millis(100))
            .await;
        socket
            .assert_silent_of("presence.updated", Duration::from_millis(100))
            .await;
        socket
            .assert_silent_of("read.receipt", Duration::from_millis(100))
            .await;
    }
    alice_ws
        .assert_silent_of("block.created", Duration::from_millis(50))
        .await;
    for (viewer, other) in [(&alice, &bob), (&bob, &alice)] {
        let (status, _) = app
            .get(viewer, &format!("/users/{}/presence", other.id))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, conv) = app.get(viewer, &format!("/chat/conversations/{id}")).await;
        assert!(conv["otherLastReadSeq"].is_null());
    }

    let (_, list) = app.get(&bob, "/chat/blocks").await;
    assert_eq!(list["items"][0]["user"]["id"], alice.id.as_str());

    // Lifting the block restores messaging.
    let response = app
        .http
        .delete(app.url(&format!("/chat/blocks/{}", alice.id)))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        bob_ws.next_of_type("block.removed").await["data"]["userId"],
        alice.id.as_str()
    );
    app.send(&alice, &id, "thanks for unblocking").await;
    let (_, list) = app.get(&bob, "/chat/blocks").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);

    assert_eq!(audit_count(&app, "block.created", &bob.id).await, 1);
    assert_eq!(audit_count(&app, "block.removed", &bob.id).await, 1);
}

#[tokio::test]
async fn blocking_yourself_or_nobody_is_refused() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let (status, body) = app
        .post(&alice, "/chat/blocks", json!({"userId": alice.id}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "self_block")
    );
    let (status, body) = app
        .post(&alice, "/chat/blocks", json!({"userId": "nobody-at-all"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn audit_rows_cannot_be_altered_or_deleted_even_in_sql() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    app.conversation(&alice, &bob).await;
    assert_eq!(
        audit_count(&app, "conversation.created", &alice.id).await,
        1
    );
    let db = app.pool.get().await.unwrap();
    for statement in [
        "UPDATE audit_log SET action = 'nothing' WHERE actor_id = $1",
        "DELETE FROM audit_log WHERE actor_id = $1",
    ] {
        let err = db.execute(statement, &[&alice.id]).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
            "{err:?}"
        );
    }
    assert!(db.execute("TRUNCATE audit_log", &[]).await.is_err());
    assert_eq!(
        audit_count(&app, "conversation.created", &alice.id).await,
        1
    );
}
