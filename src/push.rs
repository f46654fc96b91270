//! Sending web push: the payload encrypted for the browser's keys
//! (`aes128gcm`, RFC 8291) and signed with this server's VAPID key (RFC
//! 8292), by `web-push-native`; the request goes out with `reqwest` (rustls
//! with the system's roots). What a push says is the application layer's
//! business (`chat::push`).

use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use web_push_native::{
    Auth, WebPushBuilder, jwt_simple::algorithms::ES256KeyPair, p256,
    p256::elliptic_curve::sec1::ToEncodedPoint,
};

use crate::{config::PushSettings, domain::ChatError};

/// How long a push service keeps a push for a browser that is away.
const TIME_TO_LIVE: Duration = Duration::from_secs(24 * 3600);
/// How long one push request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
        let request = WebPushBuilder::new(endpoint, browser_key, auth)
            .with_valid_duration(TIME_TO_LIVE)
            .with_vapid(&self.key, &self.subject)
            .build(payload.to_vec())
            .map_err(|e| ChatError::internal(format!("building a push: {e}")))?;
        let (parts, body) = request.into_parts();
        let mut outgoing = self.http.post(parts.uri.to_string()).body(body);
        for (name, value) in &parts.headers {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
        let response = outgoing
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
}

/// The endpoint and keys of a subscription, decoded; 422 when they are not
/// what a browser sends.
fn keys(subscription: &Subscription) -> Result<(http::Uri, p256::PublicKey, Auth), ChatError> {
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
    Ok((endpoint, browser_key, Auth::from(auth)))
}
