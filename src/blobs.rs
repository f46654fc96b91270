//! The blob store of attachments (`object_store`): a local directory or an
//! S3 bucket, and the short-lived signed URLs through which clients upload
//! and download without Parley's credentials.
//!
//! - `file://…`: Parley serves the signed URLs itself (`PUT` / `GET
//!   /blobs/<key>`); a URL is an HMAC-SHA256 (a key derived from the JWT
//!   secret) over the method, the key, the expiry and the parameters it
//!   fixes — the most bytes an upload may have, the type and disposition a
//!   download is served with — so changing any of them breaks it. URLs are
//!   relative to the API's address.
//! - `s3://bucket`: S3's own presigned URLs (SigV4; the upload's
//!   `Content-Type` and the download's `response-content-type` and
//!   `response-content-disposition` are signed in — an upload's size cannot
//!   be, so it is checked when the upload is completed); region and
//!   credentials from the usual `AWS_*` variables, `PARLEY_S3_ENDPOINT` for
//!   S3-compatible servers.
//!
//! What the URLs are for and who may have one is decided above
//! (`chat::attachments`).

use std::{sync::Arc, time::Duration};

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    aws::{AmazonS3, AmazonS3Builder},
    local::LocalFileSystem,
    path::Path,
    signer::{HeaderValue, Method, SignedUrlOptions, Signer},
};
use ring::hmac;

use crate::{
    config::{AttachmentSettings, Secret},
    domain::ChatError,
};

/// A URL a client may use once, until `expires_at`.
#[derive(Clone, Debug)]
pub struct SignedUrl {
    pub url: String,
    pub method: &'static str,
    /// Headers the request must carry.
    pub headers: Vec<(&'static str, String)>,
    pub expires_at: DateTime<Utc>,
}

/// How a download is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serving {
    pub content_type: String,
    /// `inline` or `attachment; filename*=…`.
    pub disposition: String,
}

/// The parameters of a local signed URL, as the request carries them.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct LocalSignature {
    pub exp: i64,
    pub sig: String,
    /// Uploads: the most bytes the body may have.
    pub size: Option<u64>,
    /// Downloads: the `Content-Type` to serve.
    #[serde(rename = "type")]
    pub content_type: Option<String>,
    /// Downloads: the `Content-Disposition` to serve.
    pub disposition: Option<String>,
}

enum Signing {
    /// Parley serves the URLs; signed with this key.
    Local(hmac::Key),
    S3(Arc<AmazonS3>),
}

/// The store and its URL signing.
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    signing: Signing,
    /// `file` or `s3`, for `/readyz`.
    kind: &'static str,
}

impl BlobStore {
    pub fn from_settings(
        settings: &AttachmentSettings,
        jwt_secret: &Secret,
    ) -> anyhow::Result<Self> {
        let location = settings.blob_store.as_str();
        if let Some(dir) = location.strip_prefix("file://") {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("PARLEY_BLOB_STORE {dir}: {e}"))?;
            let store = LocalFileSystem::new_with_prefix(dir)?;
            // A key of its own, derived from the JWT secret.
            let derived = hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, jwt_secret.expose().as_bytes()),
                b"parley blob URLs",
            );
            Ok(Self {
                store: Arc::new(store),
                signing: Signing::Local(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())),
                kind: "file",
            })
        } else if let Some(bucket) = location.strip_prefix("s3://") {
            crate::push::install_tls_provider();
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &settings.s3_endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            let s3 = Arc::new(builder.build()?);
            Ok(Self {
                store: s3.clone(),
                signing: Signing::S3(s3),
                kind: "s3",
            })
        } else {
            anyhow::bail!("PARLEY_BLOB_STORE must be file://<dir> or s3://<bucket>, not {location}")
        }
    }

    /// `file` or `s3`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// A URL to upload at most `size` bytes to `key`, valid for `ttl` from
    /// `now` (the rules' clock; S3 counts by its own).
    pub async fn upload_url(
        &self,
        key: &str,
        size: u64,
        content_type: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<SignedUrl, ChatError> {
        let expires_at = expiry(now, ttl);
        let url = match &self.signing {
            Signing::Local(hmac_key) => {
                let exp = expires_at.timestamp();
                let sig = local_signature(hmac_key, "PUT", key, exp, &size.to_string());
                format!("/blobs/{key}?exp={exp}&size={size}&sig={sig}")
            }
            Signing::S3(s3) => {
                // S3 cannot bind the size into a presigned PUT (only a POST
                // policy can): what arrives is measured when the upload is
                // completed, and blocked when larger than declared.
                let options = SignedUrlOptions::default().with_signed_header(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_str(content_type)
                        .map_err(|_| ChatError::invalid("invalid_type", "invalid content type"))?,
                );
                s3.signed_url_opts(Method::PUT, &Path::from(key), ttl, &options)
                    .await
                    .map_err(store_error)?
                    .to_string()
            }
        };
        Ok(SignedUrl {
            url,
            method: "PUT",
            headers: vec![("Content-Type", content_type.to_owned())],
            expires_at,
        })
    }

    /// A URL to download `key`, served as `serving` says, valid for `ttl`
    /// from `now`.
    pub async fn download_url(
        &self,
        key: &str,
        serving: &Serving,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<SignedUrl, ChatError> {
        let expires_at = expiry(now, ttl);
        let url = match &self.signing {
            Signing::Local(hmac_key) => {
                let exp = expires_at.timestamp();
                let fixed = format!("{}\n{}", serving.content_type, serving.disposition);
                let sig = local_signature(hmac_key, "GET", key, exp, &fixed);
                format!(
                    "/blobs/{key}?exp={exp}&type={}&disposition={}&sig={sig}",
                    percent_encode(&serving.content_type),
                    percent_encode(&serving.disposition)
                )
            }
            Signing::S3(s3) => {
                let options = SignedUrlOptions::default().with_query([
                    ("response-content-type", serving.content_type.as_str()),
                    ("response-content-disposition", serving.disposition.as_str()),
                ]);
                s3.signed_url_opts(Method::GET, &Path::from(key), ttl, &options)
                    .await
                    .map_err(store_error)?
                    .to_string()
            }
        };
        Ok(SignedUrl {
            url,
            method: "GET",
            headers: Vec::new(),
            expires_at,
        })
    }

    /// Checks a local signed URL for `method` on `key` (refused when
    /// tampered with or expired); what it fixes comes back checked.
    pub fn verify_local(
        &self,
        method: &str,
        key: &str,
        signature: &LocalSignature,
        now: DateTime<Utc>,
    ) -> Result<(), ChatError> {
        let Signing::Local(hmac_key) = &self.signing else {
            return Err(ChatError::NotFound { what: "blob" });
        };
        let fixed = match method {
            "PUT" => signature.size.map(|s| s.to_string()).unwrap_or_default(),
            _ => format!(
                "{}\n{}",
                signature.content_type.as_deref().unwrap_or_default(),
                signature.disposition.as_deref().unwrap_or_default()
            ),
        };
        let given = Base64UrlUnpadded::decode_vec(&signature.sig).unwrap_or_default();
        let message = signed_text(method, key, signature.exp, &fixed);
        if hmac::verify(hmac_key, message.as_bytes(), &given).is_err() {
            return Err(ChatError::forbidden(
                "invalid_signature",
                "this link is not valid",
            ));
        }
        if signature.exp < now.timestamp() {
            return Err(ChatError::forbidden(
                "link_expired",
                "this link has expired",
            ));
        }
        Ok(())
    }

    /// Stores `bytes` at `key` unless something is there already; false
    /// when it was (nothing is written then).
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<bool, ChatError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&Path::from(key), PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Stores `bytes` at `key` (replacing what is there), to be served as
    /// `serving` says where the store keeps such attributes.
    pub async fn put(&self, key: &str, bytes: Bytes, serving: &Serving) -> Result<(), ChatError> {
        let mut attributes = Attributes::new();
        if self.kind == "s3" {
            attributes.insert(Attribute::ContentType, serving.content_type.clone().into());
            attributes.insert(
                Attribute::ContentDisposition,
                serving.disposition.clone().into(),
            );
        }
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&Path::from(key), PutPayload::from(bytes), options)
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    /// The bytes at `key`; `None` when nothing is there.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, ChatError> {
        match self.store.get(&Path::from(key)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(store_error)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Removes `key` (nothing there is fine).
    pub async fn delete(&self, key: &str) -> Result<(), ChatError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Whether the store answers (`/readyz`): a look-up of a key that is not there.
    pub async fn reachable(&self) -> bool {
        matches!(
            self.store.head(&Path::from("readyz-probe")).await,
            Ok(_) | Err(object_store::Error::NotFound { .. })
        )
    }
}

fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

fn signed_text(method: &str, key: &str, exp: i64, fixed: &str) -> String {
    format!("{method}\n{key}\n{exp}\n{fixed}")
}

fn local_signature(key: &hmac::Key, method: &str, path: &str, exp: i64, fixed: &str) -> String {
    let tag = hmac::sign(key, signed_text(method, path, exp, fixed).as_bytes());
    Base64UrlUnpadded::encode_string(tag.as_ref())
}

/// Percent-encodes everything but unreserved characters (RFC 3986): for
/// query parameters, and for `filename*=` in a `Content-Disposition`.
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn store_error(e: object_store::Error) -> ChatError {
    ChatError::Unavailable {
        detail: "the blob store failed".into(),
        cause: Some(Box::new(e)),
    }
}
