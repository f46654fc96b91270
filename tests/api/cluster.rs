//! Several nodes joined by the real Redis, sharing the real Postgres: each
//! test runs its nodes under a Redis prefix of its own.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TcpProxy, TestApp, error_code, spawn_cluster, unique};

/// Seqs stored for a conversation, in order.
async fn stored_seqs(app: &TestApp, conversation: &str) -> Vec<i64> {
    let db = app.pool.get().await.unwrap();
    db.query(
        "SELECT seq FROM messages WHERE conversation_id = $1::text::uuid ORDER BY seq",
        &[&conversation],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn events_reach_every_tab_of_a_user_on_any_node() {
    let nodes = spawn_cluster(3, |_| {}).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let alice = a.user("candidate").await;
    let bob = a.user("recruiter").await;
    let conversation = a.conversation(&alice, &bob).await;
    let mut bob_on_b = b.ws(&bob).await;
    let mut bob_on_c = c.ws(&bob).await;

    let sent = a.send(&alice, &conversation, "hello across nodes").await;

    for tab in [&mut bob_on_b, &mut bob_on_c] {
        let created = tab.next_of_type("message.created").await;
        assert_eq!(created["data"]["id"], sent["id"]);
        let badge = tab.next_of_type("conversation.updated").await;
        assert_eq!(badge["data"]["totalUnread"], 1, "{badge}");
    }
    // Exactly once per tab: nothing else follows.
    bob_on_b
        .assert_silent_of("message.created", Duration::from_millis(300))
        .await;
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_send_arriving_at_another_node_is_forwarded_to_the_owner() {
    let nodes = spawn_cluster(2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.user("candidate").await;
    let bob = a.user("recruiter").await;
    let conversation = a.conversation(&alice, &bob).await;
    a.send(&alice, &conversation, "first, through a").await;
    let id = parley::domain::ConversationId::parse(&conversation).unwrap();
    assert!(a.chat.is_live(id), "the first node to use it owns it");

    let mut bob_on_a = a.ws(&bob).await;
    let second = b.send(&alice, &conversation, "second, through b").await;
    assert_eq!(second["seq"], 2);
    assert!(
        !b.chat.is_live(id),
        "b forwarded instead of starting a second actor"
    );
    assert_eq!(
        bob_on_a.next_of_type("message.created").await["data"]["seq"],
        2
    );
    // A retry of the same send through b is the same message.
    let cmid = second["clientMessageId"].as_str().unwrap();
    let (status, again) = b
        .send_raw(&alice, &conversation, "second, through b", cmid)
        .await;
    assert!(status.is_success(), "{status} {again}");
    assert_eq!(again["id"], second["id"]);
    // Typing and read receipts travel the same way.
    let mut alice_on_b = b.ws(&alice).await;
    let (status, _) = b
        .post(
            &bob,
            &format!("/chat/conversations/{conversation}/read"),
            json!({"seq": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    bob_on_a
        .send_json(json!({"type": "typing.started", "data": {"conversationId": conversation}}))
        .await;
    assert_eq!(
        alice_on_b.next_of_type("typing.started").await["data"]["userId"],
        bob.id
    );
    assert_eq!(stored_seqs(a, &conversation).await, vec![1, 2]);
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_block_made_on_one_node_stops_the_next_message_on_another() {
    let nodes = spawn_cluster(2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.user("candidate").await;
    let bob = a.user("recruiter").await;
    let conversation = a.conversation(&alice, &bob).await;
    // The conversation's actor lives on b.
    b.send(&alice, &conversation, "before the block").await;
    let (status, _) = a
        .post(&bob, "/chat/blocks", json!({"userId": alice.id}))
        .await;
    assert!(status.is_success(), "{status}");
    let (status, body) = b
        .send_raw(&alice, &conversation, "after the block", &unique("cmid"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "not_delivered");
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn two_nodes_that_both_think_they_own_a_conversation_lose_and_duplicate_nothing() {
    // Leases that outlive the test: only the database fences here.
    let nodes = spawn_cluster(2, |s| s.cluster.lease_ttl = Duration::from_secs(120)).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.user("candidate").await;
    let bob = a.user("recruiter").await;
    let conversation = a.conversation(&alice, &bob).await;
    a.send(&alice, &conversation, "one").await;
    let id = parley::domain::ConversationId::parse(&conversation).unwrap();

    // Redis forgets the lease (a failover that lost it): b takes the
    // conversation too while a's actor is still live.
    let mut redis = redis::Client::open(crate::helpers::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = &a.redis_prefix;
    let _: () = redis::AsyncCommands::del(&mut redis, format!("{prefix}:owner:{id}"))
        .await
        .unwrap();
    let two = b.send(&alice, &conversation, "two").await;
    assert_eq!(two["seq"], 2);
    assert!(
        a.chat.is_live(id) && b.chat.is_live(id),
        "two would-be owners"
    );

    // a's stale actor is fenced on its first write and stops; the send goes
    // to the owner instead and lands once, at the next seq.
    let cmid = unique("cmid");
    let (status, three) = a.send_raw(&alice, &conversation, "three", &cmid).await;
    assert_eq!(status, StatusCode::CREATED, "{three}");
    assert_eq!(three["seq"], 3);
    assert!(!a.chat.is_live(id), "the fenced actor is gone");
    let (status, again) = a.send_raw(&alice, &conversation, "three", &cmid).await;
    assert!(status.is_success());
    assert_eq!(again["id"], three["id"]);
    assert_eq!(stored_seqs(a, &conversation).await, vec![1, 2, 3]);
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_that_stops_gracefully_hands_its_conversations_over_at_once() {
    let nodes = spawn_cluster(2, |_| {}).await;
    let mut nodes = nodes.into_iter();
    let (a, b) = (nodes.next().unwrap(), nodes.next().unwrap());
    let alice = a.user("candidate").await;
    let bob = a.user("recruiter").await;
    let conversation = a.conversation(&alice, &bob).await;
    a.send(&alice, &conversation, "owned by a").await;
    let prefix = a.redis_prefix.clone();
    a.shutdown().await;

    let mut redis = redis::Client::open(crate::helpers::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let holder: Option<String> =
        redis::AsyncCommands::get(&mut redis, format!("{prefix}:owner:{conversation}"))
            .await
            .unwrap();
    assert_eq!(holder, None, "the lease was released, not left to expire");
    let started = std::time::Instant::now();
    let next = b.send(&alice, &conversation, "taken over by b").await;
    assert_eq!(next["seq"], 2);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_killed_mid_conversation_loses_no_acknowledged_message() {
    let nodes = spawn_cluster(1, |_| {}).await;
    let b = &nodes[0];
    let (mut doomed, port) = crate::helpers::spawn_binary(&[
        ("PARLEY_REDIS_URL", crate::helpers::redis_url()),
        ("PARLEY_REDIS_PREFIX", b.redis_prefix.clone()),
        ("PARLEY_NODE_ID", "doomed".to_string()),
    ])
    .await;
    let alice = b.user("candidate").await;
    let bob = b.user("recruiter").await;
    let conversation = b.conversation(&alice, &bob).await;
    let mut bob_on_b = b.ws(&bob).await;

    // Alice sends through the doomed node, which owns the conversation, and
    // it is killed while she is sending.
    parley::push::install_tls_provider();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/chat/conversations/{conversation}/messages");
    let cmids: Vec<String> = (0..40).map(|i| format!("{}-{i}", unique("kill"))).collect();
    let mut acknowledged = Vec::new();
    for (i, cmid) in cmids.iter().enumerate() {
        if i == 15 {
            let pid = doomed.id().unwrap().to_string();
            assert!(
                std::process::Command::new("kill")
                    .args(["-KILL", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            doomed.wait().await.unwrap();
        }
        let sent = http
            .post(&url)
            .bearer_auth(&alice.token)
            .json(&json!({"body": format!("message {i}"), "clientMessageId": cmid}))
            .send()
            .await;
        if let Ok(response) = sent
            && response.status() == StatusCode::CREATED
        {
            acknowledged.push(response.json::<serde_json::Value>().await.unwrap());
        }
    }
    assert_eq!(
        acknowledged.len(),
        15,
        "the doomed node served until it died"
    );

    // The client retries everything through the surviving node: the
    // acknowledged ones come back as they were, the others land once.
    let started = std::time::Instant::now();
    for (i, cmid) in cmids.iter().enumerate() {
        let (status, message) = b
            .send_raw(&alice, &conversation, &format!("message {i}"), cmid)
            .await;
        assert!(status.is_success(), "{status} {message}");
        assert_eq!(message["seq"], i as i64 + 1);
        if let Some(acked) = acknowledged.get(i) {
            assert_eq!(message["id"], acked["id"]);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "takeover took {:?}",
        started.elapsed()
    );
    assert_eq!(
        stored_seqs(b, &conversation).await,
        (1..=40).collect::<Vec<i64>>(),
        "every message stored exactly once, gapless"
    );
    // The recipient on the surviving node saw the messages live, each at
    // most once. One acknowledged just before the kill may not have crossed
    // over: the client sees the gap in `seq` and fetches it, as the resync
    // algorithm says; then it has every message exactly once.
    let mut seen = Vec::new();
    while seen.last() != Some(&40) {
        let event = bob_on_b.next_of_type("message.created").await;
        seen.push(event["data"]["seq"].as_i64().unwrap());
    }
    let mut distinct = seen.clone();
    distinct.dedup();
    assert_eq!(distinct, seen, "no event twice");
    for gap in (1..=40)
        .filter(|seq| !seen.contains(seq))
        .collect::<Vec<i64>>()
    {
        let (status, page) = b
            .get(
                &bob,
                &format!(
                    "/chat/conversations/{conversation}/messages?after={}&limit=1",
                    gap - 1
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["items"][0]["seq"], gap);
        seen.push(gap);
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=40).collect::<Vec<i64>>());
    for node in nodes {
        node.shutdown().await;
    }
}

/// A Redis of the test's own (so stopping it disturbs no other test).
async fn own_redis(port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server runs (scripts/ensure-services.sh installs it)");
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let client = redis::Client::open(url.as_str()).unwrap();
        if client.get_multiplexed_async_connection().await.is_ok() {
            return child;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `/readyz` reports Redis as `want`.
async fn redis_reported(node: &TestApp, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, health) = node.anonymous_get("/readyz").await;
        if health["redis"] == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never said {want}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_redis_sends_are_still_stored_and_clients_resync_when_it_returns() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = own_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let nodes = spawn_cluster(2, |s| {
        s.cluster.redis_url = Some(parley::config::Secret::new(url.clone()));
    })
    .await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.user("candidate").await;
    let bob = a.user("recruiter").await;
    let conversation = a.conversation(&alice, &bob).await;
    let mut bob_on_b = b.ws(&bob).await;
    a.send(&alice, &conversation, "with redis").await;
    bob_on_b.next_of_type("message.created").await;

    redis.kill().await.unwrap();
    redis_reported(a, "degraded").await;
    // Postgres is the truth: sends through either node are stored and acknowledged.
    assert_eq!(
        a.send(&alice, &conversation, "redis is down").await["seq"],
        2
    );
    assert_eq!(b.send(&alice, &conversation, "still down").await["seq"], 3);
    let (status, health) = b.anonymous_get("/readyz").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a node without Redis still serves: {health}"
    );

    // Redis returns empty (it keeps nothing on disk): the nodes reconnect by
    // themselves and tell their clients to resync.
    let _redis = own_redis(port).await;
    let notice = bob_on_b.next_of_type("system.notice").await;
    assert_eq!(notice["data"]["code"], "resync_required");
    redis_reported(a, "ok").await;
    redis_reported(b, "ok").await;
    let after = a.send(&alice, &conversation, "redis is back").await;
    assert_eq!(after["seq"], 4);
    assert_eq!(
        bob_on_b.next_of_type("message.created").await["data"]["seq"],
        4
    );
    assert_eq!(stored_seqs(a, &conversation).await, vec![1, 2, 3, 4]);
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn presence_is_one_answer_on_every_node_and_reaches_subscribers_anywhere() {
    let nodes = spawn_cluster(3, |s| s.realtime.offline_grace = Duration::from_millis(100)).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let alice = a.user("recruiter").await;
    let bob = a.user("candidate").await;
    a.conversation(&alice, &bob).await;

    let mut alice_on_b = b.ws(&alice).await;
    alice_on_b
        .send_json(json!({"type": "presence.subscribe", "data": {"userIds": [bob.id]}}))
        .await;
    let initial = alice_on_b.next_of_type("presence.updated").await;
    assert_eq!(initial["data"]["status"], "offline");

    // Bob comes online on a and on c; alice, on b, is told once he is.
    let mut bob_on_a = a.ws(&bob).await;
    assert_eq!(
        alice_on_b.next_of_type("presence.updated").await["data"]["status"],
        "online"
    );
    let mut bob_on_c = c.ws(&bob).await;
    for node in [a, b, c] {
        let (status, presence) = node
            .get(&alice, &format!("/users/{}/presence", bob.id))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(presence["status"], "online", "{presence}");
    }

    // Hidden on a, still in the foreground on c: online everywhere.
    bob_on_a
        .send_json(json!({"type": "presence.ping", "data": {"status": "away"}}))
        .await;
    bob_on_c
        .send_json(json!({"type": "presence.ping", "data": {"status": "online"}}))
        .await;
    let (_, presence) = b.get(&alice, &format!("/users/{}/presence", bob.id)).await;
    assert_eq!(presence["status"], "online", "{presence}");

    // Gone from both nodes: offline, on every node, after the grace period.
    bob_on_a.stream.close(None).await.unwrap();
    bob_on_c.stream.close(None).await.unwrap();
    loop {
        let event = alice_on_b.next_of_type("presence.updated").await;
        if event["data"]["status"] == "offline" {
            assert!(event["data"]["lastSeenAt"].is_null(), "not shared");
            break;
        }
    }
    for node in [a, b, c] {
        let (_, presence) = node
            .get(&alice, &format!("/users/{}/presence", bob.id))
            .await;
        assert_eq!(presence["status"], "offline", "{presence}");
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_suspension_made_on_one_node_stops_the_next_message_on_another() {
    let nodes = spawn_cluster(2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let offender = a.user("candidate").await;
    let victim = a.user("recruiter").await;
    let admin = a.user("admin").await;
    let conversation = a.conversation(&victim, &offender).await;
    // b has the offender's (clean) record cached from this send.
    b.send(&offender, &conversation, "before").await;
    let (status, report) = a
        .post(
            &victim,
            "/chat/reports",
            json!({"reportedUserId": offender.id, "category": "harassment"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let (status, _) = a
        .post(
            &admin,
            &format!(
                "/admin/chat/reports/{}/action",
                report["id"].as_str().unwrap()
            ),
            json!({"action": "suspend", "durationHours": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = b
        .send_raw(&offender, &conversation, "after", &unique("cmid"))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "messaging_suspended")
    );
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn rate_limits_and_the_connection_cap_hold_across_nodes() {
    let nodes = spawn_cluster(3, |s| {
        s.limits.enabled = true;
        s.limits.messages_per_hour = 3;
        s.realtime.max_connections_per_user = 2;
    })
    .await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let alice = a.user("recruiter").await;
    let bob = a.user("candidate").await;
    let conversation = a.conversation(&alice, &bob).await;
    let first = unique("cmid");
    let (status, _) = a.send_raw(&alice, &conversation, "one", &first).await;
    assert_eq!(status, StatusCode::CREATED);
    // Retries, on any node, give their unit back to the shared quota.
    for node in [b, c] {
        let (status, _) = node.send_raw(&alice, &conversation, "one", &first).await;
        assert_eq!(status, StatusCode::OK);
    }
    a.send(&alice, &conversation, "two").await;
    b.send(&alice, &conversation, "three").await;
    let (status, body) = c
        .send_raw(&alice, &conversation, "four", &unique("cmid"))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "{body}"
    );

    let _on_a = a.ws(&bob).await;
    let mut on_b = b.ws(&bob).await;
    let mut third = c.ws(&bob).await;
    let (_, code) = third.drain_until_closed(Duration::from_secs(5)).await;
    assert_eq!(
        code,
        Some(parley::ws::connection::CLOSE_TOO_MANY_CONNECTIONS)
    );
    // Closing one makes room, on any node.
    on_b.stream.close(None).await.unwrap();
    on_b.drain_until_closed(Duration::from_secs(5)).await;
    // Bob's own message reaches his connections: the new one is admitted
    // once it is among them (his three messages bound the attempts).
    for attempt in 1..=3 {
        let mut again = c.ws(&bob).await;
        b.send(&bob, &conversation, "room again").await;
        let event = again.next_event_or_close(Duration::from_secs(2)).await;
        if event.is_some_and(|e| e["type"] == "message.created") {
            break;
        }
        assert!(attempt < 3, "no room after closing a connection");
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn an_sse_or_long_poll_client_resuming_on_another_node_is_told_to_resync() {
    let nodes = spawn_cluster(2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.user("recruiter").await;
    let bob = a.user("candidate").await;
    let conversation = a.conversation(&alice, &bob).await;
    let mut on_a = a.sse(&bob, None).await;
    a.send(&alice, &conversation, "seen on a").await;
    let (last_id, _) = on_a.next_of_type("message.created").await;
    let last_id = last_id.expect("SSE events carry ids");
    drop(on_a);

    // The ids of one node's stream mean nothing on another: never a silent gap.
    let mut on_b = b.sse(&bob, Some(&last_id)).await;
    let (_, notice) = on_b.next_event().await;
    assert_eq!(
        (notice["type"].as_str(), notice["data"]["code"].as_str()),
        (Some("system.notice"), Some("resync_required"))
    );
    let polled = b.poll(&bob, &format!("cursor={last_id}&timeout=1")).await;
    assert_eq!(polled["events"][0]["data"]["code"], "resync_required");
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_subscription_that_silently_stops_delivering_is_noticed_and_replaced() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _redis = own_redis(port).await;
    let proxy = TcpProxy::start(port).await;
    let direct = format!("redis://127.0.0.1:{port}");
    let through_proxy = format!("redis://127.0.0.1:{}", proxy.port);
    // a talks to Redis directly; b through the proxy that will go silent.
    let prefix = unique("parley-test");
    let node = |id: &'static str, url: String| {
        let prefix = prefix.clone();
        crate::helpers::spawn_app_with(move |s| {
            s.cluster.redis_url = Some(parley::config::Secret::new(url));
            s.cluster.redis_prefix = prefix;
            s.cluster.node_id = Some(id.into());
        })
    };
    let a = node("n0", direct).await;
    let b = node("n1", through_proxy).await;
    let alice = a.user("recruiter").await;
    let bob = a.user("candidate").await;
    let conversation = a.conversation(&alice, &bob).await;
    let mut bob_on_b = b.ws(&bob).await;
    a.send(&alice, &conversation, "before").await;
    bob_on_b.next_of_type("message.created").await;

    proxy.silence();
    // The probe notices, b reconnects, and bob is told to resync.
    let notice = bob_on_b.next_of_type("system.notice").await;
    assert_eq!(notice["data"]["code"], "resync_required");
    redis_reported(&b, "ok").await;
    let after = a.send(&alice, &conversation, "after").await;
    assert_eq!(
        bob_on_b.next_of_type("message.created").await["data"]["seq"],
        after["seq"]
    );
    a.shutdown().await;
    b.shutdown().await;
}
