//! Safety between strangers: blocks, message requests, mute and archive,
//! rate limits, reports, moderation and the audit log.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

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
        // Both are online, yet each looks like an offline contact to the other.
        let hidden = socket.next_of_type("presence.updated").await;
        assert_eq!(
            (&hidden["data"]["status"], &hidden["data"]["lastSeenAt"]),
            (&json!("offline"), &Value::Null)
        );
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
        let (status, presence) = app
            .get(viewer, &format!("/users/{}/presence", other.id))
            .await;
        assert_eq!(
            (status, presence),
            (
                StatusCode::OK,
                json!({ "userId": other.id, "status": "offline", "lastSeenAt": null })
            )
        );
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
        (StatusCode::FORBIDDEN, "self_block")
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

fn inbox_ids(page: &serde_json::Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_message_request_allows_one_message_until_accepted_and_a_reply_accepts() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.stranger_conversation(&alice, &bob).await;
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_ws = app.ws(&bob).await;

    let (status, first) = app
        .send_raw(
            &alice,
            &id,
            "Great role for you: https://jobs.example.com/42",
            "req-1",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        first["links"],
        json!({"urls": ["https://jobs.example.com/42"], "live": false})
    );
    let requested = bob_ws.next_of_type("conversation.requested").await;
    assert_eq!(requested["data"]["fromUserId"], alice.id.as_str());

    // The request waits under filter=requests, not in the inbox.
    let (_, inbox) = app.get(&bob, "/chat/conversations").await;
    assert!(!inbox_ids(&inbox).contains(&id));
    let (_, requests) = app.get(&bob, "/chat/conversations?filter=requests").await;
    assert_eq!(inbox_ids(&requests), vec![id.clone()]);
    assert_eq!(requests["items"][0]["requestState"], "pending");
    // The sender's view says what a second send would be told.
    let (_, mine) = app.get(&alice, &format!("/chat/conversations/{id}")).await;
    assert_eq!(
        (&mine["requestState"], &mine["otherRequestState"]),
        (&json!("none"), &json!("pending"))
    );

    // One message only; a retry of that same message is still fine.
    let (status, body) = app.send_raw(&alice, &id, "hello??", "req-2").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "request_pending")
    );
    let (status, again) = app
        .send_raw(
            &alice,
            &id,
            "Great role for you: https://jobs.example.com/42",
            "req-1",
        )
        .await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &first["id"]));
    assert_eq!(app.stored_messages(&id).await, 1);

    // Bob replies: that accepts, and Alice may write freely, links live.
    app.send(&bob, &id, "Tell me more").await;
    assert_eq!(
        alice_ws.next_of_type("conversation.accepted").await["data"]["userId"],
        bob.id.as_str()
    );
    let (status, more) = app
        .send_raw(&alice, &id, "details at www.example.com", "req-3")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(more["links"]["live"], true);
    let (_, inbox) = app.get(&bob, "/chat/conversations").await;
    assert!(inbox_ids(&inbox).contains(&id));
    assert_eq!(
        audit_count(&app, "conversation.created", &alice.id).await,
        1
    );
}

#[tokio::test]
async fn declining_stops_the_sender_until_the_recipient_changes_their_mind() {
    let app = spawn_app().await;
    let carol = app.user("company").await;
    let dave = app.user("candidate").await;
    let id = app.stranger_conversation(&carol, &dave).await;
    let mut carol_ws = app.ws(&carol).await;
    app.send(&carol, &id, "Want a shift on Saturday?").await;

    let (status, view) = app
        .post(
            &dave,
            &format!("/chat/conversations/{id}/decline"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, view["requestState"].as_str()),
        (StatusCode::OK, Some("declined"))
    );
    assert_eq!(
        carol_ws.next_of_type("conversation.declined").await["data"]["userId"],
        dave.id.as_str()
    );
    let (_, mine) = app.get(&carol, &format!("/chat/conversations/{id}")).await;
    assert_eq!(mine["otherRequestState"], "declined");
    let (status, body) = app.send_raw(&carol, &id, "Please?", "dec-1").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "request_declined")
    );
    let (status, body) = app
        .post(
            &carol,
            &format!("/chat/conversations/{id}/accept"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "no_pending_request"),
        "only the recipient answers"
    );
    let (_, requests) = app.get(&dave, "/chat/conversations?filter=requests").await;
    assert!(!inbox_ids(&requests).contains(&id));

    let (status, view) = app
        .post(
            &dave,
            &format!("/chat/conversations/{id}/accept"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, view["requestState"].as_str()),
        (StatusCode::OK, Some("accepted"))
    );
    assert_eq!(
        carol_ws.next_of_type("conversation.accepted").await["data"]["userId"],
        dave.id.as_str()
    );
    app.send(&carol, &id, "Great, see you Saturday").await;
    assert_eq!(audit_count(&app, "request.declined", &dave.id).await, 1);
    assert_eq!(audit_count(&app, "request.accepted", &dave.id).await, 1);
}

#[tokio::test]
async fn people_who_already_talk_or_were_connected_by_the_platform_send_freely() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    // A pre-accepted context (the platform connected them): never a request.
    let connected = app.conversation(&alice, &bob).await;
    app.send(&alice, &connected, "one").await;
    app.send(&alice, &connected, "two").await;
    // Having talked there, a new conversation between them is not a request either.
    let second = app.stranger_conversation(&alice, &bob).await;
    let first = app.send(&alice, &second, "see bit.ly/offer").await;
    assert_eq!(first["links"]["live"], true);
    app.send(&alice, &second, "and another").await;
}

#[tokio::test]
async fn contexts_must_be_registered_for_both_and_can_be_required_by_role() {
    let app =
        crate::helpers::spawn_app_with(|s| s.chat.require_context_for = vec!["candidate".into()])
            .await;
    let recruiter = app.user("recruiter").await;
    let candidate = app.user("candidate").await;
    let outsider = app.user("candidate").await;

    let (status, body) = app
        .open(
            &recruiter,
            &candidate,
            Some(json!({"type": "application", "id": "never-registered"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "context_not_allowed")
    );
    let job = crate::helpers::unique("job");
    assert_eq!(
        app.register_context("application", &job, &[&recruiter, &candidate], false)
            .await,
        StatusCode::CREATED
    );
    let (status, body) = app
        .open(
            &recruiter,
            &outsider,
            Some(json!({"type": "application", "id": job})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "context_not_allowed")
    );
    let (status, conv) = app
        .open(
            &candidate,
            &recruiter,
            Some(json!({"type": "application", "id": job})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(conv["context"]["title"], format!("Job {job}"));

    // Candidates may only talk inside a context; recruiters may start cold.
    let (status, body) = app.open(&candidate, &outsider, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "context_required")
    );
    let (status, _) = app.open(&recruiter, &outsider, None).await;
    assert_eq!(status, StatusCode::CREATED);

    // The server-to-server API wants its key, and can create users before they sign in.
    for key in [None, Some("wrong-key-wrong-key")] {
        let mut request = app
            .http
            .put(app.url("/internal/users/someone-new"))
            .json(&json!({"name": "New", "role": "candidate"}));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let newcomer = crate::helpers::unique("newcomer");
    let response = app
        .http
        .put(app.url(&format!("/internal/users/{newcomer}")))
        .header("x-api-key", crate::helpers::INTERNAL_API_KEY)
        .json(&json!({"name": "Nia Newcomer", "role": "candidate", "verified": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, conv) = app
        .post(
            &recruiter,
            "/chat/conversations",
            json!({"participantId": newcomer}),
        )
        .await;
    assert_eq!(
        (status, conv["otherParticipant"]["name"].as_str()),
        (StatusCode::CREATED, Some("Nia Newcomer"))
    );
    assert_eq!(
        conv["otherParticipant"]["verified"], true,
        "the platform vouches for her"
    );
}

#[tokio::test]
async fn archive_hides_and_keeps_out_of_the_badge_until_unarchived_and_mute_only_silences() {
    let app = spawn_app().await;
    let me = app.user("candidate").await;
    let recruiter = app.user("recruiter").await;
    let id = app.conversation(&recruiter, &me).await;
    app.send(&recruiter, &id, "first").await;
    let mut ws = app.ws(&me).await;

    let (status, view) = app
        .post(&me, &format!("/chat/conversations/{id}/archive"), json!({}))
        .await;
    assert_eq!(
        (status, view["archived"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let update = ws.next_of_type("conversation.updated").await;
    assert_eq!(
        update["data"]["totalUnread"], 0,
        "archived conversations leave the badge"
    );

    app.send(&recruiter, &id, "are you there?").await;
    let update = ws.next_of_type("conversation.updated").await;
    assert_eq!(
        (
            update["data"]["unreadCount"].as_i64(),
            update["data"]["totalUnread"].as_i64()
        ),
        (Some(2), Some(0))
    );
    let (_, inbox) = app.get(&me, "/chat/conversations").await;
    assert!(
        !inbox_ids(&inbox).contains(&id),
        "a new message does not unarchive"
    );
    let (_, archived) = app.get(&me, "/chat/conversations?filter=archived").await;
    assert_eq!(inbox_ids(&archived), vec![id.clone()]);

    let response = app
        .http
        .delete(app.url(&format!("/chat/conversations/{id}/archive")))
        .bearer_auth(&me.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let update = ws.next_of_type("conversation.updated").await;
    assert_eq!(
        update["data"]["totalUnread"], 2,
        "unarchiving restores the badge"
    );
    let (_, inbox) = app.get(&me, "/chat/conversations").await;
    assert!(inbox_ids(&inbox).contains(&id));

    let (_, view) = app
        .post(&me, &format!("/chat/conversations/{id}/mute"), json!({}))
        .await;
    assert_eq!(
        (view["muted"].as_bool(), view["archived"].as_bool()),
        (Some(true), Some(false))
    );
    let (_, inbox) = app.get(&me, "/chat/conversations").await;
    assert!(
        inbox_ids(&inbox).contains(&id),
        "muted conversations stay in the inbox"
    );
    assert_eq!(audit_count(&app, "conversation.archived", &me.id).await, 1);
    assert_eq!(
        audit_count(&app, "conversation.unarchived", &me.id).await,
        1
    );
    let outsider = app.user("candidate").await;
    let (status, _) = app
        .post(
            &outsider,
            &format!("/chat/conversations/{id}/archive"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
