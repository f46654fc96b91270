//! Attachments: files sent in a conversation, uploaded and downloaded
//! through short-lived signed URLs (`blobs`), and scanned before anyone can
//! download them.
//!
//! 1. [`ChatCore::start_attachment`]: a participant declares the file (name,
//!    type, size: the allow-list and limits apply; refused in an open
//!    request and across a block; 10 per hour) and gets an upload URL (15
//!    minutes, one use).
//! 2. The client uploads the bytes there (to Parley itself for a local
//!    store: [`ChatCore::receive_upload`]).
//! 3. [`ChatCore::complete_attachment`]: what was stored is checked — its
//!    size, and its type sniffed from its bytes (a "PNG" that is an
//!    executable is `blocked`) — and a scan job is queued in the same
//!    transaction (`pending_scan`).
//! 4. The job ([`ChatCore::scan_attachment`]) streams it to clamd: infected
//!    → `blocked` (the uploader gets a `system.notice`, the audit log a
//!    record for moderators); clean → images re-encoded without metadata,
//!    with a preview and a thumbnail, and `available`. An unreachable
//!    scanner is an error: the job is retried, nothing is passed unscanned.
//!    Each step publishes `attachment.updated` to the participants.
//! 5. Participants get a download URL (60 s) for an available attachment.
//!
//! Blob keys: the upload at `incoming/<id>`, the clean copies at
//! `files/<id>/<variant>`; only the latter are ever handed out.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ChatCore;
use crate::{
    blobs::{self, BlobStore, LocalSignature, Serving, SignedUrl},
    cluster::limits::LimitKind,
    domain::{
        ChatError, ConversationId, UserId,
        attachments::{self as rules, Attachment, AttachmentStatus},
        event::ServerEvent,
    },
    media,
    persistence::{
        attachments::{self, AttachmentRow, NewAttachment, Transition},
        audit::{self, AuditEntry},
        client, conversations, outbox,
        outbox::Job,
    },
    scanner::{Scanner, Verdict},
};

/// What a stored file may be fetched as: as uploaded, or (images) the
/// preview and thumbnail made after the scan.
const VARIANTS: [&str; 3] = ["original", "preview", "thumbnail"];

/// A variant as the OpenAPI document states it.
pub fn variant_schema() -> utoipa::openapi::Object {
    crate::domain::schema::one_of(
        &VARIANTS,
        "`original` (default), `preview` or `thumbnail` (images)",
    )
}

/// How long an upload URL works.
const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a download URL works.
const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(60);
/// Where data exports (`chat::privacy`) live in the blob store.
const EXPORTS_PREFIX: &str = "exports/";

/// The blob key of data export `id`.
pub(super) fn export_key(id: Uuid) -> String {
    format!("{EXPORTS_PREFIX}{id}.json")
}

/// The job kind of a scan.
pub(super) const SCAN_JOB: &str = "attachment_scan";
/// The job kind of removing a deleted attachment's bytes.
pub(super) const DELETE_JOB: &str = "attachment_delete";
/// Uploads never completed are deleted after this long.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::hours(1);
/// Most attachments one expiry batch deletes (or dead scans one pass revives).
pub(super) const EXPIRY_BATCH: i64 = 200;
/// A scan that failed every attempt (clamd away) is tried again this long
/// after it died: a file is never passed unscanned, nor left pending for good.
const RESCAN_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// The parts attachments need; `None` in [`super::Core`] when they are off.
pub struct AttachmentParts {
    pub blobs: BlobStore,
    /// `None`: no clamd configured, so nothing becomes available.
    pub scanner: Option<Scanner>,
    pub settings: crate::config::AttachmentSettings,
}

impl AttachmentParts {
    /// The parts, or `None` when attachments are off.
    pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Option<Self>> {
        let attachments = &settings.attachments;
        if !attachments.enabled {
            return Ok(None);
        }
        if attachments.clamd_addr.is_none() {
            tracing::warn!(
                "PARLEY_CLAMD_ADDR is not set: attachments can be uploaded but none can be \
                 scanned, so none becomes available"
            );
        }
        Ok(Some(Self {
            blobs: BlobStore::from_settings(attachments, &settings.auth.jwt_secret)?,
            scanner: attachments.clamd_addr.as_deref().map(Scanner::new),
            settings: attachments.clone(),
        }))
    }
}

/// What a client asks to send.
pub struct AttachmentRequest<'a> {
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size: u64,
}

/// The payload of a scan job, and of a deletion's.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentJob {
    attachment_id: Uuid,
}

impl AttachmentJob {
    fn payload(id: Uuid) -> Result<serde_json::Value, ChatError> {
        serde_json::to_value(Self { attachment_id: id })
            .map_err(|e| ChatError::internal(format!("an attachment job: {e}")))
    }

    fn of(job: &Job) -> Result<Uuid, ChatError> {
        serde_json::from_value::<Self>(job.payload.clone())
            .map(|j| j.attachment_id)
            .map_err(|e| ChatError::internal(format!("a malformed attachment job: {e}")))
    }
}

fn incoming_key(id: Uuid) -> String {
    format!("incoming/{id}")
}

fn variant_key(id: Uuid, variant: &str) -> String {
    format!("files/{id}/{variant}")
}

fn view(row: &AttachmentRow) -> Attachment {
    Attachment {
        id: row.id,
        conversation_id: row.conversation_id,
        uploader_id: row.uploader_id.clone(),
        filename: row.filename.clone(),
        content_type: row.content_type.clone(),
        size: row.size.unwrap_or(row.declared_size),
        status: row.status,
        variants: rules::visible_variants(row.status, row.variants.clone()),
        created_at: row.created_at,
    }
}

/// How a variant is served: images inline, everything else as a download
/// under its (escaped) name.
fn serving(row: &AttachmentRow) -> Serving {
    let disposition = if rules::is_image(&row.content_type) {
        "inline".to_owned()
    } else {
        format!(
            "attachment; filename*=UTF-8''{}",
            blobs::percent_encode(&row.filename)
        )
    };
    Serving {
        content_type: row.content_type.clone(),
        disposition,
    }
}

impl ChatCore {
    /// Whether attachments are on (`PARLEY_ATTACHMENTS`); when off, the
    /// transports answer 404 `attachments_disabled` before asking anything.
    pub fn attachments_enabled(&self) -> bool {
        self.attachments.is_some()
    }

    pub(super) fn attachment_parts(&self) -> Result<&AttachmentParts, ChatError> {
        self.attachments
            .as_ref()
            .ok_or(ChatError::NotFound { what: "attachment" })
    }

    /// Declares a file `user` wants to send in `conversation`; answers the
    /// attachment and where to upload its bytes.
    pub async fn start_attachment(
        &self,
        user: &UserId,
        conversation: Uuid,
        request: &AttachmentRequest<'_>,
    ) -> Result<(Attachment, SignedUrl), ChatError> {
        let parts = self.attachment_parts()?;
        let filename = rules::clean_filename(request.filename)?;
        let settings = &parts.settings;
        rules::check_declared(
            request.content_type,
            request.size,
            &settings.allowed_types,
            settings.max_bytes,
            settings.max_image_bytes,
        )?;
        let standing = attachments::standing(&self.pool, conversation, user).await?;
        if !standing.participant {
            return Err(ChatError::conversation_not_found());
        }
        if standing.blocked {
            return Err(ChatError::not_delivered());
        }
        if standing.request_open {
            return Err(ChatError::forbidden(
                "request_pending",
                "Files can be sent once the message request is accepted.",
            ));
        }
        self.safety.check_limit(user, LimitKind::Uploads).await?;
        let size = i64::try_from(request.size)
            .map_err(|_| ChatError::too_large("the file is too large"))?;
        let row = attachments::insert(
            &self.pool,
            &NewAttachment {
                id: Uuid::now_v7(),
                conversation,
                uploader: user,
                filename: &filename,
                content_type: request.content_type,
                declared_size: size,
            },
        )
        .await?;
        let upload = parts
            .blobs
            .upload_url(
                &incoming_key(row.id),
                request.size,
                request.content_type,
                UPLOAD_URL_TTL,
                self.safety.clock().now(),
            )
            .await?;
        Ok((view(&row), upload))
    }

    /// Takes the bytes sent to a local signed upload URL for `key`: refused
    /// when the URL is tampered with or expired, when the body is larger than
    /// it allows, and when it was used already.
    pub async fn receive_upload(
        &self,
        key: &str,
        signature: &LocalSignature,
        body: Bytes,
    ) -> Result<(), ChatError> {
        let parts = self.attachment_parts()?;
        parts
            .blobs
            .verify_local("PUT", key, signature, self.safety.clock().now())?;
        if signature.size.is_some_and(|most| body.len() as u64 > most) {
            return Err(ChatError::too_large("more bytes than this upload allows"));
        }
        let id = key
            .strip_prefix("incoming/")
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or(ChatError::NotFound { what: "upload" })?;
        let row = attachments::find(&client(&self.pool).await?, id)
            .await?
            .ok_or(ChatError::NotFound { what: "upload" })?;
        if row.status != AttachmentStatus::AwaitingUpload || row.uploaded_at.is_some() {
            return Err(upload_used());
        }
        // A signed upload URL works once.
        if !parts.blobs.create(key, body).await? || !attachments::uploaded(&self.pool, id).await? {
            return Err(upload_used());
        }
        Ok(())
    }

    /// The uploader says the bytes are stored: they are checked and queued
    /// for scanning (or blocked). Saying it again answers the attachment as
    /// it stands.
    pub async fn complete_attachment(
        &self,
        user: &UserId,
        id: Uuid,
    ) -> Result<Attachment, ChatError> {
        let parts = self.attachment_parts()?;
        let row = attachments::for_participant(&self.pool, id, user)
            .await?
            .ok_or(ChatError::NotFound { what: "attachment" })?;
        if row.uploader_id != user.as_str() {
            return Err(ChatError::forbidden(
                "not_uploader",
                "only who uploaded a file can complete it",
            ));
        }
        if row.status != AttachmentStatus::AwaitingUpload {
            return Ok(view(&row));
        }
        let bytes =
            parts
                .blobs
                .get(&incoming_key(id))
                .await?
                .ok_or_else(|| ChatError::Conflict {
                    code: "upload_missing",
                    message: "nothing was uploaded for this attachment yet".into(),
                })?;
        let size = bytes.len() as i64;
        let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
        let limit = if rules::is_image(&row.content_type) {
            parts.settings.max_image_bytes
        } else {
            parts.settings.max_bytes
        };
        let refusal = if size as u64 > limit || size > row.declared_size {
            Some("too_large")
        } else if !rules::bytes_match(
            &row.content_type,
            rules::sniff(&bytes[..bytes.len().min(512)]),
        ) {
            Some("type_mismatch")
        } else {
            None
        };
        let mut db = client(&self.pool).await?;
        let tx = db.transaction().await?;
        let to = if refusal.is_some() {
            AttachmentStatus::Blocked
        } else {
            AttachmentStatus::PendingScan
        };
        let moved = attachments::transition(
            &tx,
            &Transition {
                id,
                from: AttachmentStatus::AwaitingUpload,
                to,
                size: Some(size),
                sha256: Some(&sha256),
                variants: &[],
                blocked_reason: refusal,
            },
        )
        .await?;
        if moved && refusal.is_none() {
            outbox::add(&tx, SCAN_JOB, &AttachmentJob::payload(id)?).await?;
        }
        tx.commit().await?;
        if moved && refusal.is_some() {
            // What is blocked is not kept.
            parts.blobs.delete(&incoming_key(id)).await?;
        }
        self.attachment_changed(id).await
    }

    /// Runs a scan job: the upload goes to clamd, then either becomes the
    /// clean copies (`available`) or is blocked. Repeated runs do nothing.
    pub(super) async fn scan_attachment(&self, job: &Job) -> Result<(), ChatError> {
        let id = AttachmentJob::of(job)?;
        let parts = self.attachment_parts()?;
        let Some(row) = attachments::find(&client(&self.pool).await?, id).await? else {
            return Ok(());
        };
        if row.status != AttachmentStatus::PendingScan {
            return Ok(());
        }
        let scanner = parts
            .scanner
            .as_ref()
            .ok_or_else(|| ChatError::unavailable("no virus scanner is configured"))?;
        let Some(bytes) = parts.blobs.get(&incoming_key(id)).await? else {
            return Err(ChatError::internal(format!(
                "attachment {id} is pending a scan but its upload is gone"
            )));
        };
        let started = std::time::Instant::now();
        let verdict = scanner.scan(&bytes).await?;
        metrics::histogram!("parley_attachment_scan_seconds")
            .record(started.elapsed().as_secs_f64());
        let label = match verdict {
            Verdict::Infected(signature) => {
                self.block_infected(&row, &signature).await?;
                "infected"
            }
            Verdict::Clean => {
                self.make_available(&parts.blobs, &row, bytes).await?;
                "clean"
            }
        };
        metrics::counter!("parley_attachments_scanned_total", "verdict" => label).increment(1);
        parts.blobs.delete(&incoming_key(id)).await?;
        self.attachment_changed(id).await?;
        Ok(())
    }

    async fn block_infected(&self, row: &AttachmentRow, signature: &str) -> Result<(), ChatError> {
        let reason = format!("infected: {signature}");
        let mut db = client(&self.pool).await?;
        let tx = db.transaction().await?;
        let moved = attachments::transition(&tx, &scan_blocked(row.id, &reason)).await?;
        if moved {
            audit::record(
                &tx,
                &AuditEntry {
                    actor: None,
                    action: "attachment.blocked",
                    target_type: "attachment",
                    target_id: &row.id.to_string(),
                    conversation: Some(row.conversation_id),
                    details: serde_json::json!({
                        "uploaderId": row.uploader_id,
                        "filename": row.filename,
                        "sha256": row.sha256,
                        "reason": reason,
                    }),
                },
            )
            .await?;
        }
        tx.commit().await?;
        if moved && let Ok(uploader) = UserId::parse(&row.uploader_id) {
            self.publish(
                &[uploader],
                ServerEvent::SystemNotice {
                    code: "attachment_blocked".into(),
                    message: format!(
                        "{} was blocked: it contains a virus or malware.",
                        row.filename
                    ),
                },
            );
        }
        Ok(())
    }

    async fn make_available(
        &self,
        blobs: &BlobStore,
        row: &AttachmentRow,
        bytes: Bytes,
    ) -> Result<(), ChatError> {
        let mut variants = vec!["original".to_owned()];
        if rules::is_image(&row.content_type) {
            let content_type = rules::sniff(&bytes).unwrap_or("application/octet-stream");
            let cleaned =
                tokio::task::spawn_blocking(move || media::clean_image(&bytes, content_type))
                    .await
                    .map_err(|e| ChatError::internal(format!("image task: {e}")))?;
            let Ok(clean) = cleaned else {
                // Not decodable as what it claims: not passed on.
                return self.block_unreadable(row).await;
            };
            let serving = serving(row);
            for (variant, encoded) in [
                ("original", clean.original),
                ("preview", clean.preview),
                ("thumbnail", clean.thumbnail),
            ] {
                blobs
                    .put(
                        &variant_key(row.id, variant),
                        Bytes::from(encoded),
                        &serving,
                    )
                    .await?;
            }
            variants.extend(["preview".to_owned(), "thumbnail".to_owned()]);
        } else {
            blobs
                .put(&variant_key(row.id, "original"), bytes, &serving(row))
                .await?;
        }
        attachments::transition(
            &client(&self.pool).await?,
            &Transition {
                id: row.id,
                from: AttachmentStatus::PendingScan,
                to: AttachmentStatus::Available,
                size: None,
                sha256: None,
                variants: &variants,
                blocked_reason: None,
            },
        )
        .await?;
        Ok(())
    }

    async fn block_unreadable(&self, row: &AttachmentRow) -> Result<(), ChatError> {
        attachments::transition(
            &client(&self.pool).await?,
            &scan_blocked(row.id, "unreadable_image"),
        )
        .await?;
        Ok(())
    }

    /// Deletes what has outlived its time — uploads never completed after an
    /// hour, images after `PARLEY_IMAGE_RETENTION_DAYS`, other files after
    /// `PARLEY_ATTACHMENT_RETENTION_DAYS` (by the rules' clock), none of a
    /// held conversation: each is marked `deleted` at once (no download from
    /// then on) and its bytes are removed by a job queued in the same
    /// transaction. One batch of at most [`EXPIRY_BATCH`]; answers how many
    /// were deleted. The `attachment_retention` job runs batches until one
    /// comes back short.
    pub async fn expire_attachments(&self) -> Result<usize, ChatError> {
        let Some(parts) = self.attachments.as_ref() else {
            return Ok(0);
        };
        let now = self.safety.clock().now();
        let days = |d: u32| chrono::Duration::days(i64::from(d));
        let mut db = client(&self.pool).await?;
        let tx = db.transaction().await?;
        let expired = attachments::expire(
            &tx,
            now - ABANDONED_AFTER,
            now - days(parts.settings.image_retention_days),
            now - days(parts.settings.retention_days),
            EXPIRY_BATCH,
        )
        .await?;
        for id in &expired {
            outbox::add(&tx, DELETE_JOB, &AttachmentJob::payload(*id)?).await?;
        }
        tx.commit().await?;
        for id in &expired {
            self.attachment_changed(*id).await?;
        }
        if !expired.is_empty() {
            metrics::counter!("parley_attachments_deleted_total").increment(expired.len() as u64);
        }
        Ok(expired.len())
    }

    /// Puts back into the outbox the scans that died more than five minutes
    /// ago (clamd was away through all their attempts); every node runs it
    /// each minute. Answers how many.
    pub async fn revive_failed_scans(&self) -> Result<u64, ChatError> {
        if self.attachments.is_none() {
            return Ok(0);
        }
        let db = client(&self.pool).await?;
        let rescans = outbox::revive_kind(
            &db,
            SCAN_JOB,
            chrono::Utc::now() - RESCAN_AFTER,
            EXPIRY_BATCH,
        )
        .await?;
        if rescans > 0 {
            tracing::info!(
                rescans,
                "scans that had failed every attempt are tried again"
            );
        }
        Ok(rescans)
    }

    /// Runs a deletion job: every blob of the attachment goes.
    pub(super) async fn delete_attachment_blobs(&self, job: &Job) -> Result<(), ChatError> {
        let id = AttachmentJob::of(job)?;
        let parts = self.attachment_parts()?;
        parts.blobs.delete(&incoming_key(id)).await?;
        for variant in VARIANTS {
            parts.blobs.delete(&variant_key(id, variant)).await?;
        }
        Ok(())
    }

    /// Publishes the attachment as it now stands to its conversation's
    /// participants, and answers it.
    async fn attachment_changed(&self, id: Uuid) -> Result<Attachment, ChatError> {
        let db = client(&self.pool).await?;
        let row = attachments::find(&db, id)
            .await?
            .ok_or(ChatError::NotFound { what: "attachment" })?;
        let attachment = view(&row);
        let audience = conversations::participant_ids(&db, row.conversation_id).await?;
        self.publish(
            &audience,
            ServerEvent::AttachmentUpdated(attachment.clone()),
        );
        Ok(attachment)
    }

    /// The attachments `ids` that `sender` may send in `conversation`: each
    /// their own upload there, completed (scanned or being scanned) and not
    /// sent before; 422 `invalid_attachments` otherwise (none for no ids).
    pub(super) async fn attachments_to_send(
        &self,
        conversation: ConversationId,
        sender: &UserId,
        ids: &[Uuid],
    ) -> Result<Vec<Attachment>, ChatError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.attachment_parts()?;
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        if unique.len() != ids.len() || ids.len() > rules::MAX_PER_MESSAGE {
            return Err(invalid_attachments());
        }
        let rows = attachments::sendable(&self.pool, conversation.0, sender, ids).await?;
        if rows.len() != ids.len() {
            return Err(invalid_attachments());
        }
        Ok(rows.iter().map(view).collect())
    }

    /// The attachment `id`, for a participant of its conversation.
    pub async fn attachment(&self, user: &UserId, id: Uuid) -> Result<Attachment, ChatError> {
        self.attachment_parts()?;
        attachments::for_participant(&self.pool, id, user)
            .await?
            .map(|row| view(&row))
            .ok_or(ChatError::NotFound { what: "attachment" })
    }

    /// A download URL for a variant of an available attachment.
    pub async fn attachment_download(
        &self,
        user: &UserId,
        id: Uuid,
        variant: &str,
    ) -> Result<SignedUrl, ChatError> {
        let parts = self.attachment_parts()?;
        let row = attachments::for_participant(&self.pool, id, user)
            .await?
            .ok_or(ChatError::NotFound { what: "attachment" })?;
        match row.status {
            AttachmentStatus::Available => {}
            AttachmentStatus::AwaitingUpload | AttachmentStatus::PendingScan => {
                return Err(ChatError::Conflict {
                    code: "attachment_not_available",
                    message: "the file is not available yet (it is being scanned)".into(),
                });
            }
            AttachmentStatus::Blocked => {
                return Err(ChatError::gone(
                    "attachment_blocked",
                    "this file was blocked",
                ));
            }
            AttachmentStatus::Deleted => {
                return Err(ChatError::gone(
                    "attachment_deleted",
                    "this file was deleted",
                ));
            }
        }
        if !row.variants.iter().any(|v| v == variant) {
            return Err(ChatError::NotFound { what: "variant" });
        }
        parts
            .blobs
            .download_url(
                &variant_key(id, variant),
                &serving(&row),
                DOWNLOAD_URL_TTL,
                self.safety.clock().now(),
            )
            .await
    }

    /// The bytes behind a local signed download URL for `key`, and how to
    /// serve them.
    pub async fn serve_blob(
        &self,
        key: &str,
        signature: &LocalSignature,
    ) -> Result<(Bytes, Serving), ChatError> {
        let parts = self.attachment_parts()?;
        if !key.starts_with("files/") && !key.starts_with(EXPORTS_PREFIX) {
            return Err(ChatError::NotFound { what: "blob" });
        }
        parts
            .blobs
            .verify_local("GET", key, signature, self.safety.clock().now())?;
        let bytes = parts
            .blobs
            .get(key)
            .await?
            .ok_or(ChatError::NotFound { what: "blob" })?;
        Ok((
            bytes,
            Serving {
                content_type: signature.content_type.clone().unwrap_or_default(),
                disposition: signature.disposition.clone().unwrap_or_default(),
            },
        ))
    }

    /// Whether the blob store and the scanner answer (`None` for each when
    /// attachments are off, or no scanner is configured).
    pub async fn attachments_ready(&self) -> (Option<bool>, Option<bool>) {
        let Some(parts) = self.attachments.as_ref() else {
            return (None, None);
        };
        let scanner = match &parts.scanner {
            Some(scanner) => Some(scanner.reachable().await),
            None => None,
        };
        (Some(parts.blobs.reachable().await), scanner)
    }
}

/// A scanned attachment blocked, and why.
fn scan_blocked(id: Uuid, reason: &str) -> Transition<'_> {
    Transition {
        id,
        from: AttachmentStatus::PendingScan,
        to: AttachmentStatus::Blocked,
        size: None,
        sha256: None,
        variants: &[],
        blocked_reason: Some(reason),
    }
}

fn invalid_attachments() -> ChatError {
    ChatError::invalid(
        "invalid_attachments",
        "attachments must be your own completed uploads in this conversation, each sent once \
         (at most 10)",
    )
}

fn upload_used() -> ChatError {
    ChatError::Conflict {
        code: "upload_used",
        message: "this upload link was used already".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
