//! Context threads: one group conversation per booking or dispute, its
//! members set by the platform, with everything 1:1 conversations have.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestUser, drop_database, error_code, spawn_app, spawn_app_on_own_database,
    spawn_app_with, unique,
};

/// Sets a booking's thread to exactly `members` (user, role).
async fn put_thread(
    app: &TestApp,
    booking: &str,
    members: &[(&TestUser, &str)],
) -> (StatusCode, Value) {
    let members: Vec<Value> = members
        .iter()
        .map(|(user, role)| json!({ "userId": user.id, "role": role }))
        .collect();
    app.platform(
        Method::PUT,
        &format!("/internal/contexts/booking/{booking}"),
        json!({ "title": format!("Booking {booking}"), "thread": { "members": members } }),
    )
    .await
}

/// A booking thread of `members`; returns its conversation id.
async fn thread(app: &TestApp, booking: &str, members: &[(&TestUser, &str)]) -> String {
    let (status, body) = put_thread(app, booking, members).await;
    assert!(status.is_success(), "{status} {body}");
    body["thread"]["conversationId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn share_receipts(app: &TestApp, user: &TestUser) {
    let (status, body) = app
        .patch(user, "/users/me/settings", json!({ "readReceipts": true }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn view(app: &TestApp, user: &TestUser, conversation: &str) -> Value {
    let (status, body) = app
        .get(user, &format!("/chat/conversations/{conversation}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn history(app: &TestApp, user: &TestUser, conversation: &str) -> Vec<Value> {
    let (status, body) = app
        .get(
            user,
            &format!("/chat/conversations/{conversation}/messages"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn bodies(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_booking_thread_of_six_talks_with_unread_counts_and_receipts_per_member() {
    let app = spawn_app().await;
    let roles = [
        "worker",
        "supervisor",
        "borrower_admin",
        "borrower_manager",
        "lender_admin",
        "lender_manager",
    ];
    let mut users = Vec::new();
    for role in roles {
        users.push((app.user("company").await, role));
    }
    let members: Vec<(&TestUser, &str)> = users.iter().map(|(u, r)| (u, *r)).collect();
    let booking = unique("booking");
    let (status, created) = put_thread(&app, &booking, &members).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let conversation = created["thread"]["conversationId"].as_str().unwrap();
    let joins = created["thread"]["systemMessages"].as_array().unwrap();
    assert_eq!(joins.len(), 6, "one system message per member: {created}");
    assert_eq!(joins[0]["kind"], "system");
    assert_eq!(joins[0]["system"]["event"], "member.joined");
    assert_eq!(joins[0]["system"]["role"], "worker");
    assert_eq!(joins[5]["seq"], 6);

    // The platform calls again with the same members: same thread, nothing said.
    let (status, again) = put_thread(&app, &booking, &members).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["thread"]["conversationId"], conversation);
    assert_eq!(again["thread"]["systemMessages"], json!([]));

    let (worker, supervisor, admin) = (&users[0].0, &users[1].0, &users[2].0);
    for (user, _) in &users[..3] {
        share_receipts(&app, user).await;
    }
    let mut supervisor_ws = app.ws(supervisor).await;
    let sent = app.send(worker, conversation, "On site at 8, gate B").await;
    assert_eq!(sent["seq"], 7);
    let event = supervisor_ws.next_of_type("message.created").await;
    assert_eq!(event["data"]["id"], sent["id"]);

    // Everyone else has one unread message; the worker none. The inbox
    // shows the thread with its banner and member count.
    for (user, _) in &users[1..] {
        let conv = view(&app, user, conversation).await;
        assert_eq!(conv["unreadCount"], 1, "{conv}");
        assert_eq!(conv["kind"], "group");
        assert_eq!(conv["memberCount"], 6);
        assert_eq!(conv["otherParticipant"], Value::Null);
        assert_eq!(conv["context"]["title"], format!("Booking {booking}"));
    }
    assert_eq!(view(&app, worker, conversation).await["unreadCount"], 0);
    let (_, inbox) = app.get(admin, "/chat/conversations").await;
    assert_eq!(inbox["items"][0]["id"], conversation, "{inbox}");

    // The supervisor reads: the worker (receipts on) is told; "seen by".
    let mut worker_ws = app.ws(worker).await;
    let (status, read) = app
        .post(
            supervisor,
            &format!("/chat/conversations/{conversation}/read"),
            json!({ "seq": 7 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["unreadCount"], 0);
    let receipt = worker_ws.next_of_type("read.receipt").await;
    assert_eq!(receipt["data"]["userId"], supervisor.id.as_str());
    assert_eq!(receipt["data"]["seq"], 7);
    let (status, listed) = app
        .get(
            worker,
            &format!("/chat/conversations/{conversation}/members"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 6);
    let seen_by: Vec<&str> = listed
        .iter()
        .filter(|m| m["id"] != worker.id.as_str() && m["lastReadSeq"].as_i64() >= Some(7))
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen_by, vec![supervisor.id.as_str()], "seen by 1 of 5");
    let lender = listed
        .iter()
        .find(|m| m["threadRole"] == "lender_admin")
        .unwrap();
    assert_eq!(lender["lastReadSeq"], Value::Null, "no receipts shared");

    // Typing: two members at once, each seen by the others.
    let mut admin_ws = app.ws(admin).await;
    for typist in [worker, supervisor] {
        let (status, _) = app
            .post(
                typist,
                &format!("/chat/conversations/{conversation}/typing"),
                json!({ "state": "started" }),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let first = admin_ws.next_of_type("typing.started").await;
    let second = admin_ws.next_of_type("typing.started").await;
    let mut typists = [
        first["data"]["userId"].clone(),
        second["data"]["userId"].clone(),
    ];
    typists.sort_by_key(|v| v.to_string());
    let mut expected = [json!(worker.id), json!(supervisor.id)];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(typists, expected);

    // Idempotent sends, as in 1:1.
    let (status, first) = app
        .send_raw(admin, conversation, "Confirmed", "adm-1")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, repeat) = app
        .send_raw(admin, conversation, "Confirmed", "adm-1")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repeat["id"], first["id"]);
    assert_eq!(repeat["seq"], 8);
}

#[tokio::test]
async fn a_member_added_later_reads_the_history_and_a_removed_one_loses_it_at_once() {
    let app = spawn_app().await;
    let (a, b, c, d) = (
        app.user("company").await,
        app.user("company").await,
        app.user("candidate").await,
        app.user("company").await,
    );
    let booking = unique("booking");
    let conversation = thread(
        &app,
        &booking,
        &[(&a, "worker"), (&b, "supervisor"), (&c, "party")],
    )
    .await;
    app.send(&a, &conversation, "before d joined").await;

    // D joins: the whole history, nothing of it unread, and a system message.
    let mut b_ws = app.ws(&b).await;
    let mut d_ws = app.ws(&d).await;
    let (status, changed) = put_thread(
        &app,
        &booking,
        &[
            (&a, "worker"),
            (&b, "supervisor"),
            (&c, "party"),
            (&d, "lender_admin"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let joined = b_ws.next_of_type("message.created").await;
    assert_eq!(joined["data"]["system"]["event"], "member.joined");
    assert_eq!(joined["data"]["system"]["userId"], d.id.as_str());
    let welcome = d_ws.next_of_type("conversation.updated").await;
    assert_eq!(welcome["data"]["conversationId"], conversation.as_str());
    let seen = history(&app, &d, &conversation).await;
    assert!(bodies(&seen).contains(&"before d joined"), "{seen:?}");
    let d_view = view(&app, &d, &conversation).await;
    assert_eq!(d_view["unreadCount"], 0, "{d_view}");
    assert_eq!(d_view["memberCount"], 4);

    // C is removed: told at once, then nothing more; the thread is a 404.
    let mut c_ws = app.ws(&c).await;
    let (_, synced) = app.get(&c, "/chat/sync").await;
    let cursor = synced["cursor"].as_str().unwrap().to_owned();
    let (status, changed) = put_thread(
        &app,
        &booking,
        &[(&a, "worker"), (&b, "supervisor"), (&d, "lender_admin")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let left = &changed["thread"]["systemMessages"][0];
    assert_eq!(left["system"]["event"], "member.left");
    assert_eq!(left["system"]["userId"], c.id.as_str());
    let gone = c_ws.next_of_type("conversation.updated").await;
    assert_eq!(gone["data"]["removed"], true, "{gone}");
    assert_eq!(
        b_ws.next_of_type("message.created").await["data"]["id"],
        left["id"]
    );

    app.send(&a, &conversation, "after c left").await;
    c_ws.assert_silent(Duration::from_millis(500)).await;
    for path in [
        format!("/chat/conversations/{conversation}"),
        format!("/chat/conversations/{conversation}/messages"),
        format!("/chat/conversations/{conversation}/members"),
    ] {
        let (status, body) = app.get(&c, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, body) = app
        .send_raw(&c, &conversation, "still here?", &unique("c"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, inbox) = app.get(&c, "/chat/conversations").await;
    assert!(
        inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != conversation.as_str()),
        "{inbox}"
    );
    let (status, body) = app
        .get(
            &c,
            &format!("/chat/search?q=after&conversationId={conversation}"),
        )
        .await;
    assert!(
        status == StatusCode::NOT_FOUND || body["items"] == json!([]),
        "{status} {body}"
    );
    assert_eq!(view(&app, &a, &conversation).await["memberCount"], 3);
    // A client that missed the event learns it from its next sync.
    let (status, synced) = app.get(&c, &format!("/chat/sync?since={cursor}")).await;
    assert_eq!(status, StatusCode::OK, "{synced}");
    assert_eq!(synced["removed"], json!([conversation]), "{synced}");
}

#[tokio::test]
async fn members_open_their_thread_by_its_context_and_outsiders_are_refused() {
    let app = spawn_app().await;
    let (member, outsider) = (app.user("company").await, app.user("company").await);
    let booking = unique("booking");
    let conversation = thread(&app, &booking, &[(&member, "worker")]).await;
    let context = json!({ "type": "booking", "id": booking });
    let (status, opened) = app
        .post(
            &member,
            "/chat/conversations",
            json!({ "context": context }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    assert_eq!(opened["id"], conversation.as_str());
    let (status, body) = app
        .post(
            &outsider,
            "/chat/conversations",
            json!({ "context": context }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "not_a_member");
    let nowhere = json!({ "type": "booking", "id": unique("none") });
    let (status, body) = app
        .post(
            &member,
            "/chat/conversations",
            json!({ "context": nowhere }),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "not_a_member")
    );
    // A thread is never a direct conversation's context twice over: the
    // database holds one thread per context.
    let count = app
        .sql_i64(
            "SELECT count(*) FROM conversations WHERE kind = 'group' AND context_id = $1",
            &[&booking],
        )
        .await;
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_block_in_a_thread_hides_the_blocked_member_from_the_blocker_only() {
    let app = spawn_app().await;
    let (blocker, blocked, other) = (
        app.user("company").await,
        app.user("candidate").await,
        app.user("company").await,
    );
    let conversation = thread(
        &app,
        &unique("dispute"),
        &[(&blocker, "party"), (&blocked, "party"), (&other, "party")],
    )
    .await;
    app.send(&blocked, &conversation, "said before the block")
        .await;
    let (status, body) = app
        .post(&blocker, "/chat/blocks", json!({ "userId": blocked.id }))
        .await;
    assert!(status.is_success(), "{status} {body}");

    let mut blocker_ws = app.ws(&blocker).await;
    let mut other_ws = app.ws(&other).await;
    let mut blocked_ws = app.ws(&blocked).await;
    // The blocked member still speaks in the business thread…
    let unheard = app
        .send(&blocked, &conversation, "you cannot hear me")
        .await;
    assert_eq!(
        other_ws.next_of_type("message.created").await["data"]["id"],
        unheard["id"]
    );
    // …and typing, but the blocker hears neither.
    app.post(
        &blocked,
        &format!("/chat/conversations/{conversation}/typing"),
        json!({ "state": "started" }),
    )
    .await;
    other_ws.next_of_type("typing.started").await;
    let heard = app.send(&other, &conversation, "everyone hears me").await;
    let first = blocker_ws.next_event().await;
    assert_eq!(first["type"], "message.created", "{first}");
    assert_eq!(
        first["data"]["id"], heard["id"],
        "nothing of the blocked member first"
    );

    // History and search leave the blocked member out, for the blocker only.
    let blocker_view = history(&app, &blocker, &conversation).await;
    let seen = bodies(&blocker_view);
    assert!(!seen.contains(&"you cannot hear me"), "{seen:?}");
    assert!(!seen.contains(&"said before the block"), "{seen:?}");
    assert!(seen.contains(&"everyone hears me"));
    let others_view = history(&app, &other, &conversation).await;
    assert!(bodies(&others_view).contains(&"you cannot hear me"));
    let (_, found) = app.get(&blocker, "/chat/search?q=hear").await;
    let found: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(found, vec!["everyone hears me"]);

    // Unread counts leave out what the blocker cannot see: the message sent
    // after the block never counted; the one before counts until the next
    // read recounts.
    assert_eq!(view(&app, &blocker, &conversation).await["unreadCount"], 2);
    let (status, read) = app
        .post(
            &blocker,
            &format!("/chat/conversations/{conversation}/read"),
            json!({ "seq": unheard["seq"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["unreadCount"], 1, "only 'everyone hears me': {read}");

    // The blocked member is not told: the blocker's messages still reach them.
    let said = app.send(&blocker, &conversation, "hello all").await;
    loop {
        let reached = blocked_ws.next_of_type("message.created").await;
        if reached["data"]["id"] == said["id"] {
            break;
        }
    }
    let blocked_view = history(&app, &blocked, &conversation).await;
    assert!(bodies(&blocked_view).contains(&"hello all"));
}

#[tokio::test]
async fn the_platform_posts_system_messages_once_and_only_to_threads() {
    let app = spawn_app().await;
    let (a, b) = (app.user("company").await, app.user("company").await);
    let conversation = thread(
        &app,
        &unique("booking"),
        &[(&a, "worker"), (&b, "supervisor")],
    )
    .await;
    let path = format!("/internal/conversations/{conversation}/system-messages");
    let body = json!({ "body": "Booking confirmed for Monday", "kind": "booking.confirmed", "clientMessageId": unique("sys") });
    let mut ws = app.ws(&a).await;
    let (status, posted) = app.platform(Method::POST, &path, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    assert_eq!(posted["kind"], "system");
    assert_eq!(posted["system"]["event"], "booking.confirmed");
    assert_eq!(posted["seq"], 3);
    assert_eq!(
        ws.next_of_type("message.created").await["data"]["id"],
        posted["id"]
    );
    let (status, repeat) = app.platform(Method::POST, &path, body).await;
    assert_eq!(status, StatusCode::OK, "{repeat}");
    assert_eq!(repeat["id"], posted["id"]);
    // System messages tell; they are not unread messages from someone.
    assert_eq!(view(&app, &a, &conversation).await["unreadCount"], 0);
    assert_eq!(app.stored_messages(&conversation).await, 3);

    let bad_kind = json!({ "body": "x", "kind": "<b>" });
    let (status, body) = app.platform(Method::POST, &path, bad_kind).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_kind")
    );
    let direct = app.conversation(&a, &b).await;
    let fine = json!({ "body": "x", "kind": "note" });
    for target in [direct, uuid::Uuid::now_v7().to_string(), "nope".into()] {
        let (status, body) = app
            .platform(
                Method::POST,
                &format!("/internal/conversations/{target}/system-messages"),
                fine.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{target}: {body}");
    }
    let unauthenticated = app
        .http
        .post(app.url(&path))
        .json(&fine)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn member_lists_are_bounded_checked_and_change_nothing_when_refused() {
    let app = spawn_app_with(|s| s.chat.max_thread_members = 3).await;
    let users = [
        app.user("company").await,
        app.user("company").await,
        app.user("company").await,
        app.user("company").await,
    ];
    let booking = unique("booking");
    let conversation = thread(
        &app,
        &booking,
        &[(&users[0], "worker"), (&users[1], "supervisor")],
    )
    .await;
    let too_many: Vec<(&TestUser, &str)> = users.iter().map(|u| (u, "party")).collect();
    let (status, body) = put_thread(&app, &booking, &too_many).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "too_many_members")
    );
    let (status, body) = put_thread(
        &app,
        &booking,
        &[(&users[0], "worker"), (&users[0], "party")],
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "duplicate_member")
    );
    let (status, body) = put_thread(&app, &booking, &[(&users[0], "Not A Role")]).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_role")
    );
    let (status, body) = app
        .platform(
            Method::PUT,
            &format!("/internal/contexts/booking/{booking}"),
            json!({ "thread": { "members": [{ "userId": unique("ghost"), "role": "worker" }] } }),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_user")
    );
    // Nothing changed.
    let members = app
        .get(
            &users[0],
            &format!("/chat/conversations/{conversation}/members"),
        )
        .await
        .1;
    assert_eq!(members.as_array().unwrap().len(), 2, "{members}");
    assert_eq!(app.stored_messages(&conversation).await, 2);
}

/// Notifications come from the outbox, whose jobs any server on a shared
/// database may run: this test has a database of its own.
#[tokio::test]
async fn members_are_notified_once_per_thread_except_of_whom_they_block() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (worker, away, blocker) = (
        app.user("company").await,
        app.user("company").await,
        app.user("company").await,
    );
    let conversation = thread(
        &app,
        &unique("booking"),
        &[
            (&worker, "worker"),
            (&away, "supervisor"),
            (&blocker, "party"),
        ],
    )
    .await;
    let (status, _) = app
        .post(&blocker, "/chat/blocks", json!({ "userId": worker.id }))
        .await;
    assert!(status.is_success());
    let mut away_ws = app.ws(&away).await;
    for text in ["one", "two"] {
        app.send(&worker, &conversation, text).await;
    }
    let mut latest = Value::Null;
    while latest["messageCount"] != 2 {
        latest = away_ws.next_of_type("notification.created").await["data"].clone();
        assert_eq!(latest["conversationId"], conversation.as_str(), "{latest}");
    }
    let (_, page) = app.get(&away, "/notifications").await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "one per thread: {page}"
    );
    // The blocker hears of the others, never of the member they block; the
    // platform's system messages notify nobody.
    app.platform(
        Method::POST,
        &format!("/internal/conversations/{conversation}/system-messages"),
        json!({ "body": "Booking moved to Tuesday", "kind": "booking.moved" }),
    )
    .await;
    app.send(&away, &conversation, "three").await;
    let page = app
        .get_until(&blocker, "/notifications", |page| page["unreadCount"] == 1)
        .await;
    assert_eq!(page["items"][0]["actorId"], away.id.as_str(), "{page}");
    assert_eq!(page["items"][0]["messageCount"], 1, "{page}");
    app.shutdown().await;
    drop_database(&database).await;
}

/// A change of a member's role alone is stored and answered (it says
/// nothing in the thread); it used to be taken for a lost write and
/// answered 503.
#[tokio::test]
async fn a_change_of_role_alone_is_stored_and_says_nothing() {
    let app = spawn_app().await;
    let (worker, boss) = (app.user("candidate").await, app.user("company").await);
    let booking = unique("booking");
    let id = thread(
        &app,
        &booking,
        &[(&worker, "worker"), (&boss, "supervisor")],
    )
    .await;
    let before = history(&app, &boss, &id).await.len();
    let (status, body) =
        put_thread(&app, &booking, &[(&worker, "lead"), (&boss, "supervisor")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let roles: Vec<(&str, &str)> = body["thread"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["userId"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert!(roles.contains(&(worker.id.as_str(), "lead")), "{roles:?}");
    let (status, members) = app
        .get(&boss, &format!("/chat/conversations/{id}/members"))
        .await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert!(members.to_string().contains("\"lead\""), "{members}");
    assert_eq!(
        history(&app, &boss, &id).await.len(),
        before,
        "nothing said"
    );
    // And the thread goes on: the next message takes the next seq.
    app.send(&boss, &id, "welcome, lead").await;
    app.shutdown().await;
}
