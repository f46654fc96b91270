//! The OpenAPI document holds: Schemathesis (PyPI) generates requests from
//! `/openapi.json` (valid ones, and ones that break the schema on purpose)
//! against a real server and checks every answer against the document: no
//! server error, no undocumented status, every body in its schema, every
//! schema-valid request accepted and every schema-breaking one refused.
//! `tests/schemathesis.toml` names the few exceptions and why. The budget
//! is bounded (a fixed seed, a few examples per operation), so the run is
//! the same each time and takes well under a minute.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{INTERNAL_API_KEY, drop_database, spawn_app, spawn_app_on_own_database};

#[tokio::test]
async fn the_openapi_document_describes_exactly_what_the_server_does() {
    let schemathesis = std::env::var("PARLEY_TEST_SCHEMATHESIS")
        .expect("PARLEY_TEST_SCHEMATHESIS names schemathesis (scripts/test.sh installs it)");
    // A database of its own: the generated requests run housekeeping jobs,
    // erase users and hold conversations, which must not reach the data of
    // the tests running beside this one. Patient: those tests share the
    // machine's cores, and a 503 (busy, retry) would count as a server error.
    let blobs = std::env::temp_dir().join(crate::helpers::unique("contract-blobs"));
    let (app, database) = spawn_app_on_own_database(|settings| {
        // And files of its own: its erasures and clean-ups stay in them.
        settings.attachments.blob_store = format!("file://{}", blobs.display());
        settings.database.timeout = std::time::Duration::from_secs(60);
        settings.chat.actor_call_timeout = std::time::Duration::from_secs(60);
    })
    .await;
    // An admin reaches every operation; as a known user (the first request
    // records them), their own resources answer too.
    let admin = app.user("admin").await;
    let reports = std::env::temp_dir().join(crate::helpers::unique("schemathesis"));
    let output = tokio::process::Command::new(schemathesis)
        .arg("--config-file")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/schemathesis.toml"
        ))
        .arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--max-examples", "10", "--seed", "1"])
        .args(["--workers", "1", "--no-color"])
        .arg("--report-dir")
        .arg(&reports)
        .env("PARLEY_CONTRACT_BEARER", &admin.token)
        .env("PARLEY_CONTRACT_PLATFORM_KEY", INTERNAL_API_KEY)
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis runs");
    let said = String::from_utf8_lossy(&output.stdout);
    let _ = std::fs::remove_dir_all(&reports);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    app.shutdown().await;
    drop_database(&database).await;
    let _ = std::fs::remove_dir_all(&blobs);
}

/// What Schemathesis does not exercise: the realtime frames are in the
/// document (every frame type the server reads, every event it sends), and
/// so are both credentials.
#[tokio::test]
async fn the_document_names_the_frames_and_both_credentials() {
    let app = spawn_app().await;
    let document: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &document["components"]["schemas"];
    let client_types: Vec<&str> = schemas["ClientFrame"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|frame| frame["properties"]["type"]["enum"][0].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = parley::ws::protocol::FRAMES
        .iter()
        .map(|(kind, _)| *kind)
        .collect();
    assert_eq!(client_types, expected);
    let events = serde_json::to_string(&schemas["ServerEvent"]).unwrap();
    for event in [
        "message.created",
        "read.receipt",
        "typing.started",
        "system.notice",
        "ack",
    ] {
        assert!(events.contains(&format!("\"{event}\"")), "{event}");
    }
    assert_eq!(
        schemas["ServerFrame"]["allOf"][0]["$ref"],
        "#/components/schemas/ServerEvent"
    );
    assert!(document["paths"]["/ws"]["get"]["responses"]["101"].is_object());
    assert_eq!(
        document["paths"]["/events/poll"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/PollAnswer"
    );
    let key = &document["components"]["securitySchemes"]["platformKey"];
    assert_eq!(
        (&key["type"], &key["in"], &key["name"]),
        (&json!("apiKey"), &json!("header"), &json!("X-Api-Key"))
    );
    assert_eq!(
        document["paths"]["/internal/users/{id}"]["put"]["security"],
        json!([{ "platformKey": [] }])
    );
    app.shutdown().await;
}

/// A JSON integer may be written with a zero fraction, as JSON Schema
/// reads it; a real fraction is still refused.
#[tokio::test]
async fn an_integer_may_be_written_as_a_whole_number() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("recruiter").await, app.user("candidate").await);
    let id = app.conversation(&alice, &bob).await;
    app.send(&alice, &id, "hello").await;
    let read = format!("/chat/conversations/{id}/read");
    let (status, body) = app.post(&bob, &read, json!({ "seq": 1.0 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.post(&bob, &read, json!({ "seq": 1.5 })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.shutdown().await;
}
