//! Live signals: typing, read-receipt privacy, unread badges across tabs, and
//! `GET /chat/sync`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, TestUser, error_code, spawn_app, spawn_app_with};

async fn share_receipts(app: &TestApp, user: &TestUser, on: bool) {
    let (status, settings) = app
        .patch(user, "/users/me/settings", json!({ "readReceipts": on }))
        .await;
    assert_eq!(
        (status, settings["readReceipts"].as_bool()),
        (StatusCode::OK, Some(on))
    );
}

fn typing(kind: &str, conversation: &str) -> serde_json::Value {
    json!({"type": kind, "data": {"conversationId": conversation}})
}

#[tokio::test]
async fn typing_reaches_the_other_participant_and_stops_by_itself() {
    let app = spawn_app_with(|s| s.realtime.typing_timeout = Duration::from_millis(300)).await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_ws = app.ws(&bob).await;

    alice_ws.send_json(typing("typing.started", &id)).await;
    let started = bob_ws.next_of_type("typing.started").await;
    assert_eq!(started["data"]["userId"], alice.id.as_str());
    assert_eq!(started["data"]["conversationId"], id.as_str());
    // No refresh: the server announces the stop on its own.
    let stopped = bob_ws.next_event_within(Duration::from_secs(2)).await;
    assert_eq!(stopped["type"], "typing.stopped");
    // The typist's own connections hear nothing of it.
    alice_ws.assert_silent(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn typing_spam_is_throttled_and_a_message_or_a_disconnect_ends_it() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_ws = app.ws(&bob).await;

    for _ in 0..20 {
        alice_ws.send_json(typing("typing.started", &id)).await;
    }
    assert_eq!(bob_ws.next_event().await["type"], "typing.started");
    bob_ws.assert_silent(Duration::from_millis(300)).await;

    app.send(&alice, &id, "done typing").await;
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(
            bob_ws.next_event().await["type"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(kinds.contains(&"typing.stopped".to_string()), "{kinds:?}");

    alice_ws.send_json(typing("typing.started", &id)).await;
    assert_eq!(
        bob_ws.next_of_type("typing.started").await["data"]["userId"],
        alice.id.as_str()
    );
    drop(alice_ws);
    let stopped = bob_ws.next_of_type("typing.stopped").await;
    assert_eq!(stopped["data"]["userId"], alice.id.as_str());
}

#[tokio::test]
async fn typing_over_rest_and_from_outsiders() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let mallory = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let mut bob_ws = app.ws(&bob).await;

    let path = format!("/chat/conversations/{id}/typing");
    let (status, body) = app.post(&mallory, &path, json!({"state": "started"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let mut mallory_ws = app.ws(&mallory).await;
    mallory_ws.send_json(typing("typing.started", &id)).await;
    bob_ws.assert_silent(Duration::from_millis(300)).await;

    let (status, body) = app.post(&alice, &path, json!({"state": "dancing"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_state")
    );
    let (status, _) = app.post(&alice, &path, json!({"state": "started"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(bob_ws.next_event().await["type"], "typing.started");
    let (status, _) = app.post(&alice, &path, json!({"state": "stopped"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(bob_ws.next_event().await["type"], "typing.stopped");
}

#[tokio::test]
async fn typing_over_the_socket_is_refused_outside_your_own_conversations() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let mallory = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let mut bob_ws = app.ws(&bob).await;
    let mut mallory_ws = app.ws(&mallory).await;

    // As over REST: someone else's conversation, or no conversation at all, is not found.
    mallory_ws.send_json(typing("typing.started", &id)).await;
    let refused = mallory_ws.next_event().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["data"]["code"], "not_found");
    let unknown = uuid::Uuid::now_v7().to_string();
    mallory_ws
        .send_json(typing("typing.started", &unknown))
        .await;
    assert_eq!(mallory_ws.next_event().await["data"]["code"], "not_found");
    bob_ws.assert_silent(Duration::from_millis(300)).await;

    // A participant's signal is relayed and not answered.
    let mut alice_ws = app.ws(&alice).await;
    alice_ws.send_json(typing("typing.started", &id)).await;
    let relayed = bob_ws.next_event().await;
    assert_eq!(relayed["type"], "typing.started");
    assert_eq!(relayed["data"]["userId"], alice.id.as_str());
    alice_ws.assert_silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn read_receipts_flow_only_when_both_sides_share_them() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let (_, settings) = app.get(&bob, "/users/me/settings").await;
    assert_eq!(settings["readReceipts"], false, "off by default");
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_ws = app.ws(&bob).await;
    let read = |user: &TestUser, seq: i64| {
        let (app, path, user) = (&app, format!("/chat/conversations/{id}/read"), user.clone());
        async move { app.post(&user, &path, json!({ "seq": seq })).await }
    };

    // Default (both off): nothing travels, pointers stay private.
    app.send(&alice, &id, "one").await;
    app.send(&bob, &id, "two").await;
    read(&bob, 1).await;
    read(&alice, 2).await;
    alice_ws
        .assert_silent_of("read.receipt", Duration::from_millis(300))
        .await;
    bob_ws
        .assert_silent_of("read.receipt", Duration::from_millis(100))
        .await;

    // Bob shares, Alice does not: still nothing, in either direction.
    share_receipts(&app, &bob, true).await;
    app.send(&alice, &id, "three").await;
    read(&bob, 3).await;
    alice_ws
        .assert_silent_of("read.receipt", Duration::from_millis(300))
        .await;
    let (_, alice_view) = app.get(&alice, &format!("/chat/conversations/{id}")).await;
    assert!(alice_view["otherLastReadSeq"].is_null());

    // Both share: receipts and pointers are visible.
    share_receipts(&app, &alice, true).await;
    app.send(&alice, &id, "four").await;
    read(&bob, 4).await;
    let receipt = alice_ws.next_of_type("read.receipt").await;
    assert_eq!(
        (
            receipt["data"]["userId"].as_str(),
            receipt["data"]["seq"].as_i64()
        ),
        (Some(bob.id.as_str()), Some(4))
    );
    let (_, alice_view) = app.get(&alice, &format!("/chat/conversations/{id}")).await;
    assert_eq!(alice_view["otherLastReadSeq"], 4);

    // Alice turns hers off: she stops seeing Bob's too.
    share_receipts(&app, &alice, false).await;
    app.send(&alice, &id, "five").await;
    read(&bob, 5).await;
    alice_ws
        .assert_silent_of("read.receipt", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn unread_badges_follow_reading_on_another_tab() {
    let app = spawn_app().await;
    let me = app.user("candidate").await;
    let recruiter = app.user("recruiter").await;
    let company = app.user("company").await;
    let first = app.conversation(&recruiter, &me).await;
    let second = app.conversation(&company, &me).await;
    let mut tab1 = app.ws(&me).await;
    let mut tab2 = app.ws(&me).await;

    app.send(&recruiter, &first, "a").await;
    app.send(&recruiter, &first, "b").await;
    app.send(&company, &second, "c").await;
    let mut last = serde_json::Value::Null;
    for _ in 0..3 {
        last = tab2.next_of_type("conversation.updated").await;
    }
    assert_eq!(
        (
            last["data"]["unreadCount"].as_i64(),
            last["data"]["totalUnread"].as_i64()
        ),
        (Some(1), Some(3))
    );

    tab1.send_json(json!({"type": "read.receipt", "data": {"conversationId": first, "seq": 2}}))
        .await;
    let update = tab2.next_of_type("conversation.updated").await;
    assert_eq!(update["data"]["conversationId"], first.as_str());
    assert_eq!(
        (
            update["data"]["unreadCount"].as_i64(),
            update["data"]["totalUnread"].as_i64()
        ),
        (Some(0), Some(1))
    );
}

#[tokio::test]
async fn sync_returns_exactly_the_conversations_that_changed() {
    let app = spawn_app().await;
    let me = app.user("candidate").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let other = app.user("recruiter").await;
        let id = app.conversation(&other, &me).await;
        app.send(&other, &id, "hello").await;
        ids.push((other, id));
    }
    let (status, full) = app.get(&me, "/chat/sync").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(full["items"].as_array().unwrap().len(), 4);
    let cursor = full["cursor"].as_str().unwrap().to_string();

    let (_, nothing) = app.get(&me, &format!("/chat/sync?since={cursor}")).await;
    assert_eq!(nothing["items"].as_array().unwrap().len(), 0);

    // A new message in one, a read in another; the other two are untouched.
    let (other, changed_by_message) = &ids[1];
    app.send(other, changed_by_message, "news").await;
    let (_, changed_by_read) = &ids[3];
    app.post(
        &me,
        &format!("/chat/conversations/{changed_by_read}/read"),
        json!({"seq": 1}),
    )
    .await;

    let (_, delta) = app.get(&me, &format!("/chat/sync?since={cursor}")).await;
    let mut changed: Vec<&str> = delta["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    changed.sort();
    let mut expected = vec![changed_by_message.as_str(), changed_by_read.as_str()];
    expected.sort();
    assert_eq!(changed, expected);
    let by_message = delta["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == changed_by_message.as_str())
        .unwrap();
    assert_eq!(
        (
            by_message["lastSeq"].as_i64(),
            by_message["unreadCount"].as_i64()
        ),
        (Some(2), Some(2))
    );

    let (status, body) = app.get(&me, "/chat/sync?since=yesterday").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_cursor")
    );
}

/// A client following the README's resync algorithm for one conversation.
struct FollowingClient {
    applied: Vec<i64>,
}

impl FollowingClient {
    fn last(&self) -> i64 {
        self.applied.last().copied().unwrap_or(0)
    }

    /// Applies a `message.created`; on a gap, fetches what is missing first.
    async fn on_message(&mut self, app: &TestApp, user: &TestUser, conversation: &str, seq: i64) {
        if seq <= self.last() {
            return; // already have it
        }
        if seq > self.last() + 1 {
            self.catch_up(app, user, conversation).await;
        }
        if seq == self.last() + 1 {
            self.applied.push(seq);
        }
    }

    /// `GET .../messages?after=<last>` until there is no more.
    async fn catch_up(&mut self, app: &TestApp, user: &TestUser, conversation: &str) {
        loop {
            let path = format!(
                "/chat/conversations/{conversation}/messages?after={}&limit=7",
                self.last()
            );
            let (status, page) = app.get(user, &path).await;
            assert_eq!(status, StatusCode::OK);
            for message in page["items"].as_array().unwrap() {
                let seq = message["seq"].as_i64().unwrap();
                assert_eq!(seq, self.last() + 1, "pages come in order without gaps");
                self.applied.push(seq);
            }
            if page["hasMore"] != true {
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_client_killed_mid_stream_ends_with_every_message_exactly_once_in_order() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let (_, synced) = app.get(&bob, "/chat/sync").await;
    let cursor = synced["cursor"].as_str().unwrap().to_string();
    let mut client = FollowingClient {
        applied: Vec::new(),
    };

    let mut socket = app.ws(&bob).await;
    let sender = {
        let (app, alice, id) = (&app, &alice, &id);
        async move {
            for n in 1..=25 {
                app.send(alice, id, &format!("stream {n}")).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let receiver = async {
        // Read five messages, then the socket dies without a close frame.
        while client.applied.len() < 5 {
            let event = socket.next_of_type("message.created").await;
            let seq = event["data"]["seq"].as_i64().unwrap();
            client.on_message(&app, &bob, &id, seq).await;
        }
        drop(socket);
    };
    tokio::join!(sender, receiver);

    // Reconnect, then sync: the conversation is reported changed, so fetch after what we hold.
    let mut socket = app.ws(&bob).await;
    let (_, delta) = app.get(&bob, &format!("/chat/sync?since={cursor}")).await;
    let changed = delta["items"].as_array().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["lastSeq"], 25);
    if changed[0]["lastSeq"].as_i64().unwrap() > client.last() {
        client.catch_up(&app, &bob, &id).await;
    }
    // Live again: the next message arrives on the new socket.
    app.send(&alice, &id, "after the reconnect").await;
    let event = socket.next_of_type("message.created").await;
    client
        .on_message(&app, &bob, &id, event["data"]["seq"].as_i64().unwrap())
        .await;

    assert_eq!(client.applied, (1..=26).collect::<Vec<_>>());
}
