//! The signing keys of a real identity provider (Auth0, Clerk, Keycloak, …):
//! a JSON Web Key Set fetched from `PARLEY_JWT_JWKS_URL`, cached by key id,
//! fetched again when a token names a key not seen yet (at most
//! [`FETCHES_PER_MINUTE`] times a minute, so made-up key ids cannot hammer
//! the provider) and every [`REFRESH_EVERY`] (rotation). Each key is pinned to one
//! algorithm — its `alg`, or what its type implies (RSA: RS256, P-256:
//! ES256) — so a token can never choose `none`, or an HMAC "signed" with a
//! public key.

use std::{
    collections::{HashMap, VecDeque},
    sync::RwLock,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
};

/// Fetches for unknown key ids allowed within a minute.
const FETCHES_PER_MINUTE: usize = 5;
/// The set is fetched again this often anyway.
const REFRESH_EVERY: Duration = Duration::from_secs(600);

/// A usable key: how to check it, and the one algorithm it signs with.
#[derive(Clone)]
pub struct PinnedKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

/// The provider's keys, by key id.
pub struct Jwks {
    url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, PinnedKey>>,
    /// When the set was fetched within the last minute, oldest first.
    fetched: tokio::sync::Mutex<VecDeque<Instant>>,
}

impl Jwks {
    pub fn new(url: String) -> Self {
        Self {
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            keys: RwLock::default(),
            fetched: tokio::sync::Mutex::default(),
        }
    }

    /// The key `kid` names, fetching the set again when it is unknown (or
    /// the set is old), within the rate limit.
    pub async fn key(&self, kid: &str) -> Option<PinnedKey> {
        let known = self.cached(kid);
        let stale = self
            .fetched
            .lock()
            .await
            .back()
            .is_none_or(|at| at.elapsed() > REFRESH_EVERY);
        if known.is_some() && !stale {
            return known;
        }
        self.refresh(stale).await;
        self.cached(kid)
    }

    fn cached(&self, kid: &str) -> Option<PinnedKey> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// Fetches the set (unless the rate limit is spent and this is not the
    /// periodic refresh); keeps the old keys on failure.
    async fn refresh(&self, periodic: bool) {
        let mut fetched = self.fetched.lock().await;
        while fetched
            .front()
            .is_some_and(|at| at.elapsed() > Duration::from_secs(60))
        {
            fetched.pop_front();
        }
        if !periodic && fetched.len() >= FETCHES_PER_MINUTE {
            return;
        }
        fetched.push_back(Instant::now());
        let fetched = async {
            let body = self
                .http
                .get(&self.url)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            Ok::<JwkSet, anyhow::Error>(serde_json::from_slice(&body)?)
        }
        .await;
        match fetched {
            Ok(set) => {
                let keys: HashMap<String, PinnedKey> = set
                    .keys
                    .iter()
                    .filter_map(|jwk| Some((jwk.common.key_id.clone()?, pin(jwk)?)))
                    .collect();
                tracing::info!(keys = keys.len(), "fetched the identity provider's keys");
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
            }
            Err(e) => tracing::warn!(error = %e, "could not fetch the identity provider's keys"),
        }
    }
}

/// A JWK as a key pinned to its algorithm, if it is one Parley accepts
/// (RS256, RS384, RS512, ES256, ES384; never HMAC, never `none`).
fn pin(jwk: &Jwk) -> Option<PinnedKey> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        _ => return None,
    };
    let algorithm = match jwk.common.key_algorithm {
        None => implied,
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Algorithm::RS256,
        Some(KeyAlgorithm::RS384) if implied == Algorithm::RS256 => Algorithm::RS384,
        Some(KeyAlgorithm::RS512) if implied == Algorithm::RS256 => Algorithm::RS512,
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Algorithm::ES256,
        Some(KeyAlgorithm::ES384) if implied == Algorithm::ES384 => Algorithm::ES384,
        Some(_) => return None,
    };
    Some(PinnedKey {
        key: DecodingKey::from_jwk(jwk).ok()?,
        algorithm,
    })
}
