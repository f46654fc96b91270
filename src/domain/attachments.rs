//! The rules of attachments that need no I/O: the life of one (its status),
//! which files may be sent and how big, what a stored file really is (sniffed
//! from its first bytes, never trusted from its name or declared type), and
//! the file name shown to others.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ChatError;

/// An attachment as participants see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub uploader_id: String,
    pub filename: String,
    pub content_type: String,
    /// Bytes: as declared until the upload is complete, then as stored.
    pub size: i64,
    pub status: AttachmentStatus,
    /// What can be downloaded once available: `original`, and for images
    /// `preview` (1200 px) and `thumbnail` (300 px).
    pub variants: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// Where an attachment stands. Only `available` ones can be downloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentStatus {
    /// Created; the client has not said its upload is complete.
    AwaitingUpload,
    /// Uploaded; the virus scan (and, for images, the clean copies) pending.
    PendingScan,
    Available,
    /// Infected, or not what it claimed to be; never downloadable.
    Blocked,
    /// Removed by retention (or never uploaded); the blob is gone.
    Deleted,
}

impl AttachmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingUpload => "awaiting_upload",
            Self::PendingScan => "pending_scan",
            Self::Available => "available",
            Self::Blocked => "blocked",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ChatError> {
        Ok(match raw {
            "awaiting_upload" => Self::AwaitingUpload,
            "pending_scan" => Self::PendingScan,
            "available" => Self::Available,
            "blocked" => Self::Blocked,
            "deleted" => Self::Deleted,
            other => {
                return Err(ChatError::internal(format!(
                    "unknown attachment status {other}"
                )));
            }
        })
    }
}

/// Most attachments one message carries.
pub const MAX_PER_MESSAGE: usize = 10;

/// The variants participants are shown: none until the file is available.
pub fn visible_variants(status: AttachmentStatus, variants: Vec<String>) -> Vec<String> {
    if status == AttachmentStatus::Available {
        variants
    } else {
        Vec::new()
    }
}

/// Longest file name kept (in characters).
const MAX_FILENAME_CHARS: usize = 255;

/// Whether `content_type` is an image Parley re-encodes and previews.
pub fn is_image(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/jpeg" | "image/png" | "image/webp" | "image/gif"
    )
}

/// The file name as others see it: the last path component only, at most
/// 255 characters. Control characters and bidirectional overrides or
/// isolates (`invoice\u{202e}gpj.exe` shows as `invoiceexe.jpg`) are
/// refused, as is a name with nothing left.
pub fn clean_filename(raw: &str) -> Result<String, ChatError> {
    if raw
        .chars()
        .any(|c| c.is_control() || super::text::is_bidi_control(c))
    {
        return Err(ChatError::invalid(
            "invalid_filename",
            "the file name contains control or text-direction characters",
        ));
    }
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().take(MAX_FILENAME_CHARS).collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return Err(ChatError::invalid(
            "invalid_filename",
            "the file needs a name",
        ));
    }
    Ok(cleaned)
}

/// Checks a new attachment's declared type and size against the allow-list
/// and the limits (images have their own, smaller one).
pub fn check_declared(
    content_type: &str,
    size: u64,
    allowed: &[String],
    max_bytes: u64,
    max_image_bytes: u64,
) -> Result<(), ChatError> {
    if !allowed.iter().any(|t| t == content_type) {
        return Err(ChatError::invalid(
            "type_not_allowed",
            format!("files of type {content_type} cannot be sent"),
        ));
    }
    if size == 0 {
        return Err(ChatError::invalid("empty_file", "the file is empty"));
    }
    let limit = if is_image(content_type) {
        max_image_bytes
    } else {
        max_bytes
    };
    if size > limit {
        return Err(ChatError::too_large(format!(
            "files of this type may be at most {limit} bytes"
        )));
    }
    Ok(())
}

/// What the first bytes of a file say it is, as one of the families below;
/// `None` when it is none of them.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    const OLE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else if head.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if head.starts_with(b"PK\x03\x04") {
        // Office Open XML and OpenDocument files are ZIP archives.
        Some("application/zip")
    } else if head.starts_with(OLE) {
        // The older Word, Excel and PowerPoint files.
        Some("application/x-ole-storage")
    } else if looks_like_text(head) {
        Some("text/plain")
    } else {
        None
    }
}

/// UTF-8 (a character cut at the end of `head` allowed) with no NUL and no
/// control characters other than whitespace.
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            // Only the last character is cut short.
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

/// Whether a file whose bytes sniff as `sniffed` may be what the uploader
/// declared (`declared`): the same image or PDF type, a ZIP for the newer
/// office documents, an OLE file for the older ones, text for text.
pub fn bytes_match(declared: &str, sniffed: Option<&str>) -> bool {
    let Some(sniffed) = sniffed else {
        return false;
    };
    match declared {
        "application/msword" | "application/vnd.ms-excel" | "application/vnd.ms-powerpoint" => {
            sniffed == "application/x-ole-storage"
        }
        d if d.starts_with("application/vnd.openxmlformats-officedocument.")
            || d.starts_with("application/vnd.oasis.opendocument.")
            || d == "application/zip" =>
        {
            sniffed == "application/zip"
        }
        d => d == sniffed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_direction_tricks_are_refused() {
        assert_eq!(clean_filename("C:\\Users\\me\\cv.pdf").unwrap(), "cv.pdf");
        assert_eq!(clean_filename("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(clean_filename(&"a".repeat(300)).unwrap().len(), 255);
        for bad in [
            "",
            "  ",
            "dir/",
            "..",
            "\u{0}",
            "invoice\u{202E}fdp.exe",
            "\u{2066}cv.pdf",
        ] {
            assert_eq!(
                clean_filename(bad).unwrap_err().code(),
                "invalid_filename",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn declared_types_and_sizes_are_checked() {
        let allowed: Vec<String> = ["image/png", "application/pdf"].map(String::from).to_vec();
        let check = |t: &str, size| check_declared(t, size, &allowed, 10_000, 5_000);
        assert!(check("application/pdf", 10_000).is_ok());
        assert!(check("image/png", 5_000).is_ok());
        assert_eq!(check("image/png", 5_001).unwrap_err().code(), "too_large");
        assert_eq!(
            check("application/pdf", 10_001).unwrap_err().code(),
            "too_large"
        );
        assert_eq!(
            check("application/x-msdownload", 10).unwrap_err().code(),
            "type_not_allowed"
        );
        assert_eq!(
            check("application/pdf", 0).unwrap_err().code(),
            "empty_file"
        );
    }

    #[test]
    fn bytes_decide_what_a_file_is() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(b"hello\nworld\t"), Some("text/plain"));
        assert_eq!(sniff("caf\u{e9}".as_bytes()), Some("text/plain"));
        assert_eq!(sniff(&"caf\u{e9}".as_bytes()[..4]), Some("text/plain"));
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0"), None, "a Windows executable");
        assert_eq!(sniff(b"\x7fELF\x02\x01"), None);
        assert!(bytes_match("image/png", sniff(b"\x89PNG\r\n\x1a\n")));
        assert!(!bytes_match("image/png", sniff(b"MZ\x90\0")));
        assert!(!bytes_match("image/png", sniff(&[0xFF, 0xD8, 0xFF])));
        assert!(bytes_match(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            sniff(b"PK\x03\x04\x14\0")
        ));
        assert!(!bytes_match("text/plain", sniff(b"PK\x03\x04\x14\0")));
        assert!(bytes_match(
            "application/msword",
            sniff(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1])
        ));
    }
}
