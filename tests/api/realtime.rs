//! WebSocket delivery: events reach every connection of every participant,
//! `message.send` is acknowledged, bad frames get `error` frames.

use std::time::Duration;

use futures_util::SinkExt;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_rest_message_reaches_both_tabs_of_the_recipient_and_the_sender() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let mut bob_tab1 = app.ws(&bob).await;
    let mut bob_tab2 = app.ws(&bob).await;
    let mut alice_tab = app.ws(&alice).await;

    let sent = app
        .send(&alice, &id, "are you free for an interview?")
        .await;
    for socket in [&mut bob_tab1, &mut bob_tab2, &mut alice_tab] {
        let event = socket.next_event_within(Duration::from_secs(2)).await;
        assert_eq!(event["type"], "message.created");
        assert_eq!(event["eventVersion"], 1);
        assert_eq!(event["data"], sent);
    }
}

#[tokio::test]
async fn message_send_over_the_socket_is_acked_delivered_and_idempotent() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_ws = app.ws(&bob).await;

    let frame = json!({"type": "message.send", "data": {"conversationId": id, "body": "hello over ws", "clientMessageId": "ws-1"}});
    alice_ws.send_json(frame.clone()).await;
    let ack = alice_ws.next_of_type("ack").await;
    assert_eq!(ack["data"]["clientMessageId"], "ws-1");
    assert_eq!(ack["data"]["message"]["seq"], 1);
    assert_eq!(ack["data"]["message"]["body"], "hello over ws");
    let delivered = bob_ws.next_of_type("message.created").await;
    assert_eq!(delivered["data"]["id"], ack["data"]["message"]["id"]);
    let badge = bob_ws.next_of_type("conversation.updated").await;
    assert_eq!(
        (
            badge["data"]["unreadCount"].as_i64(),
            badge["data"]["totalUnread"].as_i64()
        ),
        (Some(1), Some(1))
    );

    // A retry of the same frame is acknowledged with the same message and delivered to no one again.
    alice_ws.send_json(frame).await;
    let again = alice_ws.next_of_type("ack").await;
    assert_eq!(again["data"]["message"]["id"], ack["data"]["message"]["id"]);
    bob_ws.assert_silent(Duration::from_millis(300)).await;

    let (_, page) = app
        .get(&bob, &format!("/chat/conversations/{id}/messages"))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_survives() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let mallory = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let mut ws = app.ws(&mallory).await;

    ws.stream
        .send(tokio_tungstenite::tungstenite::Message::text("{not json"))
        .await
        .unwrap();
    let error = ws.next_of_type("error").await;
    assert_eq!(error["data"]["code"], "malformed_frame");

    ws.send_json(json!({"type": "message.send", "data": {"conversationId": id, "body": "sneaky", "clientMessageId": "x-1"}}))
        .await;
    let error = ws.next_of_type("error").await;
    assert_eq!(error["data"]["code"], "not_found");
    assert_eq!(error["data"]["clientMessageId"], "x-1");

    ws.send_json(
        json!({"type": "message.send", "data": {"conversationId": id, "clientMessageId": "x-2"}}),
    )
    .await;
    let error = ws.next_of_type("error").await;
    assert_eq!(error["data"]["code"], "invalid_frame_data");
    assert_eq!(error["data"]["clientMessageId"], "x-2");

    ws.send_json(json!({"type": "teleport", "data": {}})).await;
    assert_eq!(
        ws.next_of_type("error").await["data"]["code"],
        "unsupported_frame_type"
    );

    // Still usable: a valid send in a conversation of mallory's own is acknowledged.
    let own = app.conversation(&mallory, &bob).await;
    ws.send_json(json!({"type": "message.send", "data": {"conversationId": own, "body": "<i>hi</i>", "clientMessageId": "x-3"}}))
        .await;
    let ack = ws.next_of_type("ack").await;
    assert_eq!(
        ack["data"]["message"]["body"], "<i>hi</i>",
        "plain text, as typed"
    );
    let stored = app.stored_messages(&id).await;
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn reading_on_one_tab_updates_the_other_and_tells_the_sender() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    for n in 1..=3 {
        app.send(&alice, &id, &format!("m{n}")).await;
    }
    for user in [&alice, &bob] {
        let (status, _) = app
            .patch(user, "/users/me/settings", json!({"readReceipts": true}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut bob_tab1 = app.ws(&bob).await;
    let mut bob_tab2 = app.ws(&bob).await;
    let mut alice_ws = app.ws(&alice).await;

    bob_tab1
        .send_json(json!({"type": "read.receipt", "data": {"conversationId": id, "seq": 3}}))
        .await;
    for tab in [&mut bob_tab1, &mut bob_tab2] {
        let updated = tab.next_of_type("conversation.updated").await;
        assert_eq!(updated["data"]["conversationId"], id.as_str());
        assert_eq!(updated["data"]["unreadCount"], 0);
        assert_eq!(updated["data"]["lastReadSeq"], 3);
    }
    let receipt = alice_ws.next_of_type("read.receipt").await;
    assert_eq!(receipt["data"]["userId"], bob.id.as_str());
    assert_eq!(receipt["data"]["seq"], 3);

    // Reading the same position again moves nothing and tells no one.
    bob_tab1
        .send_json(json!({"type": "read.receipt", "data": {"conversationId": id, "seq": 2}}))
        .await;
    alice_ws.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn the_upgrade_requires_a_valid_ticket_and_says_why_it_refuses() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let expired = app
        .keys
        .mint(&alice.id, "Alice", "recruiter", None, -3600)
        .unwrap();
    let spent = app.ws_url(&alice).await;
    let first = tokio_tungstenite::connect_async(&spent).await.unwrap();
    drop(first);
    for url in [
        format!("ws://127.0.0.1:{}/ws", app.port),
        format!("ws://127.0.0.1:{}/ws?ticket=garbage", app.port),
        spent,
        // Tokens stay out of URLs unless PARLEY_TOKEN_IN_URL lets old clients in.
        format!("ws://127.0.0.1:{}/ws?token={}", app.port, alice.token),
        format!("ws://127.0.0.1:{}/ws?token={expired}", app.port),
    ] {
        let (stream, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let mut client = crate::helpers::WsClient { stream };
        assert_eq!(
            client.close_within(Duration::from_secs(2)).await,
            Some(parley::ws::connection::CLOSE_UNAUTHORISED),
            "{url}"
        );
    }
    let old = crate::helpers::spawn_app_with(|s| s.auth.token_in_url = true).await;
    let bob = old.user("candidate").await;
    let url = format!("ws://127.0.0.1:{}/ws?token={}", old.port, bob.token);
    let (stream, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut client = crate::helpers::WsClient { stream };
    assert_eq!(client.close_within(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_with_resync_without_hurting_a_healthy_one() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.realtime.outbound_queue = 4;
        s.realtime.ping_interval = Duration::from_secs(30);
    })
    .await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let mut healthy = app.ws(&bob).await;
    let mut stalled = app.ws_with_small_receive_buffer(&bob).await;

    // 400 frames of 20 KB (5,000 four-byte characters) overflow any socket buffer.
    let total = 400;
    let body = "😀".repeat(5000);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < total {
            let event = healthy.next_of_type("message.created").await;
            seen.push(event["data"]["seq"].as_i64().unwrap());
        }
        seen
    });
    for chunk in (0..total).collect::<Vec<_>>().chunks(10) {
        let sends = chunk.iter().map(|_| app.send(&alice, &id, &body));
        futures_util::future::join_all(sends).await;
    }
    let seen = reader.await.unwrap();
    assert_eq!(
        seen,
        (1..=total as i64).collect::<Vec<_>>(),
        "the healthy tab got everything, in order"
    );

    let (events, code) = stalled.drain_until_closed(Duration::from_secs(10)).await;
    assert_eq!(code, Some(parley::ws::connection::CLOSE_RESYNC));
    assert!(
        events.len() < total,
        "the stalled tab was cut before the end ({} events)",
        events.len()
    );
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_reaped() {
    let app =
        crate::helpers::spawn_app_with(|s| s.realtime.ping_interval = Duration::from_millis(100))
            .await;
    let bob = app.user("candidate").await;
    let mut silent = app.ws(&bob).await;
    // Not reading means not answering pings (the client library answers while it reads).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, code) = silent.drain_until_closed(Duration::from_secs(5)).await;
    assert_eq!(code, None, "a dead peer is dropped, not politely closed");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("parley_ws_disconnects_total{reason=\"dead_peer\"}"),
        "{metrics}"
    );
}
