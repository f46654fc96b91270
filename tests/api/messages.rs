//! Sending, paging, idempotency, ordering, read pointers and unread counts.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, error_code, spawn_app, unique};

fn seqs(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

async fn history(app: &TestApp, user: &TestUser, id: &str, query: &str) -> Value {
    let (status, page) = app
        .get(user, &format!("/chat/conversations/{id}/messages{query}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

#[tokio::test]
async fn messages_are_stored_as_typed_and_paged_both_ways() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;

    let first = app
        .send(&alice, &id, "  <b>Hello</b> Bob, 5 < 6 & 👋 — Привет  ")
        .await;
    assert_eq!(
        first["body"], "<b>Hello</b> Bob, 5 < 6 & 👋 — Привет",
        "plain text, as typed (trimmed)"
    );
    assert_eq!(first["seq"], 1);
    assert_eq!(first["senderId"], alice.id.as_str());
    assert_eq!(first["conversationId"], id.as_str());
    assert_eq!(first["kind"], "text");
    for n in 2..=7 {
        let sender = if n % 2 == 0 { &bob } else { &alice };
        let message = app.send(sender, &id, &format!("message {n}")).await;
        assert_eq!(message["seq"], n);
    }

    let all = history(&app, &bob, &id, "").await;
    assert_eq!(seqs(&all), (1..=7).collect::<Vec<_>>());
    assert_eq!(all["hasMore"], false);

    let newest = history(&app, &bob, &id, "?limit=3").await;
    assert_eq!(seqs(&newest), vec![5, 6, 7]);
    assert_eq!(newest["hasMore"], true);
    assert_eq!(newest["nextCursor"], "5");
    let older = history(&app, &bob, &id, "?before=5&limit=3").await;
    assert_eq!(seqs(&older), vec![2, 3, 4]);
    let oldest = history(&app, &bob, &id, "?before=2&limit=3").await;
    assert_eq!(seqs(&oldest), vec![1]);
    assert_eq!(oldest["hasMore"], false);

    let forward = history(&app, &alice, &id, "?after=0&limit=3").await;
    assert_eq!(seqs(&forward), vec![1, 2, 3]);
    assert_eq!(forward["nextCursor"], "3");
    let next = history(&app, &alice, &id, "?after=3&limit=10").await;
    assert_eq!(seqs(&next), vec![4, 5, 6, 7]);
    assert_eq!(next["hasMore"], false);
    let capped = history(&app, &alice, &id, "?limit=1000").await;
    assert_eq!(seqs(&capped).len(), 7);
}

#[tokio::test]
async fn resending_a_client_message_id_returns_the_original_and_stores_nothing() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;

    let (status, original) = app.send_raw(&alice, &id, "once", "cm-1").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, repeat) = app.send_raw(&alice, &id, "once (retried)", "cm-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repeat, original);

    // Two concurrent sends with one clientMessageId: one stores, one echoes it.
    let (a, b) = tokio::join!(
        app.send_raw(&alice, &id, "race", "cm-2"),
        app.send_raw(&alice, &id, "race", "cm-2")
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CREATED]);
    assert_eq!(a.1["id"], b.1["id"]);

    let stored = app.stored_messages(&id).await;
    assert_eq!(stored, 2);
    let page = history(&app, &bob, &id, "").await;
    assert_eq!(seqs(&page), vec![1, 2]);

    // The same id in another conversation is a conflict, not a silent echo.
    let carol = app.user("candidate").await;
    let other = app.conversation(&alice, &carol).await;
    let (status, body) = app.send_raw(&alice, &other, "elsewhere", "cm-1").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "client_message_id_reused")
    );
}

#[tokio::test]
async fn seq_is_gapless_under_fifty_concurrent_senders() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;

    let sends = (0..50).map(|i| {
        let (app, id) = (&app, &id);
        let sender = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        async move {
            app.send_raw(&sender, id, &format!("concurrent {i}"), &unique("c"))
                .await
        }
    });
    let results = futures_util::future::join_all(sends).await;
    let assigned: BTreeSet<i64> = results
        .iter()
        .map(|(status, m)| {
            assert_eq!(*status, StatusCode::CREATED, "{m}");
            m["seq"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(assigned, (1..=50).collect::<BTreeSet<_>>());
    let stored = app
        .sql_i64(
            "SELECT count(DISTINCT seq) FROM messages WHERE conversation_id = $1::text::uuid",
            &[&id],
        )
        .await;
    assert_eq!(stored, 50);
    let (_, conv) = app.get(&alice, &format!("/chat/conversations/{id}")).await;
    assert_eq!(conv["lastSeq"], 50);
}

#[tokio::test]
async fn unread_counts_match_the_messages_table_and_read_pointers_never_move_back() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    let read = |user: &TestUser, seq: i64| {
        let path = format!("/chat/conversations/{id}/read");
        let user = user.clone();
        let app = &app;
        async move { app.post(&user, &path, json!({ "seq": seq })).await }
    };

    for n in 1..=5 {
        app.send(&alice, &id, &format!("a{n}")).await;
    }
    let (status, state) = read(&bob, 3).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (state["lastReadSeq"].as_i64(), state["unreadCount"].as_i64()),
        (Some(3), Some(2))
    );
    let (_, state) = read(&bob, 1).await;
    assert_eq!(state["lastReadSeq"], 3, "the pointer never moves back");
    app.send(&bob, &id, "b1").await; // replying reads everything before it
    app.send(&alice, &id, "a6").await;
    app.send(&alice, &id, "a7").await;
    let (_, state) = read(&alice, 2).await;
    assert_eq!(
        state["lastReadSeq"], 8,
        "the sender has read up to their own last message"
    );
    let (_, state) = read(&bob, 1_000).await;
    assert_eq!(state["lastReadSeq"], 8, "clamped to the last message");
    app.send(&alice, &id, "a8").await;

    for user in [&alice, &bob] {
        let (_, conv) = app.get(user, &format!("/chat/conversations/{id}")).await;
        let expected = app
            .sql_i64(
                "SELECT count(*) FROM messages m JOIN conversation_participants p
                   ON p.conversation_id = m.conversation_id AND p.user_id = $2
                 WHERE m.conversation_id = $1::text::uuid AND m.seq > p.last_read_seq AND m.sender_id <> $2",
                &[&id, &user.id],
            )
            .await;
        assert_eq!(
            conv["unreadCount"].as_i64().unwrap(),
            expected,
            "{}",
            user.id
        );
    }
    let (_, bob_view) = app.get(&bob, &format!("/chat/conversations/{id}")).await;
    assert_eq!(bob_view["unreadCount"], 1);
}

#[tokio::test]
async fn a_non_participant_gets_404_everywhere_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let mallory = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    app.send(&alice, &id, "private").await;

    let (status, body) = app
        .get(&mallory, &format!("/chat/conversations/{id}/messages"))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, body) = app.send_raw(&mallory, &id, "let me in", "m-1").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, body) = app
        .post(
            &mallory,
            &format!("/chat/conversations/{id}/read"),
            json!({"seq": 1}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let ghost = uuid::Uuid::now_v7();
    let (status, _) = app
        .send_raw(&alice, &ghost.to_string(), "to nowhere", "m-2")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .get(&alice, &format!("/chat/conversations/{ghost}/messages"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let stored = app.stored_messages(&id).await;
    assert_eq!(stored, 1);
    let (_, conv) = app.get(&bob, &format!("/chat/conversations/{id}")).await;
    assert_eq!(conv["unreadCount"], 1);
}
