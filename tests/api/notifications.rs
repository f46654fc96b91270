//! Notifications from the outbox: in process (no broker) and through the real
//! RabbitMQ. Each test runs on a database of its own, so that its jobs are run
//! by its own server (whose connections they are published to).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, drop_database, spawn_app_on_own_database, unique};

/// The RabbitMQ the tests use (`PARLEY_TEST_AMQP_URL`).
fn amqp_url() -> String {
    std::env::var("PARLEY_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

/// Deletes what a test declared on the broker (its queues and exchange).
async fn delete_topology(prefix: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut queues = vec![format!("{prefix}.notifications"), format!("{prefix}.dead")];
    for attempt in 1..parley::jobs::MAX_ATTEMPTS {
        let delay = parley::jobs::retry_delay(attempt).as_secs();
        queues.push(format!("{prefix}.notifications.retry.{delay}s"));
    }
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    channel
        .exchange_delete(prefix.into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
}

async fn notifications(app: &TestApp, user: &TestUser) -> Value {
    let (status, page) = app.get(user, "/notifications").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

/// Three messages, one collapsed notification pushed live; reading the
/// conversation reads it.
async fn messages_notify_once_per_conversation(app: &TestApp) {
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let conversation = app.conversation(&alice, &bob).await;
    let mut bob_ws = app.ws(&bob).await;
    for text in ["one", "two", "three"] {
        app.send(&alice, &conversation, text).await;
    }
    let mut latest = Value::Null;
    while latest["messageCount"] != 3 {
        latest = bob_ws.next_of_type("notification.created").await["data"].clone();
        assert_eq!(latest["type"], "new_message", "{latest}");
    }
    assert_eq!(latest["preview"], "three");
    assert_eq!(latest["actorId"], alice.id);
    let page = notifications(app, &bob).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["unreadCount"], 1);
    // Alice, the sender, hears nothing.
    assert_eq!(notifications(app, &alice).await["unreadCount"], 0);

    let (status, _) = app
        .post(
            &bob,
            &format!("/chat/conversations/{conversation}/read"),
            json!({"seq": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(notifications(app, &bob).await["unreadCount"], 0);
    // The next message starts a fresh notification.
    app.send(&alice, &conversation, "four").await;
    let fresh = bob_ws.next_of_type("notification.created").await;
    assert_eq!(fresh["data"]["messageCount"], 1);
    assert_ne!(fresh["data"]["id"], latest["id"]);
}

#[tokio::test]
async fn without_a_broker_the_node_runs_the_outbox_itself() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    messages_notify_once_per_conversation(&app).await;
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn through_rabbitmq_the_same_notifications_arrive() {
    let prefix = unique("parley-test").replace('-', "_");
    let (app, database) = spawn_app_on_own_database(|s| {
        s.jobs.amqp_url = Some(parley::config::Secret::new(amqp_url()));
        s.jobs.amqp_prefix = prefix.clone();
    })
    .await;
    messages_notify_once_per_conversation(&app).await;
    app.shutdown().await;
    delete_topology(&prefix).await;
    drop_database(&database).await;
}

#[tokio::test]
async fn requests_mute_archive_and_blocks_shape_who_hears_what() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let stranger = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let mut bob_ws = app.ws(&bob).await;
    let mut stranger_ws = app.ws(&stranger).await;

    // A message request notifies as such, once.
    let request = app.stranger_conversation(&stranger, &bob).await;
    app.send(&stranger, &request, "hello, are you available?")
        .await;
    let requested = bob_ws.next_of_type("notification.created").await;
    assert_eq!(requested["data"]["type"], "message_request");
    // Bob's reply accepts it: the stranger hears "accepted".
    app.send(&bob, &request, "yes").await;
    let accepted = stranger_ws.next_of_type("notification.created").await;
    assert_eq!(accepted["data"]["type"], "request_accepted");

    // Muted: nothing. Archived: nothing. Blocked: nothing.
    let carol = app.user("company").await;
    let muted = app.conversation(&carol, &bob).await;
    let (status, _) = app
        .post(
            &bob,
            &format!("/chat/conversations/{muted}/mute"),
            json!({}),
        )
        .await;
    assert!(status.is_success());
    app.send(&carol, &muted, "muted").await;
    let dave = app.user("company").await;
    let archived = app.conversation(&dave, &bob).await;
    app.send(&dave, &archived, "before archiving").await;
    bob_ws.next_of_type("notification.created").await;
    let (status, _) = app
        .post(
            &bob,
            &format!("/chat/conversations/{archived}/archive"),
            json!({}),
        )
        .await;
    assert!(status.is_success());
    app.send(&dave, &archived, "archived").await;
    let erin = app.user("company").await;
    let blocked = app.conversation(&erin, &bob).await;
    let (status, _) = app
        .post(&bob, "/chat/blocks", json!({"userId": erin.id}))
        .await;
    assert!(status.is_success());
    let (status, _) = app
        .send_raw(&erin, &blocked, "blocked", &unique("cmid"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A last message from someone else: the next notification Bob gets is
    // this one, so none came for the three above.
    let frank = app.user("company").await;
    let open = app.conversation(&frank, &bob).await;
    app.send(&frank, &open, "last").await;
    let next = bob_ws.next_of_type("notification.created").await;
    assert_eq!(next["data"]["preview"], "last", "{next}");
    let page = notifications(&app, &bob).await;
    let kinds: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["new_message", "new_message", "message_request"]);

    // Marking read: by id, then everything up to an id.
    let newest = page["items"][0]["id"].as_i64().unwrap();
    let (status, left) = app
        .post(&bob, "/notifications/read", json!({"ids": [newest]}))
        .await;
    assert_eq!(
        (status, left["unreadCount"].as_i64()),
        (StatusCode::OK, Some(2))
    );
    let (status, left) = app
        .post(&bob, "/notifications/read", json!({"upTo": newest}))
        .await;
    assert_eq!(
        (status, left["unreadCount"].as_i64()),
        (StatusCode::OK, Some(0))
    );
    let (status, _) = app.post(&bob, "/notifications/read", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn a_moderator_action_leaves_a_notification() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let offender = app.user("candidate").await;
    let victim = app.user("recruiter").await;
    let admin = app.user("admin").await;
    let conversation = app.conversation(&offender, &victim).await;
    app.send(&offender, &conversation, "buy my course").await;
    let (status, report) = app
        .post(
            &victim,
            "/chat/reports",
            json!({"reportedUserId": offender.id, "category": "spam"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let mut offender_ws = app.ws(&offender).await;
    let (status, _) = app
        .post(
            &admin,
            &format!(
                "/admin/chat/reports/{}/action",
                report["id"].as_str().unwrap()
            ),
            json!({"action": "warn", "note": "Keep it professional."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let notice = offender_ws.next_of_type("notification.created").await;
    assert_eq!(
        (
            notice["data"]["type"].as_str(),
            notice["data"]["preview"].as_str()
        ),
        (Some("moderation_notice"), Some("Keep it professional."))
    );
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn while_rabbitmq_is_away_sends_succeed_and_afterwards_every_notification_arrives_once() {
    let broker_port = amqp_url()
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse::<u16>().ok())
        .unwrap_or(5672);
    let proxy = crate::helpers::TcpProxy::start(broker_port).await;
    let through_proxy =
        amqp_url().replace(&format!(":{broker_port}/"), &format!(":{}/", proxy.port));
    let prefix = unique("parley-test").replace('-', "_");
    let (app, database) = spawn_app_on_own_database(|s| {
        s.jobs.amqp_url = Some(parley::config::Secret::new(through_proxy));
        s.jobs.amqp_prefix = prefix.clone();
    })
    .await;
    let bob = app.user("candidate").await;
    let mut bob_ws = app.ws(&bob).await;
    let mut senders = Vec::new();
    for _ in 0..3 {
        let sender = app.user("recruiter").await;
        let conversation = app.conversation(&sender, &bob).await;
        senders.push((sender, conversation));
    }

    proxy.cut();
    for (sender, conversation) in &senders {
        app.send(sender, conversation, "while the broker is away")
            .await;
    }
    let waiting = app
        .sql_i64(
            "SELECT count(*) FROM outbox WHERE kind = 'message_created'",
            &[],
        )
        .await;
    assert_eq!(waiting, 3, "the jobs wait in the outbox");

    proxy.restore();
    let mut conversations = Vec::new();
    for _ in 0..3 {
        let notification = bob_ws.next_of_type("notification.created").await;
        assert_eq!(notification["data"]["messageCount"], 1, "{notification}");
        conversations.push(
            notification["data"]["conversationId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    conversations.sort();
    conversations.dedup();
    assert_eq!(conversations.len(), 3, "one per conversation, none twice");
    let page = notifications(&app, &bob).await;
    assert_eq!(page["unreadCount"], 3);
    // The relay deletes its rows once the broker confirmed them: the
    // consumer may have run the jobs a moment before.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.sql_i64("SELECT count(*) FROM outbox", &[]).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never drained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.shutdown().await;
    delete_topology(&prefix).await;
    drop_database(&database).await;
}

/// A user whose token carries an email address.
async fn user_with_email(app: &TestApp, role: &str) -> TestUser {
    let id = unique(role);
    let token = app
        .keys
        .mint(
            &id,
            &format!("User {id}"),
            role,
            Some(&format!("{id}@example.test")),
            3600,
        )
        .unwrap();
    let user = TestUser { id, token };
    let (status, _) = app.get(&user, "/chat/conversations").await;
    assert_eq!(status, StatusCode::OK);
    user
}

#[tokio::test]
async fn people_who_are_away_get_one_email_per_conversation_and_nobody_else_does() {
    let mut sink = crate::helpers::SmtpSink::start().await;
    let (app, database) = spawn_app_on_own_database(|s| {
        s.mail.smtp_url = Some(parley::config::Secret::new(format!(
            "smtp://127.0.0.1:{}",
            sink.port
        )));
        s.mail.delay = std::time::Duration::from_secs(1);
        s.mail.batch = std::time::Duration::from_secs(3600);
        s.mail.public_url = "https://chat.example.test".into();
    })
    .await;
    let carol = user_with_email(&app, "recruiter").await;
    let online = user_with_email(&app, "candidate").await;
    let reader = user_with_email(&app, "candidate").await;
    let away = user_with_email(&app, "candidate").await;
    let stranger = user_with_email(&app, "company").await;

    // Someone connected gets no email; someone who reads in time neither.
    let _online_ws = app.ws(&online).await;
    let to_online = app.conversation(&carol, &online).await;
    app.send(&carol, &to_online, "you are here").await;
    let to_reader = app.conversation(&carol, &reader).await;
    app.send(&carol, &to_reader, "read me quickly").await;
    let (status, _) = app
        .post(
            &reader,
            &format!("/chat/conversations/{to_reader}/read"),
            json!({"seq": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Three messages to someone away: one email, listing them.
    let to_away = app.conversation(&carol, &away).await;
    for text in ["first", "second", "R&D <3"] {
        app.send(&carol, &to_away, text).await;
    }
    // A message request gets an email of its own.
    let request = app.stranger_conversation(&stranger, &away).await;
    app.send(&stranger, &request, "are you available?").await;

    let mut emails = Vec::new();
    while emails.len() < 2 {
        let email = tokio::time::timeout(std::time::Duration::from_secs(10), sink.received.recv())
            .await
            .expect("the emails arrive")
            .unwrap();
        assert!(
            !email.contains(&online.id) && !email.contains(&reader.id),
            "nobody present or caught up is emailed: {email}"
        );
        // Undo the quoted-printable line wrapping (and `=` escapes) of the parts.
        emails.push(email.replace("=\n", "").replace("=3D", "="));
    }
    let digest = emails
        .iter()
        .find(|e| e.contains("first"))
        .expect("the digest email");
    assert!(
        digest.contains(&format!("To: {}@example.test", away.id)),
        "{digest}"
    );
    assert!(digest.contains("second"));
    assert!(
        digest.contains("R&amp;D"),
        "the HTML part is escaped: {digest}"
    );
    assert!(
        digest.contains("List-Unsubscribe: <https://chat.example.test/settings/notifications>")
    );
    assert!(digest.contains(&format!(
        "https://chat.example.test/conversations/{to_away}"
    )));
    let requested = emails
        .iter()
        .find(|e| e.contains("are you available?"))
        .expect("the request email");
    let subject = requested
        .split("\nSubject: ")
        .nth(1)
        .and_then(|rest| rest.split("\nList-Unsubscribe").next())
        .unwrap_or_default()
        .replace("\n ", " ");
    assert!(subject.ends_with("sent you a message request"), "{subject}");
    // Nothing more: the batch window holds the next email about either.
    app.send(&carol, &to_away, "fourth").await;
    // (An email is logged as sent just after the SMTP server took it.)
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let logged = loop {
        let logged = app
            .sql_i64(
                "SELECT count(*) FROM email_log WHERE user_id = $1",
                &[&away.id],
            )
            .await;
        if logged >= 2 || tokio::time::Instant::now() > deadline {
            break logged;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(logged, 2);
    assert!(sink.received.try_recv().is_err());
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn preferences_switch_channels_off_and_quiet_hours_hold_emails_until_they_end() {
    let mut sink = crate::helpers::SmtpSink::start().await;
    let (app, database) = spawn_app_on_own_database(|s| {
        s.mail.smtp_url = Some(parley::config::Secret::new(format!(
            "smtp://127.0.0.1:{}",
            sink.port
        )));
        s.mail.delay = std::time::Duration::ZERO;
    })
    .await;
    let carol = user_with_email(&app, "recruiter").await;
    let quiet = user_with_email(&app, "candidate").await;
    let no_in_app = user_with_email(&app, "candidate").await;

    // Defaults: everything on, no quiet hours.
    let (status, defaults) = app.get(&quiet, "/users/me/notification-settings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        defaults["newMessage"],
        json!({"inApp": true, "email": true, "push": true})
    );
    assert_eq!(defaults["quietHours"], Value::Null);
    // Bad input is refused whole.
    for bad in [
        json!({"quietHours": {"start": "25:00", "end": "07:00", "timeZone": "UTC"}}),
        json!({"quietHours": {"start": "22:00", "end": "07:00", "timeZone": "Mars/Olympus"}}),
        json!({"newMessage": {"email": "sometimes"}}),
        json!({"unknownKind": {"email": false}}),
    ] {
        let (status, body) = app
            .patch(&quiet, "/users/me/notification-settings", bad.clone())
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad} -> {body}");
    }
    // Quiet now (an hour either side of the present, in UTC).
    let now = chrono::Utc::now();
    let hhmm = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M").to_string();
    let (status, set) = app
        .patch(
            &quiet,
            "/users/me/notification-settings",
            json!({"quietHours": {"start": hhmm(now - chrono::Duration::hours(1)),
                                  "end": hhmm(now + chrono::Duration::hours(1)), "timeZone": "UTC"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["newMessage"]["email"], true, "the rest is kept");
    let (status, _) = app
        .patch(
            &no_in_app,
            "/users/me/notification-settings",
            json!({"newMessage": {"inApp": false}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // No in-app notification for the one who switched it off (an email still goes).
    let to_no_in_app = app.conversation(&carol, &no_in_app).await;
    app.send(&carol, &to_no_in_app, "email only").await;
    let email = tokio::time::timeout(std::time::Duration::from_secs(10), sink.received.recv())
        .await
        .expect("an email")
        .unwrap();
    assert!(email.contains("email only"));
    assert_eq!(notifications(&app, &no_in_app).await["unreadCount"], 0);

    // During quiet hours emails wait (their due time moves to their end)…
    let to_quiet = app.conversation(&carol, &quiet).await;
    app.send(&carol, &to_quiet, "sent at night").await;
    let dave = user_with_email(&app, "recruiter").await;
    let from_dave = app.conversation(&dave, &quiet).await;
    app.send(&dave, &from_dave, "also at night").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let held = app
            .sql_i64(
                "SELECT count(*) FROM email_queue WHERE user_id = $1 AND due_at > now() + interval '30 minutes'",
                &[&quiet.id],
            )
            .await;
        if held == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the emails were never held"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        sink.received.try_recv().is_err(),
        "nothing went out at night"
    );
    // …and go out once they are over, as one digest of both conversations.
    app.clock.advance(chrono::Duration::minutes(61));
    let digest = tokio::time::timeout(std::time::Duration::from_secs(10), sink.received.recv())
        .await
        .expect("the held emails")
        .unwrap()
        .replace("=\n", "");
    assert!(digest.contains("sent at night"), "{digest}");
    assert!(digest.contains("also at night"), "{digest}");
    assert!(
        digest.contains("2 new messages in 2 conversations"),
        "{digest}"
    );
    for conversation in [&to_quiet, &from_dave] {
        assert!(digest.contains(&format!("/conversations/{conversation}")));
    }
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(1500), sink.received.recv())
            .await
            .is_err(),
        "one email, not one per conversation"
    );
    let logged = app
        .sql_i64(
            "SELECT count(DISTINCT sent_at) FROM email_log WHERE user_id = $1",
            &[&quiet.id],
        )
        .await;
    assert_eq!(logged, 1, "the hourly cap counts it once");
    app.shutdown().await;
    drop_database(&database).await;
}

/// npm's web-push-testing, a push service stand-in that checks each push's
/// VAPID signature and decrypts it (`PARLEY_TEST_PUSH_STAND_IN`: its
/// `server.js`, installed by scripts/test.sh).
struct PushStandIn {
    url: String,
    http: reqwest::Client,
    _server: tokio::process::Child,
}

impl PushStandIn {
    async fn start() -> Self {
        let script = std::env::var("PARLEY_TEST_PUSH_STAND_IN").expect(
            "PARLEY_TEST_PUSH_STAND_IN names web-push-testing's server.js (scripts/test.sh installs it)",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = tokio::process::Command::new("node")
            .arg(&script)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the push stand-in");
        let url = format!("http://127.0.0.1:{port}");
        parley::push::install_tls_provider();
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !http
            .post(format!("{url}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the push stand-in never started"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self {
            url,
            http,
            _server: server,
        }
    }

    /// A browser's subscription for `server_key`, and its id at the stand-in.
    async fn subscribe(&self, server_key: &str) -> (Value, String) {
        let response: Value = self
            .http
            .post(format!("{}/subscribe", self.url))
            .json(&json!({"userVisibleOnly": "true", "applicationServerKey": server_key}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = response["data"].clone();
        let client = data["clientHash"]
            .as_str()
            .expect("a subscription")
            .to_owned();
        (data, client)
    }

    /// The decrypted pushes `client` received, waiting (up to 10 s) for at least `count`.
    async fn received(&self, client: &str, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let response: Value = self
                .http
                .post(format!("{}/get-notifications", self.url))
                .json(&json!({"clientHash": client}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let messages: Vec<Value> = response["data"]["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|m| serde_json::from_str(m.as_str().unwrap()).unwrap())
                .collect();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} pushes never came"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn expire(&self, client: &str) {
        let response = self
            .http
            .post(format!("{}/expire-subscription/{client}", self.url))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
}

#[tokio::test]
async fn pushes_reach_browsers_encrypted_and_signed_and_a_gone_subscription_is_removed() {
    let stand_in = PushStandIn::start().await;
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (status, key) = app.anonymous_get("/push/vapid-public-key").await;
    assert_eq!(status, StatusCode::OK);
    let server_key = key["publicKey"].as_str().unwrap();
    let alice = app.user("recruiter").await;
    let bob = app.user("candidate").await;
    let conversation = app.conversation(&alice, &bob).await;

    let (subscription, client) = stand_in.subscribe(server_key).await;
    let (status, body) = app
        .post(&bob, "/users/me/push-subscriptions", subscription.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app
        .post(
            &bob,
            "/users/me/push-subscriptions",
            json!({"endpoint": "https://push.example/x", "keys": {"p256dh": "not-a-key", "auth": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Bob has no app open: the push arrives, decrypted by the stand-in.
    app.send(&alice, &conversation, "are you free on Monday?")
        .await;
    let pushes = stand_in.received(&client, 1).await;
    assert_eq!(pushes[0]["type"], "new_message");
    assert_eq!(pushes[0]["body"], "are you free on Monday?");
    assert_eq!(pushes[0]["title"], format!("User {}", alice.id));
    assert_eq!(pushes[0]["conversationId"], conversation.as_str());

    // With previews off, only who wrote.
    let (status, _) = app
        .patch(
            &bob,
            "/users/me/notification-settings",
            json!({"pushPreview": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.send(&alice, &conversation, "the secret plan").await;
    let pushes = stand_in.received(&client, 2).await;
    assert_eq!(pushes[1]["body"], "");

    // The browser unsubscribed at the push service: the next push is told 410
    // and the subscription is removed.
    stand_in.expire(&client).await;
    app.send(&alice, &conversation, "still there?").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app
        .sql_i64(
            "SELECT count(*) FROM push_subscriptions WHERE user_id = $1",
            &[&bob.id],
        )
        .await
        > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gone subscription stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn admins_see_dead_jobs_and_a_retried_one_runs() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let member = app.user("candidate").await;
    let admin = app.user("admin").await;
    // Two jobs that failed every attempt (as a runner buries them).
    let db = app.pool.get().await.unwrap();
    let mut buried = Vec::new();
    for note in ["first", "second"] {
        let job_id = uuid::Uuid::now_v7();
        db.execute(
            "INSERT INTO dead_jobs (job_id, kind, payload, attempts, last_error)
             VALUES ($1, 'moderation_notice', $2, 5, 'smtp timed out')",
            &[
                &job_id,
                &json!({"userId": member.id, "action": "warn", "note": note}),
            ],
        )
        .await
        .unwrap();
        buried.push(job_id.to_string());
    }
    let (status, _) = app.get(&member, "/admin/jobs/dead").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, first) = app.get(&admin, "/admin/jobs/dead?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        first["items"][0]["jobId"].as_str(),
        Some(buried[1].as_str())
    );
    assert_eq!(first["items"][0]["lastError"], "smtp timed out");
    assert_eq!(first["items"][0]["attempts"], 5);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = app
        .get(&admin, &format!("/admin/jobs/dead?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(
        second["items"][0]["jobId"].as_str(),
        Some(buried[0].as_str())
    );
    assert_eq!(second["hasMore"], false);
    let (status, bad) = app.get(&admin, "/admin/jobs/dead?cursor=x").await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_cursor"))
    );

    let mut member_ws = app.ws(&member).await;
    let retry = format!("/admin/jobs/dead/{}/retry", buried[0]);
    let (status, _) = app.post(&member, &retry, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app.post(&admin, &retry, json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let notice = member_ws.next_of_type("notification.created").await;
    assert_eq!(notice["data"]["preview"], "first");
    let (status, _) = app.post(&admin, &retry, json!({})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a job runs again once per retry"
    );
    let (_, left) = app.get(&admin, "/admin/jobs/dead").await;
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
    let (_, audit) = app
        .get(&admin, "/admin/chat/audit?action=job.retried")
        .await;
    assert_eq!(
        audit["items"][0]["targetId"].as_str(),
        Some(buried[0].as_str())
    );
    assert_eq!(
        audit["items"][0]["actorId"].as_str(),
        Some(admin.id.as_str())
    );
    app.shutdown().await;
    drop_database(&database).await;
}
