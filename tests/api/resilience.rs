//! Failure and lifecycle: actors rebuilt from Postgres after failure or
//! passivation, bounded waits, restarts, and the operational endpoints.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    drop_database, error_code, spawn_app, spawn_app_on_own_database, spawn_app_with, unique,
};

#[tokio::test]
async fn an_actor_that_fails_is_rebuilt_from_postgres_and_the_next_send_works() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    app.send(&alice, &id, "first").await;

    // Another writer (say, a node that wrongly believes it owns the
    // conversation) commits seq 2 behind this actor's back.
    let db = app.pool.get().await.unwrap();
    db.execute(
        "INSERT INTO messages (id, conversation_id, seq, sender_id, body, client_message_id)
         VALUES (gen_random_uuid(), $1::text::uuid, 2, $2, 'from a rival writer', $3)",
        &[&id, &bob.id, &unique("rival")],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE conversations SET last_seq = 2 WHERE id = $1::text::uuid",
        &[&id],
    )
    .await
    .unwrap();

    // The stale actor hits the (conversation_id, seq) fence: the request gets a
    // retryable 503 and the actor fails on purpose.
    let (status, body) = app.send_raw(&alice, &id, "collides", "collide-1").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );

    // The retry reaches a fresh actor rebuilt from Postgres.
    let (status, message) = app.send_raw(&alice, &id, "collides", "collide-1").await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["seq"], 3);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("parley_actor_restarts_total{actor=\"conversation\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stuck_write_answers_503_in_bounded_time_and_the_retry_is_safe() {
    let app = spawn_app_with(|s| s.chat.actor_call_timeout = Duration::from_millis(300)).await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;

    // Hold a lock the write-through needs.
    let mut locker = app.pool.get().await.unwrap();
    let lock = locker.transaction().await.unwrap();
    lock.execute(
        "SELECT 1 FROM conversations WHERE id = $1::text::uuid FOR UPDATE",
        &[&id],
    )
    .await
    .unwrap();

    let started = Instant::now();
    let (status, body) = app.send_raw(&alice, &id, "stuck", "stuck-1").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    lock.rollback().await.unwrap();
    // The write may have completed after the timeout; the idempotent retry tells.
    let (status, message) = app.send_raw(&alice, &id, "stuck", "stuck-1").await;
    assert!(
        status == StatusCode::OK || status == StatusCode::CREATED,
        "{status} {message}"
    );
    let stored = app.stored_messages(&id).await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn a_storage_failure_is_a_503_never_a_policy_refusal() {
    let (app, database) = spawn_app_on_own_database(|s| {
        s.database.timeout = Duration::from_millis(500);
    })
    .await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.stranger_conversation(&alice, &bob).await;
    app.send(&alice, &id, "hello, a message request").await;

    // A second message of a pending request is refused unless it repeats the
    // first; finding out needs the messages table, which is now locked.
    let mut locker = app.pool.get().await.unwrap();
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let (status, body) = app.send_raw(&alice, &id, "again", "second-1").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{body}"
    );
    lock.rollback().await.unwrap();

    // With the database back, the same send gets the real answer.
    let (status, body) = app.send_raw(&alice, &id, "again", "second-1").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "request_pending")
    );
    assert_eq!(app.stored_messages(&id).await, 1);
    drop(locker);
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn idle_actors_are_passivated_and_rebuilt_on_next_use() {
    let app = spawn_app_with(|s| s.chat.actor_idle_timeout = Duration::from_millis(200)).await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    app.send(&alice, &id, "one").await;
    let conv_id = parley::domain::ConversationId::parse(&id).unwrap();
    assert!(app.chat.is_live(conv_id));

    let deadline = Instant::now() + Duration::from_secs(5);
    while app.chat.is_live(conv_id) {
        assert!(Instant::now() < deadline, "actor was never passivated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let message = app.send(&bob, &id, "two").await;
    assert_eq!(message["seq"], 2);
}

#[tokio::test]
async fn data_survives_a_server_restart() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    for n in 1..=3 {
        app.send(&alice, &id, &format!("before restart {n}")).await;
    }
    app.shutdown().await;

    let app = spawn_app().await;
    let (status, page) = app
        .get(&bob, &format!("/chat/conversations/{id}/messages"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let bodies: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec!["before restart 1", "before restart 2", "before restart 3"]
    );
    let message = app.send(&alice, &id, "after restart").await;
    assert_eq!(message["seq"], 4);
    let (_, conv) = app.get(&bob, &format!("/chat/conversations/{id}")).await;
    assert_eq!(conv["unreadCount"], 4);
}

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let app = spawn_app().await;
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let id = app.conversation(&alice, &bob).await;
    app.send(&alice, &id, "counted").await;
    let _ws = app.ws(&bob).await;

    let (status, health) = app.anonymous_get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    let (status, ready) = app.anonymous_get("/readyz").await;
    assert_eq!(
        (status, &ready["database"]),
        (StatusCode::OK, &Value::from("ok"))
    );

    let metrics = app.metrics_text().await;
    for name in [
        "parley_http_requests_total{method=\"POST\",route=\"/chat/conversations/{id}/messages\",status=\"201\"}",
        "parley_messages_sent_total",
        "parley_connections_open{transport=\"websocket\"}",
        "parley_conversation_actors_live",
        "parley_db_query_seconds_bucket",
        "parley_events_total{type=\"message.created\"}",
        "parley_connects_total{transport=\"websocket\"}",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }
    assert!(!metrics.contains(&id), "raw ids must never become labels");

    let (_, doc) = app.anonymous_get("/openapi.json").await;
    for path in [
        "/chat/conversations",
        "/chat/conversations/{id}",
        "/chat/conversations/{id}/messages",
        "/chat/conversations/{id}/read",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn group_commit_gives_each_message_its_own_result() {
    let app = spawn_app().await;
    let mut pairs = Vec::new();
    for _ in 0..12 {
        let a = app.user("recruiter").await;
        let b = app.user("candidate").await;
        let id = app.conversation(&a, &b).await;
        app.send(&a, &id, "warm-up").await;
        pairs.push((a, b, id));
    }
    // A rival writer takes seq 2 of the first conversation behind its actor's back.
    let (_, rival, doomed) = &pairs[0];
    let db = app.pool.get().await.unwrap();
    db.execute(
        "INSERT INTO messages (id, conversation_id, seq, sender_id, body, client_message_id)
         VALUES (gen_random_uuid(), $1::text::uuid, 2, $2, 'rival', $3)",
        &[doomed, &rival.id, &unique("rival")],
    )
    .await
    .unwrap();

    // Many conversations send at once (so writes share transactions), including
    // repeats of a clientMessageId and the one conversation whose seq is taken.
    let sends = pairs.iter().enumerate().flat_map(|(i, (a, _, id))| {
        let app = &app;
        (0..3).map(move |n| async move {
            let client_id = format!("gc-{i}-{}", n.min(1)); // n = 1 and 2 share an id
            (
                i,
                app.send_raw(a, id, &format!("burst {n}"), &client_id).await,
            )
        })
    });
    let results = futures_util::future::join_all(sends).await;
    for (i, (status, body)) in &results {
        if *i == 0 {
            continue;
        }
        assert!(status.is_success(), "conversation {i}: {status} {body}");
    }
    for (i, (_, _, id)) in pairs.iter().enumerate().skip(1) {
        assert_eq!(
            app.stored_messages(id).await,
            3,
            "conversation {i}: warm-up + two distinct ids"
        );
    }
    // The conversation with the taken seq recovers on retry, as a client would.
    let (a, _, id) = &pairs[0];
    let (status, message) = app.send_raw(a, id, "after the rival", "gc-retry").await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert!(message["seq"].as_i64().unwrap() >= 3);
}
