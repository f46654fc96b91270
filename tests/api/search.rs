//! Full-text search through the public API: only the caller's messages,
//! accents folded, the last word as a prefix, the block/archive/decline
//! and redaction rules, pages, snippets.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, error_code, spawn_app};

async fn search(app: &TestApp, user: &TestUser, query: &str) -> Value {
    let (status, page) = app.get(user, &format!("/chat/search?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

fn bodies(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["message"]["body"].as_str().unwrap().to_owned())
        .collect()
}

fn q(text: &str) -> String {
    format!("q={}", parley::blobs::percent_encode(text))
}

#[tokio::test]
async fn search_finds_only_the_callers_messages_with_accents_folded_and_prefixes() {
    let app = spawn_app().await;
    let (alice, bob, eve) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("candidate").await,
    );
    let ours = app.conversation(&alice, &bob).await;
    let theirs = app.conversation(&eve, &bob).await;
    app.send(
        &bob,
        &ours,
        "Let us meet at the Café in Zürich for the interview",
    )
    .await;
    app.send(&alice, &ours, "Great, see you there").await;
    app.send(&bob, &theirs, "Eve, the café interview is cancelled")
        .await;

    for typed in [
        "cafe",
        "CAFÉ zurich",
        "intervi",
        "café interv",
        "\"the cafe\"",
    ] {
        let page = search(&app, &alice, &q(typed)).await;
        assert_eq!(
            bodies(&page),
            vec!["Let us meet at the Café in Zürich for the interview"],
            "{typed}"
        );
    }
    let page = search(&app, &alice, &q("zurich")).await;
    let hit = &page["items"][0];
    assert_eq!(hit["message"]["conversationId"], ours.as_str());
    assert_eq!(hit["message"]["seq"], 1);
    assert_eq!(hit["conversation"]["otherParticipantId"], bob.id.as_str());
    let snippet: Vec<char> = hit["snippet"].as_str().unwrap().chars().collect();
    let marked: Vec<String> = hit["highlights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (from, to) = (
                r[0].as_u64().unwrap() as usize,
                r[1].as_u64().unwrap() as usize,
            );
            snippet[from..to].iter().collect()
        })
        .collect();
    assert_eq!(marked, vec!["Zürich"], "the accented original is marked");
    // Nothing of anyone else's; one conversation of someone else's finds nothing.
    assert!(bodies(&search(&app, &alice, &q("cancelled")).await).is_empty());
    let page = search(
        &app,
        &alice,
        &format!("{}&conversationId={theirs}", q("interview")),
    )
    .await;
    assert!(bodies(&page).is_empty());
    let page = search(
        &app,
        &bob,
        &format!("{}&conversationId={theirs}", q("interview")),
    )
    .await;
    assert_eq!(bodies(&page), vec!["Eve, the café interview is cancelled"]);
    for bad in ["q=", "q=%20%20", &q(&"a".repeat(201)), "q=a%0Ab"] {
        let (status, body) = app.get(&alice, &format!("/chat/search?{bad}")).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_query"),
            "{bad}"
        );
    }
    // Nothing to look for (no letter or digit): nothing found.
    let (status, page) = app.get(&alice, "/chat/search?q=%22%22%20-").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"], json!([]));
    app.shutdown().await;
}

#[tokio::test]
async fn redacted_archived_blocked_and_declined_stay_out_and_pages_go_on() {
    let app = spawn_app().await;
    let (alice, bob, carol, dan, admin) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("recruiter").await,
        app.user("company").await,
        app.user("admin").await,
    );
    let with_bob = app.conversation(&alice, &bob).await;
    let with_carol = app.conversation(&alice, &carol).await;
    for n in 1..=3 {
        app.send(&bob, &with_bob, &format!("portfolio draft {n}"))
            .await;
    }
    let removed = app.send(&bob, &with_bob, "portfolio with a slur").await;
    app.send(&carol, &with_carol, "portfolio from carol").await;
    let request = app.stranger_conversation(&dan, &alice).await;
    app.send(&dan, &request, "portfolio from a stranger").await;

    // Pages, newest first.
    let first = search(&app, &alice, &format!("{}&limit=3", q("portfolio"))).await;
    assert_eq!(
        bodies(&first),
        vec![
            "portfolio from a stranger",
            "portfolio from carol",
            "portfolio with a slur"
        ]
    );
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = search(
        &app,
        &alice,
        &format!("{}&limit=3&cursor={cursor}", q("portfolio")),
    )
    .await;
    assert_eq!(
        bodies(&second),
        vec![
            "portfolio draft 3",
            "portfolio draft 2",
            "portfolio draft 1"
        ]
    );
    assert_eq!(second["hasMore"], false);

    // Redacted: never found.
    let (status, _) = app
        .post(
            &admin,
            &format!(
                "/admin/chat/messages/{}/redact",
                removed["id"].as_str().unwrap()
            ),
            json!({"reason": "abuse"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Declined: gone; archived and blocked: only when asked.
    let (status, _) = app
        .post(
            &alice,
            &format!("/chat/conversations/{request}/decline"),
            json!({}),
        )
        .await;
    assert!(status.is_success());
    let (status, _) = app
        .post(
            &alice,
            &format!("/chat/conversations/{with_carol}/archive"),
            json!({}),
        )
        .await;
    assert!(status.is_success());
    let (status, _) = app
        .post(&alice, "/chat/blocks", json!({"userId": bob.id}))
        .await;
    assert!(status.is_success());
    assert!(bodies(&search(&app, &alice, &q("portfolio")).await).is_empty());
    let all = search(
        &app,
        &alice,
        &format!("{}&includeArchived=true", q("portfolio")),
    )
    .await;
    assert_eq!(
        bodies(&all),
        vec![
            "portfolio from carol",
            "portfolio draft 3",
            "portfolio draft 2",
            "portfolio draft 1"
        ]
    );
    app.shutdown().await;
}
