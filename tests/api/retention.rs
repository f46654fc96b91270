//! The daily jobs through the admin API, each on a database of its own (they
//! touch every row past their cutoff): message retention (redaction, holes
//! never, held conversations spared, resumable), audit retention through
//! its one narrow path, auto-archive and the reopening on the next message,
//! and the runs recorded in `/admin/jobs`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, drop_database, error_code, spawn_app_on_own_database};

/// Runs `job` now as `admin` and waits for the run to end; answers the run.
pub async fn run_job(app: &TestApp, admin: &TestUser, job: &str) -> Value {
    let (status, started) = app
        .post(admin, &format!("/admin/jobs/{job}/run"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let run_id = started["runId"].as_i64().unwrap();
    let run_of = |jobs: &Value| -> Option<Value> {
        jobs.as_array()?.iter().find(|j| j["name"] == job)?["recentRuns"]
            .as_array()?
            .iter()
            .find(|r| r["id"] == run_id)
            .cloned()
    };
    let jobs = app
        .get_until(admin, "/admin/jobs", |jobs| {
            run_of(jobs).is_some_and(|run| run["status"] != "running")
        })
        .await;
    run_of(&jobs).unwrap()
}

async fn history(app: &TestApp, user: &TestUser, conversation: &str) -> Vec<Value> {
    let (status, page) = app
        .get(
            user,
            &format!("/chat/conversations/{conversation}/messages?limit=50"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut items = page["items"].as_array().unwrap().clone();
    items.sort_by_key(|m| m["seq"].as_i64());
    items
}

async fn backdate_messages(app: &TestApp, conversation: &str, up_to_seq: i64, days: i32) {
    let id: uuid::Uuid = conversation.parse().unwrap();
    app.sql_execute(
        "UPDATE messages SET created_at = now() - make_interval(days => $3)
         WHERE conversation_id = $1 AND seq <= $2",
        &[&id, &up_to_seq, &days],
    )
    .await;
}

#[tokio::test]
async fn message_retention_redacts_old_messages_spares_held_ones_and_resumes() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (alice, bob, carol, admin) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("company").await,
        app.user("admin").await,
    );
    let old = app.conversation(&alice, &bob).await;
    for body in [
        "first, two years ago",
        "second, two years ago",
        "third, today",
    ] {
        app.send(&alice, &old, body).await;
    }
    let disputed = app.conversation(&alice, &carol).await;
    app.send(&alice, &disputed, "evidence of the dispute").await;
    backdate_messages(&app, &old, 2, 731).await;
    backdate_messages(&app, &disputed, 1, 800).await;
    let hold = format!("/admin/chat/conversations/{disputed}/hold");
    let (status, _) = app.post(&admin, &hold, json!({"reason": "dispute"})).await;
    assert_eq!(status, StatusCode::OK);
    let mut bob_ws = app.ws(&bob).await;

    let run = run_job(&app, &admin, "message_retention").await;
    assert_eq!(
        (run["status"].as_str(), run["rowsTouched"].as_i64()),
        (Some("succeeded"), Some(2)),
        "{run}"
    );
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["requestedBy"], admin.id.as_str());
    for _ in 0..2 {
        let updated = bob_ws.next_of_type("message.updated").await;
        assert_eq!(updated["data"]["redacted"], true, "{updated}");
    }
    let messages = history(&app, &bob, &old).await;
    let seqs: Vec<i64> = messages
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3], "no holes in the history");
    assert_eq!(
        messages
            .iter()
            .map(|m| m["redacted"] == true)
            .collect::<Vec<_>>(),
        vec![true, true, false]
    );
    assert_eq!(messages[2]["body"], "third, today");
    let stored_bodies = app
        .sql_i64(
            "SELECT count(*) FROM messages WHERE body LIKE '%two years ago%'",
            &[],
        )
        .await;
    assert_eq!(stored_bodies, 0, "the bodies are gone, not hidden");
    assert_eq!(
        history(&app, &carol, &disputed).await[0]["body"],
        "evidence of the dispute",
        "held"
    );

    // Resumable: the next run starts where this one stopped, and a run
    // whose runner died is marked interrupted.
    app.sql_execute("INSERT INTO job_runs (job, trigger, started_at) VALUES ('message_retention', 'schedule', now() - interval '1 hour')",
        &[],
    )
    .await;
    backdate_messages(&app, &old, 3, 731).await;
    let (status, _) = app.delete(&admin, &hold).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let run = run_job(&app, &admin, "message_retention").await;
    assert_eq!(
        run["rowsTouched"], 2,
        "the third message and the released one: {run}"
    );
    assert_eq!(history(&app, &carol, &disputed).await[0]["redacted"], true);
    let interrupted = app
        .sql_i64(
            "SELECT count(*) FROM job_runs WHERE status = 'interrupted'",
            &[],
        )
        .await;
    assert_eq!(interrupted, 1);
    assert_eq!(
        run_job(&app, &admin, "message_retention").await["rowsTouched"],
        0
    );

    let (_, audit) = app
        .get(&admin, "/admin/chat/audit?action=job.run_requested")
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 3);
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn auto_archive_hides_idle_conversations_until_the_next_message() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (alice, bob, carol, admin) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("company").await,
        app.user("admin").await,
    );
    let idle = app.conversation(&alice, &bob).await;
    app.send(&alice, &idle, "are you still hiring?").await;
    let archived_by_hand = app.conversation(&alice, &carol).await;
    app.send(&alice, &archived_by_hand, "hello").await;
    let (status, _) = app
        .post(
            &carol,
            &format!("/chat/conversations/{archived_by_hand}/archive"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let recent = app.conversation(&bob, &carol).await;
    app.send(&bob, &recent, "see you tomorrow").await;
    app.sql_execute(
        "UPDATE conversation_participants SET activity_at = now() - interval '91 days'
         WHERE conversation_id = ANY($1)",
        &[&vec![
            idle.parse::<uuid::Uuid>().unwrap(),
            archived_by_hand.parse::<uuid::Uuid>().unwrap(),
        ]],
    )
    .await;

    let run = run_job(&app, &admin, "auto_archive").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["rowsTouched"], 3,
        "both sides of the idle one, alice's side of the other"
    );
    for user in [&alice, &bob] {
        let (_, view) = app.get(user, &format!("/chat/conversations/{idle}")).await;
        assert_eq!(view["archived"], true, "{view}");
    }
    let (_, view) = app
        .get(&bob, &format!("/chat/conversations/{recent}"))
        .await;
    assert_eq!(view["archived"], false);

    // The next message brings an auto-archived conversation back, but not
    // one its participant archived.
    app.send(&bob, &idle, "yes, still hiring").await;
    for user in [&alice, &bob] {
        let (_, view) = app.get(user, &format!("/chat/conversations/{idle}")).await;
        assert_eq!(view["archived"], false, "{view}");
    }
    let (_, inbox) = app.get(&alice, "/chat/conversations").await;
    assert!(
        inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == idle.as_str())
    );
    app.send(&alice, &archived_by_hand, "ping").await;
    let (_, view) = app
        .get(&carol, &format!("/chat/conversations/{archived_by_hand}"))
        .await;
    assert_eq!(view["archived"], true, "carol archived it herself");
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn audit_retention_deletes_only_old_rows_and_only_through_the_job() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (alice, bob, admin) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("admin").await,
    );
    let held = app.conversation(&alice, &bob).await;
    let (status, _) = app
        .post(
            &admin,
            &format!("/admin/chat/conversations/{held}/hold"),
            json!({"reason": "litigation"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let held: uuid::Uuid = held.parse().unwrap();
    for (days, action, conversation) in [
        (1200, "old.expired", None),
        (1200, "old.held", Some(held)),
        (400, "old.kept", None),
    ] {
        app.sql_execute(
            "INSERT INTO audit_log (at, action, conversation_id)
             VALUES (now() - make_interval(days => $1), $2, $3)",
            &[&days, &action, &conversation],
        )
        .await;
    }
    let db = app.pool.get().await.unwrap();
    assert!(
        db.execute("DELETE FROM audit_log WHERE action = 'old.expired'", &[])
            .await
            .is_err(),
        "append-only outside the job"
    );

    let (status, body) = app
        .post(&alice, "/admin/jobs/audit_retention/run", json!({}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (status, body) = app.post(&admin, "/admin/jobs/vacuum/run", json!({})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let run = run_job(&app, &admin, "audit_retention").await;
    assert_eq!(
        (run["status"].as_str(), run["rowsTouched"].as_i64()),
        (Some("succeeded"), Some(1)),
        "{run}"
    );
    let left = |action: &'static str| {
        let app = &app;
        async move {
            app.sql_i64(
                "SELECT count(*) FROM audit_log WHERE action = $1",
                &[&action],
            )
            .await
        }
    };
    assert_eq!(left("old.expired").await, 0);
    assert_eq!(
        left("old.held").await,
        1,
        "a held conversation keeps its trail"
    );
    assert_eq!(left("old.kept").await, 1, "within 1,095 days");
    assert_eq!(
        left("audit.purged").await,
        1,
        "the purge is itself recorded"
    );

    let (status, jobs) = app.get(&admin, "/admin/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "message_retention",
            "audit_retention",
            "auto_archive",
            "attachment_retention",
            "export_cleanup"
        ]
    );
    assert_eq!(jobs[1]["schedule"], "on request only");
    assert_eq!(jobs[1]["recentRuns"][0]["status"], "succeeded");
    let (status, _) = app.get(&alice, "/admin/jobs").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn a_due_job_runs_once_however_many_nodes_look_for_it() {
    let (first, database) = spawn_app_on_own_database(|_| {}).await;
    let own_url = crate::helpers::database_url_named(&database);
    let second = crate::helpers::spawn_app_with(|s| {
        s.database.url = parley::config::Secret::new(own_url);
    })
    .await;
    first.chat.schedule_jobs().await.unwrap();
    first
        .sql_execute(
            "UPDATE scheduled_jobs SET next_run_at = now() - interval '1 minute'",
            &[],
        )
        .await;
    // Both nodes look at once (and each node's own scheduler may, too).
    let (a, b) = tokio::join!(first.chat.run_due_jobs(), second.chat.run_due_jobs());
    assert!(a.unwrap() + b.unwrap() <= 5);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while first
        .sql_i64(
            "SELECT count(*) FROM job_runs WHERE status = 'running'",
            &[],
        )
        .await
        > 0
    {
        assert!(tokio::time::Instant::now() < deadline, "a run never ended");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let runs = first
        .sql_i64(
            "SELECT count(*) FROM job_runs WHERE trigger = 'schedule' AND status = 'succeeded'",
            &[],
        )
        .await;
    let jobs = first
        .sql_i64("SELECT count(DISTINCT job) FROM job_runs", &[])
        .await;
    assert_eq!((runs, jobs), (5, 5), "each of the five jobs ran once");
    let (a, b) = tokio::join!(first.chat.run_due_jobs(), second.chat.run_due_jobs());
    assert_eq!(
        (a.unwrap(), b.unwrap()),
        (0, 0),
        "not due again until its next day"
    );
    second.shutdown().await;
    first.shutdown().await;
    drop_database(&database).await;
}
