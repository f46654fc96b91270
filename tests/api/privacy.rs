//! A person's data: erasure (anonymised profile, purged bodies, closed
//! sessions, others' data intact, held conversations kept until released).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{drop_database, error_code, spawn_app_on_own_database},
    retention::run_job,
};

#[tokio::test]
async fn erasure_anonymises_and_redacts_but_leaves_others_and_held_conversations() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (alice, bob, carol, admin) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("company").await,
        app.user("admin").await,
    );
    let ours = app.conversation(&alice, &bob).await;
    app.send(&alice, &ours, "call me on 555 0101").await;
    app.send(&bob, &ours, "will do").await;
    let disputed = app.conversation(&alice, &carol).await;
    app.send(&alice, &disputed, "the evidence").await;
    let hold = format!("/admin/chat/conversations/{disputed}/hold");
    let (status, _) = app.post(&admin, &hold, json!({"reason": "dispute"})).await;
    assert_eq!(status, StatusCode::OK);
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_ws = app.ws(&bob).await;

    let erase = format!("/admin/users/{}", alice.id);
    let (status, _) = app
        .delete_with(&bob, &erase, json!({"reason": "GDPR request"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .delete_with(&admin, &erase, json!({"reason": " "}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_note")
    );
    let (status, body) = app
        .delete_with(&admin, "/admin/users/nobody-at-all", json!({"reason": "x"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, erased) = app
        .delete_with(&admin, &erase, json!({"reason": "GDPR request #7"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(
        (
            erased["messagesRedacted"].as_i64(),
            erased["messagesHeld"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let (status, body) = app
        .delete_with(&admin, &erase, json!({"reason": "again"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "already_erased")
    );

    // Alice's sessions are closed, and her token opens nothing any more.
    let (_, code) = alice_ws.drain_until_closed(Duration::from_secs(10)).await;
    assert!(code.is_some());
    let (status, body) = app.get(&alice, "/chat/conversations").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "account_erased")
    );

    // Bob sees her message redacted at once, his own intact, and her anonymised.
    let updated = bob_ws.next_of_type("message.updated").await;
    assert_eq!(updated["data"]["redacted"], true);
    let (_, page) = app
        .get(&bob, &format!("/chat/conversations/{ours}/messages"))
        .await;
    let mut bodies: Vec<(i64, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    bodies.sort();
    assert_eq!(bodies[1].1, "will do");
    assert_ne!(bodies[0].1, "call me on 555 0101");
    let (_, view) = app.get(&bob, &format!("/chat/conversations/{ours}")).await;
    assert_eq!(view["otherParticipant"]["name"], "Deleted user");
    let leftovers = app
        .sql_i64(
            "SELECT count(*) FROM messages WHERE body LIKE '%555 0101%'",
            &[],
        )
        .await;
    assert_eq!(leftovers, 0);

    // The held conversation keeps her words until the hold ends; retention
    // purges them then.
    let (_, page) = app
        .get(&carol, &format!("/chat/conversations/{disputed}/messages"))
        .await;
    assert_eq!(page["items"][0]["body"], "the evidence");
    let (status, _) = app.delete(&admin, &hold).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let run = run_job(&app, &admin, "message_retention").await;
    assert_eq!(run["rowsTouched"], 1, "{run}");
    let (_, page) = app
        .get(&carol, &format!("/chat/conversations/{disputed}/messages"))
        .await;
    assert_eq!(page["items"][0]["redacted"], true);

    // The audit log keeps the fact and the reason, not the data.
    let (_, audit) = app
        .get(&admin, "/admin/chat/audit?action=user.erased")
        .await;
    let entry = &audit["items"][0];
    assert_eq!(
        (entry["targetId"].as_str(), entry["actorId"].as_str()),
        (Some(alice.id.as_str()), Some(admin.id.as_str()))
    );
    assert_eq!(entry["details"], json!({"reason": "GDPR request #7"}));
    app.shutdown().await;
    drop_database(&database).await;
}

/// Waits until the export at `path` is no longer pending or running.
async fn finished_export(
    app: &crate::helpers::TestApp,
    user: &crate::helpers::TestUser,
    path: &str,
) -> serde_json::Value {
    app.get_until(user, path, |export| {
        export["status"] != "pending" && export["status"] != "running"
    })
    .await
}

#[tokio::test]
async fn an_export_holds_exactly_what_the_user_may_see() {
    let app = crate::helpers::spawn_app().await;
    let (alice, bob, carol, admin) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("company").await,
        app.user("admin").await,
    );
    let ours = app.conversation(&alice, &bob).await;
    app.send(&alice, &ours, "my portfolio is attached").await;
    let rude = app.send(&bob, &ours, "a rude remark").await;
    app.send(&bob, &ours, "sorry, when can you start?").await;
    let (status, _) = app
        .post(
            &admin,
            &format!(
                "/admin/chat/messages/{}/redact",
                rude["id"].as_str().unwrap()
            ),
            json!({"reason": "abuse"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post(
            &alice,
            "/chat/reports",
            json!({"reportedUserId": bob.id, "conversationId": ours, "category": "harassment",
                   "description": "rude"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .post(&alice, "/chat/blocks", json!({"userId": carol.id}))
        .await;
    assert!(status.is_success());
    let theirs = app.conversation(&bob, &carol).await;
    app.send(&carol, &theirs, "between bob and carol only")
        .await;

    let (status, started) = app.post(&alice, "/users/me/export", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert!(["pending", "running", "ready"].contains(&started["status"].as_str().unwrap()));
    let path = format!("/users/me/exports/{}", started["id"].as_str().unwrap());
    let (status, _) = app.get(&bob, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nobody else's");
    let export = finished_export(&app, &alice, &path).await;
    assert_eq!(export["status"], "ready", "{export}");
    let url = export["downloadUrl"].as_str().unwrap();
    let response = app.http.get(app.url(url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();

    assert_eq!(document["profile"]["id"], alice.id.as_str());
    let conversations = document["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1, "only hers");
    let bodies: Vec<&str> = conversations[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[0], "my portfolio is attached");
    assert_eq!(bodies[2], "sorry, when can you start?");
    assert!(!text.contains("a rude remark"), "redacted as she sees it");
    assert!(
        !text.contains("between bob and carol"),
        "never others' conversations"
    );
    assert_eq!(document["reports"][0]["category"], "harassment");
    assert_eq!(document["blocks"][0]["userId"], carol.id.as_str());

    // An admin may export anyone (audited); expired exports are deleted.
    let (status, by_admin) = app
        .post(
            &admin,
            &format!("/admin/users/{}/export", alice.id),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{by_admin}");
    let admin_path = format!(
        "/admin/users/{}/exports/{}",
        alice.id,
        by_admin["id"].as_str().unwrap()
    );
    assert_eq!(
        finished_export(&app, &admin, &admin_path).await["status"],
        "ready"
    );
    let (_, audit) = app
        .get(
            &admin,
            &format!(
                "/admin/chat/audit?action=user.export_requested&target={}",
                alice.id
            ),
        )
        .await;
    assert_eq!(audit["items"][0]["actorId"], admin.id.as_str());
    let id: uuid::Uuid = started["id"].as_str().unwrap().parse().unwrap();
    app.sql_execute(
        "UPDATE data_exports SET expires_at = now() - interval '1 minute' WHERE id = $1",
        &[&id],
    )
    .await;
    let run = run_job(&app, &admin, "export_cleanup").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let (_, export) = app.get(&alice, &path).await;
    assert_eq!(export["status"], "expired");
    assert!(export.get("downloadUrl").is_none());
    let response = app.http.get(app.url(url)).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "the document is gone"
    );
    app.shutdown().await;
}
