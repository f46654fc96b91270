//! Connection discipline: per-user limits, origin checks, graceful shutdown.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{JWT_SECRET, spawn_app, spawn_app_with, spawn_binary};

#[tokio::test]
async fn the_ninth_connection_of_a_user_is_refused_with_a_clear_close() {
    let app = spawn_app().await;
    let bob = app.user("candidate").await;
    let alice = app.user("recruiter").await;
    let id = app.conversation(&alice, &bob).await;
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(app.ws(&bob).await);
    }
    let mut ninth = app.ws(&bob).await;
    let (_, code) = ninth.drain_until_closed(Duration::from_secs(5)).await;
    assert_eq!(
        code,
        Some(parley::ws::connection::CLOSE_TOO_MANY_CONNECTIONS)
    );

    // The eight still work, and closing one makes room.
    app.send(&alice, &id, "still here").await;
    for socket in &mut open {
        assert_eq!(
            socket.next_of_type("message.created").await["data"]["body"],
            "still here"
        );
    }
    let mut first = open.remove(0);
    first.stream.close(None).await.unwrap();
    let _ = first.drain_until_closed(Duration::from_secs(5)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = app.ws(&bob).await;
        app.send(&alice, &id, "room again").await;
        let event = again.next_event_within(Duration::from_secs(2)).await;
        if event["type"] == "message.created" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no room after closing a connection"
        );
    }
}

#[tokio::test]
async fn cross_site_origins_are_refused() {
    let app = spawn_app().await;
    let bob = app.user("candidate").await;
    let host = format!("127.0.0.1:{}", app.port);
    let same_site = format!("http://{host}");
    assert!(
        app.ws_with_headers(&bob, &[]).await.is_ok(),
        "no Origin: not a browser"
    );
    assert!(
        app.ws_with_headers(&bob, &[("origin", same_site.as_str())])
            .await
            .is_ok()
    );
    assert_eq!(
        app.ws_with_headers(&bob, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(parley::ws::connection::CLOSE_FORBIDDEN),
        "refused with a code the page can read"
    );

    let listed =
        spawn_app_with(|s| s.realtime.allowed_origins = vec!["https://app.example.com".into()])
            .await;
    let carol = listed.user("candidate").await;
    assert!(
        listed
            .ws_with_headers(&carol, &[("origin", "https://app.example.com")])
            .await
            .is_ok()
    );
    assert_eq!(
        listed
            .ws_with_headers(&carol, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(parley::ws::connection::CLOSE_FORBIDDEN)
    );
}

#[tokio::test]
async fn sigterm_closes_every_socket_with_going_away_and_exits_cleanly() {
    let (mut server, port) = spawn_binary(&[]).await;
    parley::push::install_tls_provider();
    let http = reqwest::Client::new();

    let keys = parley::http::auth::JwtKeys::new(&parley::config::Secret::new(JWT_SECRET));
    let user = crate::helpers::unique("sigterm");
    let token = keys
        .mint(&user, "Sig Term", "candidate", None, 600)
        .unwrap();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://127.0.0.1:{port}/ws")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (stream, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        sockets.push(crate::helpers::WsClient { stream });
    }
    let conversations = http
        .get(format!("http://127.0.0.1:{port}/chat/conversations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(conversations.status(), StatusCode::OK);

    let pid = server.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    for socket in &mut sockets {
        let (_, code) = socket.drain_until_closed(Duration::from_secs(10)).await;
        assert_eq!(code, Some(parley::ws::connection::CLOSE_GOING_AWAY));
    }
    let status = tokio::time::timeout(Duration::from_secs(15), server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
}
