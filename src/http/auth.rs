//! Authentication: HS256 JWTs carrying `sub`, `name`, `role`, optional `email`
//! and a required `exp`. [`AuthUser`] extracts and verifies the token from
//! `Authorization: Bearer …` (or `?token=` on the realtime endpoints `/ws`,
//! `/events` and `/events/poll`, where browsers cannot set headers) and signs
//! the user in (`chat::ChatCore::sign_in` upserts the row the first time a
//! given set of claims is seen). Every refusal is logged once at `info`,
//! with its reason and never the token.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{extract::FromRequestParts, http::request::Parts};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AppState, error::ApiError};
use crate::{config::Secret, domain::UserId, persistence::users::UserProfile};

/// Seconds of clock skew tolerated when checking `exp`, `nbf` and `iat`.
const EXP_LEEWAY_SECS: u64 = 5;

/// The claims of the tokens Parley mints itself (`parley token`, the
/// development sign-in); any token's claims are read by name (see
/// [`JwtKeys::with_claims`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at: not in the future; its distance to `exp` is the token's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Signing and verification keys: the configured HS256 secret (development,
/// `parley token`), or a real identity provider's keys (JWKS).
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// The longest lifetime accepted (`exp` minus `iat`, or minus now).
    max_ttl_secs: u64,
    /// With an identity provider: only its keys count (the secret signs
    /// nothing that is accepted), with its issuer and audience.
    provider: Option<Provider>,
    /// Where the display name and the role are in the claims: a top-level
    /// claim's name (`https://example.com/role`), or a dotted path
    /// (`public_metadata.role`).
    name_claim: String,
    role_claim: String,
}

/// A real identity provider.
struct Provider {
    keys: super::jwks::Jwks,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtKeys {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = EXP_LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            max_ttl_secs: crate::config::DEFAULT_JWT_MAX_TTL_SECS,
            provider: None,
            name_claim: "name".into(),
            role_claim: "role".into(),
        }
    }

    /// Accepts tokens of the identity provider whose keys are at `jwks_url`
    /// (RS256/ES256…, the algorithm pinned per key) instead of the secret's.
    pub fn with_provider(
        mut self,
        jwks_url: String,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        self.provider = Some(Provider {
            keys: super::jwks::Jwks::new(jwks_url),
            issuer,
            audience,
        });
        self
    }

    /// Reads the display name and the role from these claims.
    pub fn with_claims(mut self, name_claim: &str, role_claim: &str) -> Self {
        self.name_claim = name_claim.to_owned();
        self.role_claim = role_claim.to_owned();
        self
    }

    /// Refuses tokens that claim to live longer than `secs`.
    pub fn with_max_ttl(mut self, secs: u64) -> Self {
        self.max_ttl_secs = secs;
        self
    }

    /// Signs a token for `user` valid for `ttl_secs` (the `parley token` command, tests).
    pub fn mint(
        &self,
        sub: &str,
        name: &str,
        role: &str,
        email: Option<&str>,
        ttl_secs: i64,
    ) -> anyhow::Result<String> {
        let now = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            name: name.to_owned(),
            role: role.to_owned(),
            email: email.map(str::to_owned),
            exp: now.saturating_add_signed(ttl_secs),
            iat: Some(now),
            nbf: None,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies a token: the user profile its claims describe, and when it
    /// stops being good (its `exp` plus the leeway, seconds since the epoch).
    pub async fn verify(&self, token: &str) -> Result<(UserProfile, u64), ApiError> {
        let claims = match &self.provider {
            None => decode(token, &self.decoding, &self.validation)?,
            Some(provider) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|_| ApiError::unauthorized("the token is malformed or incomplete"))?;
                let kid = header
                    .kid
                    .ok_or_else(|| ApiError::unauthorized("the token names no key (kid)"))?;
                let pinned =
                    provider.keys.key(&kid).await.ok_or_else(|| {
                        ApiError::unauthorized("the token's signing key is unknown")
                    })?;
                if header.alg != pinned.algorithm {
                    return Err(ApiError::unauthorized(
                        "the token's algorithm is not its key's",
                    ));
                }
                let mut validation = self.validation.clone();
                validation.algorithms = vec![pinned.algorithm];
                if let Some(issuer) = &provider.issuer {
                    validation.set_issuer(&[issuer]);
                }
                match &provider.audience {
                    Some(audience) => validation.set_audience(&[audience]),
                    None => validation.validate_aud = false,
                }
                decode(token, &pinned.key, &validation)?
            }
        };
        let now = unix_now();
        let number = |name: &str| claims.get(name).and_then(serde_json::Value::as_u64);
        let exp = number("exp").ok_or_else(|| ApiError::unauthorized("the token has no exp"))?;
        let iat = number("iat");
        if iat.is_some_and(|iat| iat > now + EXP_LEEWAY_SECS) {
            return Err(ApiError::unauthorized(
                "the token was issued in the future (iat)",
            ));
        }
        let issued = iat.unwrap_or(now).min(now);
        if exp.saturating_sub(issued) > self.max_ttl_secs {
            return Err(ApiError::unauthorized(
                "the token lives longer than this server accepts",
            ));
        }
        let text = |path: &str| claim(&claims, path).and_then(serde_json::Value::as_str);
        let sub = text("sub").ok_or_else(|| ApiError::unauthorized("the token has no sub"))?;
        let profile = UserProfile::new(
            sub,
            text(&self.name_claim).unwrap_or(sub),
            // Providers often say nothing of plain users: the least privileged role.
            text(&self.role_claim).unwrap_or("candidate").to_owned(),
            text("email").map(str::to_owned),
        )
        .map_err(|e| ApiError::unauthorized(e.public_message()))?;
        Ok((profile, exp + EXP_LEEWAY_SECS))
    }
}

/// Checks a token's signature and standard claims; its claims as JSON.
fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<serde_json::Value, ApiError> {
    use jsonwebtoken::errors::ErrorKind;
    jsonwebtoken::decode::<serde_json::Value>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => ApiError::unauthorized("the token has expired"),
            ErrorKind::ImmatureSignature => {
                ApiError::unauthorized("the token is not valid yet (nbf)")
            }
            ErrorKind::InvalidSignature => {
                ApiError::unauthorized("the token signature is not valid")
            }
            ErrorKind::InvalidIssuer => ApiError::unauthorized("the token is from another issuer"),
            ErrorKind::InvalidAudience => {
                ApiError::unauthorized("the token is for another audience")
            }
            _ => ApiError::unauthorized("the token is malformed or incomplete"),
        })
}

/// A claim by its top-level name, or by a dotted path into nested objects.
fn claim<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    claims.get(path).or_else(|| {
        path.split('.')
            .try_fold(claims, |value, part| value.get(part))
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The authenticated caller of a request, and when their token stops being
/// good (seconds since the epoch): realtime connections end then unless
/// renewed.
#[derive(Clone, Debug)]
pub struct AuthUser(pub UserProfile, pub u64);

impl AuthUser {
    pub fn id(&self) -> &UserId {
        &self.0.id
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path();
        let (profile, good_until) = if let Some(token) = bearer_token(parts) {
            verify(state, path, &token).await?
        } else if let Some(ticket) = query_value(parts, "ticket") {
            state.chat.redeem_ticket(&ticket).await.ok_or_else(|| {
                tracing::info!(path, "refused: unknown, spent or expired ticket");
                ApiError::unauthorized("the connect ticket is unknown, spent or expired")
            })?
        } else if let Some(token) =
            query_value(parts, "token").filter(|_| state.settings.auth.token_in_url)
        {
            verify(state, path, &token).await?
        } else {
            tracing::info!(path, "refused: no bearer token");
            return Err(ApiError::unauthorized("missing bearer token"));
        };
        state.chat.sign_in(&profile).await?;
        Ok(Self(profile, good_until))
    }
}

fn bearer_token(parts: &Parts) -> Option<String> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

async fn verify(state: &AppState, path: &str, token: &str) -> Result<(UserProfile, u64), ApiError> {
    state.jwt.verify(token).await.inspect_err(|refused| {
        tracing::info!(path, reason = refused.message(), "refused: bad token");
    })
}

/// Paths where credentials are accepted in the query: the realtime
/// endpoints, where browsers (WebSocket, EventSource) cannot set headers —
/// a single-use `?ticket=` (`POST /realtime/ticket`), or `?token=` for old
/// clients when `PARLEY_TOKEN_IN_URL` allows it. Everywhere else only the
/// header counts.
const QUERY_CREDENTIAL_PATHS: [&str; 3] = ["/ws", "/events", "/events/poll"];

fn query_value(parts: &Parts, name: &str) -> Option<String> {
    if !QUERY_CREDENTIAL_PATHS.contains(&parts.uri.path()) {
        return None;
    }
    parts.uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new("unit-test-secret-0123456789"))
    }

    #[test]
    fn minted_tokens_verify() {
        let token = keys()
            .mint("u1", "Uma", "candidate", Some("u@example.com"), 60)
            .unwrap();
        let (p, good_until) = keys().verify(&token).now_or_never().unwrap().unwrap();
        assert!(good_until >= unix_now() + 60);
        assert_eq!(p.id.as_str(), "u1");
        assert_eq!(p.role, "candidate");
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let expired = keys().mint("u1", "Uma", "candidate", None, -3600).unwrap();
        assert!(keys().verify(&expired).now_or_never().unwrap().is_err());
        let other = JwtKeys::new(&Secret::new("another-secret-0123456789"));
        let forged = other.mint("u1", "Uma", "admin", None, 60).unwrap();
        assert!(keys().verify(&forged).now_or_never().unwrap().is_err());
        assert!(
            keys()
                .verify("not.a.token")
                .now_or_never()
                .unwrap()
                .is_err()
        );
        let bad_role = keys().mint("u1", "Uma", "superuser", None, 60).unwrap();
        assert!(keys().verify(&bad_role).now_or_never().unwrap().is_err());
    }

    fn signed(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"unit-test-secret-0123456789"),
        )
        .unwrap()
    }

    #[test]
    fn not_yet_valid_future_issued_and_too_long_lived_tokens_are_refused() {
        let now = unix_now();
        let claims = |extra: serde_json::Value| {
            let mut c = serde_json::json!({ "sub": "u1", "name": "Uma", "role": "candidate", "exp": now + 600 });
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let ok = signed(claims(serde_json::json!({ "iat": now, "nbf": now - 10 })));
        assert!(keys().verify(&ok).now_or_never().unwrap().is_ok());
        for (why, extra) in [
            ("nbf in the future", serde_json::json!({ "nbf": now + 300 })),
            ("iat in the future", serde_json::json!({ "iat": now + 300 })),
            (
                "a hundred years",
                serde_json::json!({ "exp": now + 100 * 365 * 86_400 }),
            ),
            (
                "issued long ago, lives two days",
                serde_json::json!({ "iat": now - 3600, "exp": now + 2 * 86_400 }),
            ),
        ] {
            let token = signed(claims(extra));
            let refused = keys()
                .verify(&token)
                .now_or_never()
                .unwrap()
                .map(|(p, _)| p.id.as_str().to_owned());
            assert!(refused.is_err(), "{why}");
        }
        let short = keys().with_max_ttl(300);
        assert!(
            short.verify(&ok).now_or_never().unwrap().is_err(),
            "a lower ceiling applies"
        );
    }
}
