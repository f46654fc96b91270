//! Sending web push: the payload encrypted for the browser's keys
//! (`aes128gcm`, RFC 8291 over RFC 8188) and signed with this server's VAPID
//! key (RFC 8292); the request goes out with `reqwest` (rustls with the
//! system's roots). What a push says is the application layer's business
//! (`chat::push`).
//!
//! The encryption is done here with `ring` (the key agreement, HKDF and
//! AES-GCM that rustls already brings): it costs a quarter of what
//! `web-push-native`'s pure-Rust P-256 does, and it runs once per push. The
//! VAPID token (`web-push-native`'s signature) is made once per push service
//! and reused for half its validity, instead of signed for every push.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64ct::{Base64UrlUnpadded, Encoding};
use ring::{aead, agreement, hkdf, rand::SecureRandom};
use web_push_native::{
    jwt_simple::algorithms::ES256KeyPair, p256, p256::elliptic_curve::sec1::ToEncodedPoint,
    vapid::VapidSignature,
};

use crate::{config::PushSettings, domain::ChatError};

/// How long a push service keeps a push for a browser that is away.
const TIME_TO_LIVE: Duration = Duration::from_secs(24 * 3600);
/// How long a VAPID token is valid (RFC 8292 allows at most 24 hours); one
/// is reused for half of that.
const VAPID_VALIDITY: Duration = Duration::from_secs(12 * 3600);
/// How long one push request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Push services whose VAPID token is kept; past this the cache starts over.
const MAX_CACHED_AUDIENCES: usize = 1024;

/// A browser's subscription (its `PushSubscription`).
#[derive(Clone, Debug)]
pub struct Subscription {
    pub endpoint: String,
    /// The browser's P-256 key, base64url.
    pub p256dh: String,
    /// The browser's auth secret, base64url.
    pub auth: String,
}

/// What the push service said.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    /// 404 or 410: the subscription is gone for good.
    Gone,
}

/// The server's VAPID identity and an HTTP client.
pub struct Pusher {
    key: ES256KeyPair,
    /// The public key as browsers want it (`applicationServerKey`):
    /// the uncompressed point, base64url.
    public_key: String,
    subject: String,
    http: reqwest::Client,
    /// The `Authorization` header per push service (`scheme://host`), and
    /// until when it is used.
    vapid_headers: Mutex<HashMap<String, (Instant, String)>>,
    random: ring::rand::SystemRandom,
}

/// Makes rustls with `ring` the process's TLS provider (for the HTTP client
/// of web push, and any other `reqwest` client in the process: with the
/// provider-less rustls build, a client cannot be built before this has
/// run). Safe to call any number of times.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Pusher {
    pub fn from_settings(settings: &PushSettings) -> anyhow::Result<Self> {
        install_tls_provider();
        let key = match &settings.vapid_private_key {
            Some(private) => ES256KeyPair::from_bytes(
                &Base64UrlUnpadded::decode_vec(private.expose())
                    .map_err(|_| anyhow::anyhow!("PARLEY_VAPID_PRIVATE_KEY is not base64url"))?,
            )
            .map_err(|e| anyhow::anyhow!("PARLEY_VAPID_PRIVATE_KEY: {e}"))?,
            None => {
                tracing::warn!(
                    "PARLEY_VAPID_PRIVATE_KEY is not set: web push uses a key made for this run \
                     only, so browsers' subscriptions stop working at the next start"
                );
                ES256KeyPair::generate()
            }
        };
        let compressed = key.public_key().to_bytes();
        let point = p256::PublicKey::from_sec1_bytes(&compressed)
            .map_err(|e| anyhow::anyhow!("the VAPID public key: {e}"))?
            .to_encoded_point(false);
        let public_key = Base64UrlUnpadded::encode_string(point.as_bytes());
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            key,
            public_key,
            subject: settings.vapid_subject.clone(),
            http,
            vapid_headers: Mutex::default(),
            random: ring::rand::SystemRandom::new(),
        })
    }

    /// The `applicationServerKey` browsers subscribe with.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Checks that a subscription's keys can be used (before it is stored).
    pub fn check(subscription: &Subscription) -> Result<(), ChatError> {
        keys(subscription).map(|_| ())
    }

    /// Sends `payload` (encrypted for the subscription) to its push service.
    pub async fn send(
        &self,
        subscription: &Subscription,
        payload: &[u8],
    ) -> Result<Delivery, ChatError> {
        let (endpoint, browser_key, auth) = keys(subscription)?;
        let body = encrypt(&self.random, payload, &browser_key, &auth)?;
        let response = self
            .http
            .post(endpoint.to_string())
            .header("TTL", TIME_TO_LIVE.as_secs())
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", self.vapid_header(&endpoint)?)
            .body(body)
            .send()
            .await
            .map_err(|e| ChatError::unavailable(format!("push service: {e}")))?;
        match response.status().as_u16() {
            200..=299 => Ok(Delivery::Accepted),
            404 | 410 => Ok(Delivery::Gone),
            status => Err(ChatError::unavailable(format!(
                "push service answered {status}"
            ))),
        }
    }

    /// The VAPID `Authorization` header for `endpoint`'s push service.
    fn vapid_header(&self, endpoint: &http::Uri) -> Result<String, ChatError> {
        let audience = format!(
            "{}://{}",
            endpoint.scheme_str().unwrap_or("https"),
            endpoint.host().unwrap_or_default()
        );
        let now = Instant::now();
        let mut cache = self
            .vapid_headers
            .lock()
            .map_err(|_| ChatError::internal("the VAPID cache is poisoned"))?;
        if let Some((until, header)) = cache.get(&audience)
            && *until > now
        {
            return Ok(header.clone());
        }
        let header = VapidSignature::sign(endpoint, VAPID_VALIDITY, &self.subject, &self.key)
            .map_err(|e| ChatError::internal(format!("signing a VAPID token: {e}")))?
            .to_string();
        if cache.len() >= MAX_CACHED_AUDIENCES {
            cache.clear();
        }
        cache.insert(audience, (now + VAPID_VALIDITY / 2, header.clone()));
        Ok(header)
    }
}

/// `payload` encrypted for a browser (RFC 8291): an ephemeral ECDH key
/// agreed with the browser's key, mixed with its auth secret into the input
/// keying material of one `aes128gcm` record (RFC 8188) whose header carries
/// a random salt and the ephemeral public key.
fn encrypt(
    random: &dyn SecureRandom,
    payload: &[u8],
    browser_key: &p256::PublicKey,
    auth: &[u8; 16],
) -> Result<Vec<u8>, ChatError> {
    let failed = |_| ChatError::internal("encrypting a push failed");
    let browser_public = browser_key.as_affine().to_encoded_point(false);
    let ephemeral =
        agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, random).map_err(failed)?;
    let server_public = ephemeral.compute_public_key().map_err(failed)?;
    let mut ikm = [0_u8; 32];
    let info = [
        b"WebPush: info\0".as_slice(),
        browser_public.as_bytes(),
        server_public.as_ref(),
    ];
    agreement::agree_ephemeral(
        ephemeral,
        &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, browser_public.as_bytes()),
        |shared| {
            hkdf::Salt::new(hkdf::HKDF_SHA256, auth)
                .extract(shared)
                .expand(&info, Length(32))
                .and_then(|okm| okm.fill(&mut ikm))
        },
    )
    .map_err(failed)?
    .map_err(failed)?;

    let mut salt = [0_u8; 16];
    random.fill(&mut salt).map_err(failed)?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let content_key: aead::UnboundKey = prk
        .expand(&[b"Content-Encoding: aes128gcm\0"], &aead::AES_128_GCM)
        .map_err(failed)?
        .into();
    let mut nonce = [0_u8; aead::NONCE_LEN];
    prk.expand(&[b"Content-Encoding: nonce\0"], Length(aead::NONCE_LEN))
        .and_then(|okm| okm.fill(&mut nonce))
        .map_err(failed)?;

    // One record: the payload, the last-record delimiter, the tag.
    let mut record = Vec::with_capacity(payload.len() + 1 + aead::AES_128_GCM.tag_len());
    record.extend_from_slice(payload);
    record.push(2);
    aead::LessSafeKey::new(content_key)
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::empty(),
            &mut record,
        )
        .map_err(failed)?;
    let record_size = u32::try_from(record.len()).map_err(|_| failed(ring::error::Unspecified))?;
    let key_id = server_public.as_ref();
    let mut body = Vec::with_capacity(16 + 4 + 1 + key_id.len() + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&record_size.to_be_bytes());
    body.push(u8::try_from(key_id.len()).map_err(|_| failed(ring::error::Unspecified))?);
    body.extend_from_slice(key_id);
    body.extend_from_slice(&record);
    Ok(body)
}

/// An HKDF output length `ring` has no type of its own for.
struct Length(usize);

impl hkdf::KeyType for Length {
    fn len(&self) -> usize {
        self.0
    }
}

/// The endpoint and keys of a subscription, decoded; 422 when they are not
/// what a browser sends.
fn keys(subscription: &Subscription) -> Result<(http::Uri, p256::PublicKey, [u8; 16]), ChatError> {
    let invalid =
        |what: &str| ChatError::invalid("invalid_subscription", format!("invalid {what}"));
    let endpoint: http::Uri = subscription
        .endpoint
        .parse()
        .map_err(|_| invalid("endpoint"))?;
    if !matches!(endpoint.scheme_str(), Some("https" | "http")) {
        return Err(invalid("endpoint"));
    }
    let browser_key = Base64UrlUnpadded::decode_vec(subscription.p256dh.trim_end_matches('='))
        .ok()
        .and_then(|raw| p256::PublicKey::from_sec1_bytes(&raw).ok())
        .ok_or_else(|| invalid("p256dh key"))?;
    let auth: [u8; 16] = Base64UrlUnpadded::decode_vec(subscription.auth.trim_end_matches('='))
        .ok()
        .and_then(|raw| raw.try_into().ok())
        .ok_or_else(|| invalid("auth secret"))?;
    Ok((endpoint, browser_key, auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_decrypts_what_is_sent() {
        let browser = p256::SecretKey::from_slice(&[7; 32]).unwrap();
        let auth = [9_u8; 16];
        let random = ring::rand::SystemRandom::new();
        let payload = br#"{"title":"Ada","body":"hello"}"#;
        let sealed = encrypt(&random, payload, &browser.public_key(), &auth).unwrap();
        let opened = web_push_native::decrypt(sealed.clone(), &browser, &auth.into()).unwrap();
        assert_eq!(opened, payload);
        // A fresh salt and key each time: the same payload never looks the same.
        let again = encrypt(&random, payload, &browser.public_key(), &auth).unwrap();
        assert_ne!(sealed, again);
    }
}
