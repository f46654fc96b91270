//! Presence, and the HTTP fallback (SSE and long-poll) with lossless resume.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

fn subscribe(ids: &[&str]) -> Value {
    json!({"type": "presence.subscribe", "data": {"userIds": ids}})
}

#[tokio::test]
async fn presence_goes_online_away_offline_and_only_subscribers_are_told() {
    let app = spawn_app_with(|s| s.realtime.offline_grace = Duration::from_millis(100)).await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let dave = app.user("company").await;
    let stranger = app.user("candidate").await;
    app.conversation(&alice, &bob).await;
    app.conversation(&dave, &bob).await;

    let mut alice_ws = app.ws(&alice).await;
    alice_ws
        .send_json(subscribe(&[&bob.id, &stranger.id]))
        .await;
    // Bob is offline; the stranger looks the same (and will never change).
    let mut initial = Vec::new();
    for _ in 0..2 {
        let event = alice_ws.next_of_type("presence.updated").await;
        initial.push((
            event["data"]["userId"].clone(),
            event["data"]["status"].clone(),
        ));
    }
    initial.sort_by_key(|(user, _)| user.to_string());
    let mut expected = vec![
        (json!(bob.id), json!("offline")),
        (json!(stranger.id), json!("offline")),
    ];
    expected.sort_by_key(|(user, _)| user.to_string());
    assert_eq!(initial, expected);
    let mut dave_ws = app.ws(&dave).await; // shares a conversation with bob, but does not subscribe

    let mut bob_ws = app.ws(&bob).await;
    let online = alice_ws.next_of_type("presence.updated").await;
    assert_eq!(online["data"]["status"], "online");

    bob_ws
        .send_json(json!({"type": "presence.ping", "data": {"status": "away"}}))
        .await;
    assert_eq!(
        alice_ws.next_of_type("presence.updated").await["data"]["status"],
        "away"
    );
    bob_ws
        .send_json(json!({"type": "presence.ping", "data": {"status": "online"}}))
        .await;
    assert_eq!(
        alice_ws.next_of_type("presence.updated").await["data"]["status"],
        "online"
    );

    bob_ws.stream.close(None).await.unwrap();
    let offline = alice_ws.next_of_type("presence.updated").await;
    assert_eq!(offline["data"]["status"], "offline");
    assert!(
        offline["data"]["lastSeenAt"].is_null(),
        "last-seen times are not shared"
    );

    dave_ws
        .assert_silent_of("presence.updated", Duration::from_millis(200))
        .await;
    let (status, seen) = app
        .get(&alice, &format!("/users/{}/presence", bob.id))
        .await;
    assert_eq!(
        (status, seen["status"].as_str()),
        (StatusCode::OK, Some("offline"))
    );
    // A stranger sees what a contact sees of someone offline, whatever Bob's state.
    let (status, body) = app
        .get(&stranger, &format!("/users/{}/presence", bob.id))
        .await;
    assert_eq!((status, &body), (StatusCode::OK, &seen));
}

#[tokio::test]
async fn a_connection_without_heartbeats_stops_counting_as_online() {
    let app = spawn_app_with(|s| s.realtime.presence_timeout = Duration::from_millis(300)).await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    app.conversation(&alice, &bob).await;
    let _bob_ws = app.ws(&bob).await;
    let mut alice_ws = app.ws(&alice).await;
    alice_ws.send_json(subscribe(&[&bob.id])).await;
    let current = alice_ws.next_of_type("presence.updated").await;
    assert_eq!(current["data"]["status"], "online");
    // Bob's socket stays open but his client never sends presence.ping.
    let gone = alice_ws.next_of_type("presence.updated").await;
    assert_eq!(gone["data"]["status"], "offline");
    // A REST heartbeat (the fallback's presence.ping) brings him back.
    let response = app
        .http
        .post(app.url("/users/me/presence"))
        .bearer_auth(&bob.token)
        .json(&json!({"status": "online"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        alice_ws.next_of_type("presence.updated").await["data"]["status"],
        "online"
    );
}

#[tokio::test]
async fn sse_delivers_and_resumes_from_last_event_id_without_loss() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;

    let mut stream = app.sse(&bob, None).await;
    let sent = app.send(&alice, &id, "over sse").await;
    let (first_id, event) = stream.next_of_type("message.created").await;
    assert_eq!(event["data"], sent);
    assert_eq!(event["eventVersion"], 1);
    let (last_id, _) = stream.next_of_type("conversation.updated").await;
    let last_id = last_id.expect("events carry ids");
    assert!(first_id.is_some());
    drop(stream);

    // While Bob is away, three more messages.
    for n in 2..=4 {
        app.send(&alice, &id, &format!("missed {n}")).await;
    }
    let mut resumed = app.sse(&bob, Some(&last_id)).await;
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let (_, event) = resumed.next_of_type("message.created").await;
        seqs.push(event["data"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, vec![2, 3, 4], "exactly the missed messages, in order");

    // An id this server never issued (or from before a restart) asks for a resync.
    let mut stale = app.sse(&bob, Some("1-1")).await;
    let (_, notice) = stale.next_event().await;
    assert_eq!(
        (notice["type"].as_str(), notice["data"]["code"].as_str()),
        (Some("system.notice"), Some("resync_required"))
    );
}

fn created_seqs(answer: &Value) -> Vec<i64> {
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message.created")
        .map(|e| e["data"]["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn long_polling_receives_messages_and_resumes_from_its_cursor() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;

    // Nothing happens: the poll ends at its timeout with a cursor to resume from.
    let idle = app.poll(&bob, "timeout=1").await;
    assert_eq!(idle["events"].as_array().unwrap().len(), 0);
    let cursor = idle["cursor"].as_str().unwrap().to_string();

    // A poll in progress is answered as soon as a message arrives.
    let waiting = {
        let (app, bob, cursor) = (&app, &bob, cursor.clone());
        async move { app.poll(bob, &format!("cursor={cursor}&timeout=10")).await }
    };
    let sending = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.send(&alice, &id, "polled").await
    };
    let (answer, _) = tokio::join!(waiting, sending);
    assert_eq!(created_seqs(&answer), vec![1]);
    let cursor = answer["cursor"].as_str().unwrap().to_string();

    // Messages sent between polls are not lost.
    app.send(&alice, &id, "between polls 1").await;
    app.send(&alice, &id, "between polls 2").await;
    let next = app.poll(&bob, &format!("cursor={cursor}&timeout=5")).await;
    let mut seqs = created_seqs(&next);
    if seqs.len() < 2 {
        let more = app
            .poll(
                &bob,
                &format!("cursor={}&timeout=5", next["cursor"].as_str().unwrap()),
            )
            .await;
        seqs.extend(created_seqs(&more));
    }
    assert_eq!(seqs, vec![2, 3]);

    let stale = app.poll(&bob, "cursor=nonsense&timeout=1").await;
    assert_eq!(stale["events"][0]["data"]["code"], "resync_required");
    let response = app
        .http
        .get(app.url("/events/poll?timeout=99"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
