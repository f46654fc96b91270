//! Attachments against the real clamd, the local blob store and its signed
//! URLs: upload, scan, clean copies, downloads, and every refusal.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestUser, drop_database, error_code, spawn_app, spawn_app_on_own_database,
    spawn_app_with,
};

/// EICAR's test string: every virus scanner detects it, it harms nothing.
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// What the photo's EXIF says, to look for in what comes out.
const GPS_TEXT: &str = "GPS 52.5200N 13.4050E";

/// Declares a file; answers the status and body.
async fn start(
    app: &TestApp,
    user: &TestUser,
    conversation: &str,
    filename: &str,
    content_type: &str,
    size: usize,
) -> (StatusCode, Value) {
    app.post(
        user,
        &format!("/chat/conversations/{conversation}/attachments"),
        json!({"filename": filename, "contentType": content_type, "size": size}),
    )
    .await
}

/// PUTs `bytes` to a signed upload URL (relative to the server).
async fn upload(app: &TestApp, url: &str, bytes: &[u8]) -> (StatusCode, Value) {
    let response = app
        .http
        .put(app.url(url))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Declares, uploads and completes a file; answers the completed attachment.
async fn send_file(
    app: &TestApp,
    user: &TestUser,
    conversation: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> Value {
    let (status, started) =
        start(app, user, conversation, filename, content_type, bytes.len()).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["attachment"]["status"], "awaiting_upload");
    let (status, body) = upload(app, started["upload"]["url"].as_str().unwrap(), bytes).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let id = started["attachment"]["id"].as_str().unwrap();
    let (status, completed) = app
        .post(user, &format!("/chat/attachments/{id}/complete"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    completed
}

/// Waits until the attachment has left `pending_scan`; answers it.
async fn scanned(app: &TestApp, user: &TestUser, id: &str) -> Value {
    app.get_until(user, &format!("/chat/attachments/{id}"), |attachment| {
        attachment["status"] != "pending_scan"
    })
    .await
}

/// Downloads a variant through its signed URL: status, headers, bytes.
async fn download(
    app: &TestApp,
    user: &TestUser,
    id: &str,
    variant: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let (status, signed) = app
        .get(
            user,
            &format!("/chat/attachments/{id}/download-url?variant={variant}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let response = app
        .http
        .get(app.url(signed["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// A PNG whose `eXIf` chunk holds a GPS position and a description naming it.
fn png_with_gps_exif() -> Vec<u8> {
    let picture = image::RgbImage::from_fn(1600, 900, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    // TIFF, big-endian: IFD0 (ImageDescription, GPSInfo) then the GPS IFD.
    let text = format!("{GPS_TEXT}\0");
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend(2u16.to_be_bytes());
    tiff.extend([0x01, 0x0e, 0, 2]); // ImageDescription, ASCII
    tiff.extend((text.len() as u32).to_be_bytes());
    tiff.extend(56u32.to_be_bytes());
    tiff.extend([0x88, 0x25, 0, 4]); // GPSInfo, LONG
    tiff.extend(1u32.to_be_bytes());
    tiff.extend(38u32.to_be_bytes());
    tiff.extend(0u32.to_be_bytes());
    tiff.extend(1u16.to_be_bytes());
    tiff.extend([0, 1, 0, 2]); // GPSLatitudeRef, ASCII "N"
    tiff.extend(2u32.to_be_bytes());
    tiff.extend(*b"N\0\0\0");
    tiff.extend(0u32.to_be_bytes());
    tiff.extend(text.as_bytes());
    // The chunk goes right after IHDR (8-byte signature + 25-byte IHDR).
    let mut chunk = (tiff.len() as u32).to_be_bytes().to_vec();
    let mut typed = b"eXIf".to_vec();
    typed.extend(&tiff);
    chunk.extend(&typed);
    chunk.extend(crc32(&typed).to_be_bytes());
    let mut out = png[..33].to_vec();
    out.extend(chunk);
    out.extend(&png[33..]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_photo_is_scanned_and_passed_on_without_its_gps_position() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("candidate").await, app.user("recruiter").await);
    let conversation = app.conversation(&alice, &bob).await;
    let photo = png_with_gps_exif();
    assert!(contains(&photo, GPS_TEXT.as_bytes()));
    assert!(
        image::load_from_memory(&photo).is_ok(),
        "the test photo is a valid PNG"
    );
    let completed = send_file(&app, &alice, &conversation, "site.png", "image/png", &photo).await;
    assert_eq!(completed["status"], "pending_scan");
    let id = completed["id"].as_str().unwrap();
    // Not downloadable while it is scanned.
    let attachment = scanned(&app, &bob, id).await;
    assert_eq!(attachment["status"], "available", "{attachment}");
    assert_eq!(
        attachment["variants"],
        json!(["original", "preview", "thumbnail"])
    );
    for (variant, side) in [("original", 1600), ("preview", 1200), ("thumbnail", 300)] {
        let (status, headers, bytes) = download(&app, &bob, id, variant).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "image/png");
        assert_eq!(headers["content-disposition"], "inline");
        assert!(
            !contains(&bytes, GPS_TEXT.as_bytes()),
            "{variant} keeps the GPS text"
        );
        assert!(!contains(&bytes, b"eXIf"), "{variant} keeps an EXIF chunk");
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!(decoded.width(), side, "{variant}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_virus_is_blocked_and_its_uploader_told() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (alice, bob) = (app.user("candidate").await, app.user("recruiter").await);
    let conversation = app.conversation(&alice, &bob).await;
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_ws = app.ws(&bob).await;
    let completed = send_file(
        &app,
        &alice,
        &conversation,
        "notes.txt",
        "text/plain",
        EICAR,
    )
    .await;
    let id = completed["id"].as_str().unwrap();
    let notice = alice_ws.next_of_type("system.notice").await;
    assert_eq!(notice["data"]["code"], "attachment_blocked");
    // Bob sees it move: pending, then blocked.
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("blocked") {
        let event = bob_ws.next_of_type("attachment.updated").await;
        assert_eq!(event["data"]["id"], id);
        seen.push(event["data"]["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["pending_scan", "blocked"]);
    let (status, body) = app
        .get(&bob, &format!("/chat/attachments/{id}/download-url"))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::GONE, "attachment_blocked")
    );
    let logged = app
        .sql_i64(
            "SELECT count(*) FROM audit_log WHERE action = 'attachment.blocked' AND target_id = $1",
            &[&id],
        )
        .await;
    assert_eq!(logged, 1, "moderators see it in the audit log");
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn bytes_that_are_not_what_they_claim_are_blocked() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("candidate").await, app.user("recruiter").await);
    let conversation = app.conversation(&alice, &bob).await;
    let executable =
        b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0 this program cannot be run in DOS mode";
    let completed = send_file(
        &app,
        &alice,
        &conversation,
        "holiday.png",
        "image/png",
        executable,
    )
    .await;
    assert_eq!(completed["status"], "blocked", "{completed}");
    let id = completed["id"].as_str().unwrap();
    let (status, body) = app
        .get(&bob, &format!("/chat/attachments/{id}/download-url"))
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_pdf_downloads_as_an_attachment_under_its_name() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("candidate").await, app.user("recruiter").await);
    let conversation = app.conversation(&alice, &bob).await;
    let pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
    let completed = send_file(
        &app,
        &alice,
        &conversation,
        "../CV Ada Lövelace.pdf",
        "application/pdf",
        pdf,
    )
    .await;
    assert_eq!(
        completed["filename"], "CV Ada Lövelace.pdf",
        "no path survives"
    );
    let id = completed["id"].as_str().unwrap();
    assert_eq!(scanned(&app, &alice, id).await["status"], "available");
    let (status, headers, bytes) = download(&app, &bob, id, "original").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, pdf);
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename*=UTF-8''CV%20Ada%20L%C3%B6velace.pdf"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (status, body) = app
        .get(
            &bob,
            &format!("/chat/attachments/{id}/download-url?variant=thumbnail"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn signed_urls_refuse_tampering_reuse_oversize_and_age() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("candidate").await, app.user("recruiter").await);
    let conversation = app.conversation(&alice, &bob).await;
    let text = b"hello, this is my cover letter";
    let (_, started) = start(
        &app,
        &alice,
        &conversation,
        "letter.txt",
        "text/plain",
        text.len(),
    )
    .await;
    let url = started["upload"]["url"].as_str().unwrap().to_owned();
    assert_eq!(started["upload"]["method"], "PUT");
    // A larger size than signed, or another key: the signature no longer fits.
    let bigger = url.replace(&format!("size={}", text.len()), "size=99999999");
    let (status, body) = upload(&app, &bigger, text).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "invalid_signature")
    );
    let (status, _) = upload(&app, &url.replace("incoming/", "incoming/0"), text).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // More bytes than declared.
    let (status, body) = upload(&app, &url, &[b'x'; 64]).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    // Once, and only once.
    let (status, _) = upload(&app, &url, text).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = upload(&app, &url, text).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "upload_used")
    );
    // An upload URL works 15 minutes.
    let (_, late) = start(
        &app,
        &alice,
        &conversation,
        "late.txt",
        "text/plain",
        text.len(),
    )
    .await;
    app.clock.advance(chrono::Duration::minutes(16));
    let (status, body) = upload(&app, late["upload"]["url"].as_str().unwrap(), text).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "link_expired")
    );
    // Completing before any upload.
    let late_id = late["attachment"]["id"].as_str().unwrap();
    let (status, body) = app
        .post(
            &alice,
            &format!("/chat/attachments/{late_id}/complete"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "upload_missing")
    );
    app.shutdown().await;
}

#[tokio::test]
async fn outsiders_requests_and_blocks_get_nothing() {
    let app = spawn_app().await;
    let (alice, bob, eve) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("candidate").await,
    );
    let conversation = app.conversation(&alice, &bob).await;
    let completed = send_file(
        &app,
        &alice,
        &conversation,
        "a.txt",
        "text/plain",
        b"plain words",
    )
    .await;
    let id = completed["id"].as_str().unwrap();
    for path in [
        format!("/chat/attachments/{id}"),
        format!("/chat/attachments/{id}/download-url"),
    ] {
        let (status, _) = app.get(&eve, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = app
        .post(&eve, &format!("/chat/attachments/{id}/complete"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = start(&app, &eve, &conversation, "x.txt", "text/plain", 3).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Bob cannot complete Alice's upload.
    let (status, body) = app
        .post(&bob, &format!("/chat/attachments/{id}/complete"), json!({}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "not_uploader")
    );

    // A message request: no files until it is accepted.
    let request = app.stranger_conversation(&eve, &bob).await;
    app.send(&eve, &request, "hello?").await;
    let (status, body) = start(&app, &eve, &request, "cv.pdf", "application/pdf", 100).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "request_pending")
    );
    // Across a block: the neutral refusal.
    let (status, _) = app
        .post(&bob, "/chat/blocks", json!({"userId": alice.id}))
        .await;
    assert!(status.is_success());
    let (status, body) = start(&app, &alice, &conversation, "b.txt", "text/plain", 3).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "not_delivered")
    );

    // Types and sizes.
    let other = app.conversation(&alice, &eve).await;
    for (name, kind, size, code) in [
        (
            "run.exe",
            "application/x-msdownload",
            10,
            "type_not_allowed",
        ),
        ("big.png", "image/png", 5 * 1024 * 1024 + 1, "too_large"),
        (
            "big.pdf",
            "application/pdf",
            10 * 1024 * 1024 + 1,
            "too_large",
        ),
        ("", "text/plain", 10, "invalid_filename"),
    ] {
        let (_, body) = start(&app, &alice, &other, name, kind, size).await;
        assert_eq!(error_code(&body), code, "{name}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn while_the_scanner_is_down_files_wait_and_nothing_passes_unscanned() {
    let clamd_port: u16 = crate::helpers::clamd_addr()
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap();
    let proxy = crate::helpers::TcpProxy::start(clamd_port).await;
    let (app, database) = spawn_app_on_own_database(|s| {
        s.attachments.clamd_addr = Some(format!("127.0.0.1:{}", proxy.port));
    })
    .await;
    let (alice, bob) = (app.user("candidate").await, app.user("recruiter").await);
    let conversation = app.conversation(&alice, &bob).await;
    proxy.cut();
    let (_, ready) = app.anonymous_get("/readyz").await;
    assert_eq!(ready["scanner"], "degraded");
    let completed = send_file(
        &app,
        &alice,
        &conversation,
        "a.txt",
        "text/plain",
        b"fine words",
    )
    .await;
    let id = completed["id"].as_str().unwrap();
    // The scan fails and is retried; the file stays pending meanwhile.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app
        .sql_i64(
            "SELECT COALESCE(max(attempts), 0)::bigint FROM outbox WHERE kind = 'attachment_scan'",
            &[],
        )
        .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scan was never tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, attachment) = app.get(&bob, &format!("/chat/attachments/{id}")).await;
    assert_eq!(attachment["status"], "pending_scan");
    let (status, body) = app
        .get(&bob, &format!("/chat/attachments/{id}/download-url"))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "attachment_not_available")
    );
    // Had every attempt failed (clamd away for minutes), the job would be
    // dead: the per-minute revival tries it again five minutes later.
    let db = app.pool.get().await.unwrap();
    db.execute(
        "WITH gone AS (DELETE FROM outbox WHERE kind = 'attachment_scan' RETURNING job_id, kind, payload)
         INSERT INTO dead_jobs (job_id, kind, payload, attempts, last_error, died_at)
         SELECT job_id, kind, payload, 5, 'clamd is unreachable', now() - interval '6 minutes' FROM gone",
        &[],
    )
    .await
    .unwrap();
    proxy.restore();
    assert_eq!(app.chat.revive_failed_scans().await.unwrap(), 1);
    assert_eq!(
        app.sql_i64(
            "SELECT count(*) FROM dead_jobs WHERE kind = 'attachment_scan'",
            &[]
        )
        .await,
        0
    );
    assert_eq!(scanned(&app, &bob, id).await["status"], "available");
    let (_, ready) = app.anonymous_get("/readyz").await;
    assert_eq!(
        (ready["scanner"].as_str(), ready["blobs"].as_str()),
        (Some("ok"), Some("ok"))
    );
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn switched_off_attachments_answer_attachments_disabled() {
    let app = spawn_app_with(|s| s.attachments.enabled = false).await;
    let (alice, bob) = (app.user("candidate").await, app.user("recruiter").await);
    let conversation = app.conversation(&alice, &bob).await;
    let (status, body) = start(&app, &alice, &conversation, "a.txt", "text/plain", 3).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "attachments_disabled")
    );
    let (status, body) = app
        .get(
            &alice,
            &format!("/chat/attachments/{}", uuid::Uuid::now_v7()),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "attachments_disabled")
    );
    app.shutdown().await;
}

#[tokio::test]
async fn retention_deletes_images_after_90_days_and_abandoned_uploads_after_an_hour() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (alice, bob) = (app.user("candidate").await, app.user("recruiter").await);
    let conversation = app.conversation(&alice, &bob).await;
    let photo = send_file(
        &app,
        &alice,
        &conversation,
        "p.png",
        "image/png",
        &png_with_gps_exif(),
    )
    .await;
    let pdf = send_file(
        &app,
        &alice,
        &conversation,
        "cv.pdf",
        "application/pdf",
        b"%PDF-1.4\n%%EOF\n",
    )
    .await;
    let (photo, pdf) = (photo["id"].as_str().unwrap(), pdf["id"].as_str().unwrap());
    assert_eq!(scanned(&app, &bob, photo).await["status"], "available");
    assert_eq!(scanned(&app, &bob, pdf).await["status"], "available");
    let (_, abandoned) = start(&app, &alice, &conversation, "never.txt", "text/plain", 5).await;
    let abandoned = abandoned["attachment"]["id"].as_str().unwrap().to_owned();
    let blobs = std::env::temp_dir()
        .join("parley-test-blobs/files")
        .join(photo);
    assert!(blobs.join("thumbnail").exists());

    let mut bob_ws = app.ws(&bob).await;
    assert_eq!(
        app.chat.expire_attachments().await.unwrap(),
        0,
        "nothing is old yet"
    );
    app.clock.advance(chrono::Duration::days(91));
    assert_eq!(app.chat.expire_attachments().await.unwrap(), 2);
    let mut deleted = vec![
        bob_ws.next_of_type("attachment.updated").await,
        bob_ws.next_of_type("attachment.updated").await,
    ]
    .into_iter()
    .map(|e| {
        assert_eq!(e["data"]["status"], "deleted");
        e["data"]["id"].as_str().unwrap().to_owned()
    })
    .collect::<Vec<_>>();
    deleted.sort();
    let mut expected = vec![photo.to_owned(), abandoned];
    expected.sort();
    assert_eq!(deleted, expected);
    let (status, body) = app
        .get(&bob, &format!("/chat/attachments/{photo}/download-url"))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::GONE, "attachment_deleted")
    );
    // The bytes go by a job of their own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ["original", "preview", "thumbnail"]
        .iter()
        .any(|v| blobs.join(v).exists())
    {
        assert!(tokio::time::Instant::now() < deadline, "the blobs stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Other files are kept for a year.
    let (status, _, _) = download(&app, &bob, pdf, "original").await;
    assert_eq!(status, StatusCode::OK);
    app.shutdown().await;
    drop_database(&database).await;
}

/// s3s-fs, an S3-compatible server checking SigV4 signatures, on a free
/// port with a bucket of its own (`PARLEY_TEST_S3S_FS`: its binary,
/// installed by scripts/test.sh; credentials from the AWS variables).
struct S3Server {
    endpoint: String,
    _server: tokio::process::Child,
    _root: std::path::PathBuf,
}

impl S3Server {
    async fn start(bucket: &str) -> Self {
        let binary = std::env::var("PARLEY_TEST_S3S_FS")
            .expect("PARLEY_TEST_S3S_FS names the s3s-fs binary (scripts/test.sh installs it)");
        let key = std::env::var("AWS_ACCESS_KEY_ID")
            .expect("AWS_ACCESS_KEY_ID (scripts/test.sh sets it)");
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY");
        let root = std::env::temp_dir().join(crate::helpers::unique("parley-s3"));
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = tokio::process::Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &key, "--secret-key", &secret])
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "s3s-fs did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            _server: server,
            _root: root,
        }
    }
}

#[tokio::test]
async fn an_s3_store_takes_presigned_uploads_and_serves_presigned_downloads() {
    let s3 = S3Server::start("parley-files").await;
    let (app, database) = spawn_app_on_own_database(|s| {
        s.attachments.blob_store = "s3://parley-files".into();
        s.attachments.s3_endpoint = Some(s3.endpoint.clone());
    })
    .await;
    let (alice, bob) = (app.user("candidate").await, app.user("recruiter").await);
    let conversation = app.conversation(&alice, &bob).await;
    let (_, ready) = app.anonymous_get("/readyz").await;
    assert_eq!(ready["blobs"], "ok");
    let pdf = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n";
    let (status, started) = start(
        &app,
        &alice,
        &conversation,
        "offer.pdf",
        "application/pdf",
        pdf.len(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let upload = &started["upload"];
    let url = upload["url"].as_str().unwrap();
    assert!(url.starts_with(&s3.endpoint), "{url}");
    assert_eq!(upload["headers"]["Content-Type"], "application/pdf");
    let put = |url: String, content_type: &str, body: Vec<u8>| {
        app.http
            .put(url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // The signature binds the URL and the declared type.
    let status = put(tamper(url), "application/pdf", pdf.to_vec())
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = put(url.to_owned(), "text/html", pdf.to_vec())
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = put(url.to_owned(), "application/pdf", pdf.to_vec())
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    let id = started["attachment"]["id"].as_str().unwrap();
    let (status, completed) = app
        .post(
            &alice,
            &format!("/chat/attachments/{id}/complete"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    assert_eq!(scanned(&app, &bob, id).await["status"], "available");
    let (status, signed) = app
        .get(&bob, &format!("/chat/attachments/{id}/download-url"))
        .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let url = signed["url"].as_str().unwrap();
    assert!(url.starts_with(&s3.endpoint), "{url}");
    let response = app.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename*=UTF-8''offer.pdf"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), pdf);
    let tampered = tamper(url);
    assert_eq!(
        app.http.get(tampered).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    app.shutdown().await;
    drop_database(&database).await;
}

/// `url` with one character of its SigV4 signature changed.
fn tamper(url: &str) -> String {
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &url[at..=at] == "0" { "1" } else { "0" };
    format!("{}{flipped}{}", &url[..at], &url[at + 1..])
}

#[tokio::test]
async fn files_are_sent_in_messages_once_and_shown_with_their_status() {
    let app = spawn_app().await;
    let (alice, bob, eve) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("candidate").await,
    );
    let conversation = app.conversation(&alice, &bob).await;
    let pdf = send_file(
        &app,
        &alice,
        &conversation,
        "cv.pdf",
        "application/pdf",
        b"%PDF-1.4\n%%EOF\n",
    )
    .await;
    let photo = send_file(
        &app,
        &alice,
        &conversation,
        "me.png",
        "image/png",
        &png_with_gps_exif(),
    )
    .await;
    let (pdf, photo) = (pdf["id"].as_str().unwrap(), photo["id"].as_str().unwrap());
    let mut bob_ws = app.ws(&bob).await;
    let path = format!("/chat/conversations/{conversation}/messages");
    let (status, message) = app
        .post(
            &alice,
            &path,
            json!({"body": "", "clientMessageId": "with-files", "attachmentIds": [pdf, photo]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["kind"], "file");
    assert_eq!(message["body"], "");
    let mut sent: Vec<&str> = message["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    sent.sort();
    let mut expected = vec![pdf, photo];
    expected.sort();
    assert_eq!(sent, expected);
    let event = bob_ws.next_of_type("message.created").await;
    assert_eq!(event["data"]["attachments"].as_array().unwrap().len(), 2);
    // History shows them as they stand now.
    scanned(&app, &bob, pdf).await;
    scanned(&app, &bob, photo).await;
    let (_, page) = app.get(&bob, &path).await;
    let shown = page["items"].as_array().unwrap().last().unwrap().clone();
    assert!(
        shown["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "available" && !a["variants"].as_array().unwrap().is_empty()),
        "{shown}"
    );
    // Once only, own only, completed only.
    let (_, not_sent) = start(&app, &alice, &conversation, "later.txt", "text/plain", 4).await;
    let not_completed = not_sent["attachment"]["id"].as_str().unwrap();
    let elsewhere = app.conversation(&eve, &bob).await;
    let eves = send_file(&app, &eve, &elsewhere, "e.txt", "text/plain", b"eve's").await;
    for (n, ids) in [
        json!([pdf]),
        json!([not_completed]),
        json!([eves["id"]]),
        json!([photo, photo]),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = app
            .post(
                &alice,
                &path,
                json!({"body": "again", "clientMessageId": format!("bad-{n}"), "attachmentIds": ids}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_attachments"),
            "{ids}"
        );
    }
    // Without files an empty body is still refused.
    let (status, _) = app
        .post(
            &alice,
            &path,
            json!({"body": " ", "clientMessageId": "empty"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.shutdown().await;
}

#[tokio::test]
async fn a_reported_file_outlives_retention_until_the_report_is_closed() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (alice, bob, admin) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("admin").await,
    );
    let conversation = app.conversation(&alice, &bob).await;
    let photo = send_file(
        &app,
        &alice,
        &conversation,
        "x.png",
        "image/png",
        &png_with_gps_exif(),
    )
    .await;
    let photo = photo["id"].as_str().unwrap().to_owned();
    scanned(&app, &bob, &photo).await;
    let (status, message) = app
        .post(
            &alice,
            &format!("/chat/conversations/{conversation}/messages"),
            json!({"body": "look", "clientMessageId": "reported", "attachmentIds": [photo]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    let (status, receipt) = app
        .post(
            &bob,
            "/chat/reports",
            json!({"reportedUserId": alice.id, "conversationId": conversation,
                   "messageId": message["id"], "category": "inappropriate"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    let report_id = receipt["id"].as_str().unwrap();
    let (_, report) = app
        .get(&admin, &format!("/admin/chat/reports/{report_id}"))
        .await;
    let frozen = &report["evidence"]["messages"][0]["attachments"][0];
    assert_eq!(frozen["id"], photo.as_str(), "{report}");
    assert_eq!(
        frozen["sha256"].as_str().map(str::len),
        Some(64),
        "the evidence keeps the hash"
    );

    app.clock.advance(chrono::Duration::days(91));
    assert_eq!(
        app.chat.expire_attachments().await.unwrap(),
        0,
        "kept while reported"
    );
    let (status, _) = app
        .post(
            &admin,
            &format!("/admin/chat/reports/{report_id}/action"),
            json!({"action": "dismiss"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.chat.expire_attachments().await.unwrap(),
        1,
        "deleted once closed"
    );
    app.shutdown().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn a_legal_hold_keeps_a_conversation_out_of_retention_until_released() {
    let (app, database) = spawn_app_on_own_database(|_| {}).await;
    let (alice, bob, admin) = (
        app.user("candidate").await,
        app.user("recruiter").await,
        app.user("admin").await,
    );
    let conversation = app.conversation(&alice, &bob).await;
    let photo = send_file(
        &app,
        &alice,
        &conversation,
        "x.png",
        "image/png",
        &png_with_gps_exif(),
    )
    .await;
    let photo = photo["id"].as_str().unwrap().to_owned();
    scanned(&app, &bob, &photo).await;
    let hold = format!("/admin/chat/conversations/{conversation}/hold");
    let (status, _) = app.post(&bob, &hold, json!({"reason": "dispute"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app.post(&admin, &hold, json!({"reason": ""})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_note")
    );
    let (status, held) = app
        .post(&admin, &hold, json!({"reason": "booking dispute #42"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["heldBy"], admin.id.as_str());
    let (_, shown) = app.get(&admin, &hold).await;
    assert_eq!(shown["reason"], "booking dispute #42");
    let (status, _) = app
        .post(
            &admin,
            &format!("/admin/chat/conversations/{}/hold", uuid::Uuid::now_v7()),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    app.clock.advance(chrono::Duration::days(91));
    assert_eq!(app.chat.expire_attachments().await.unwrap(), 0, "held");
    let (status, _) = app.delete(&admin, &hold).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.delete(&admin, &hold).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "released already");
    assert_eq!(app.chat.expire_attachments().await.unwrap(), 1, "released");
    for action in ["conversation.held", "conversation.released"] {
        let (_, audit) = app
            .get(&admin, &format!("/admin/chat/audit?action={action}"))
            .await;
        assert_eq!(
            audit["items"][0]["targetId"],
            conversation.as_str(),
            "{action}"
        );
    }
    app.shutdown().await;
    drop_database(&database).await;
}
