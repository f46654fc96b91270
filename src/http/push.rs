//! Web push: the server's VAPID key (`GET /push/vapid-public-key`) and the
//! caller's browser subscriptions (`/users/me/push-subscriptions`).

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    auth::AuthUser,
    error::{ApiError, ApiJson, ErrorBody},
};
use crate::push::Subscription;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VapidKey {
    /// The `applicationServerKey` for `pushManager.subscribe` (base64url).
    pub public_key: String,
}

/// A browser's `PushSubscription`, as `JSON.stringify` gives it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSubscriptionJson {
    pub endpoint: String,
    /// Ignored (push services say when a subscription is gone).
    pub expiration_time: Option<f64>,
    pub keys: PushKeys,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushKeys {
    pub p256dh: String,
    pub auth: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unsubscribe {
    pub endpoint: String,
}

/// The server's VAPID public key.
#[utoipa::path(get, path = "/push/vapid-public-key", tag = "notifications",
    responses((status = 200, body = VapidKey)))]
pub async fn vapid_public_key(State(state): State<AppState>) -> ApiJson<VapidKey> {
    ApiJson(VapidKey {
        public_key: state.chat.vapid_public_key().to_owned(),
    })
}

/// Registers a browser for push (201; the same endpoint again replaces its keys).
#[utoipa::path(post, path = "/users/me/push-subscriptions", tag = "notifications",
    request_body = PushSubscriptionJson,
    responses((status = 201), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn subscribe(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(subscription): ApiJson<PushSubscriptionJson>,
) -> Result<StatusCode, ApiError> {
    let subscription = Subscription {
        endpoint: subscription.endpoint,
        p256dh: subscription.keys.p256dh,
        auth: subscription.keys.auth,
    };
    state
        .chat
        .subscribe_push(caller.id(), &subscription)
        .await?;
    Ok(StatusCode::CREATED)
}

/// Removes one of the caller's browsers (204; 404 when it is not theirs).
#[utoipa::path(delete, path = "/users/me/push-subscriptions", tag = "notifications",
    request_body = Unsubscribe,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(request): ApiJson<Unsubscribe>,
) -> Result<StatusCode, ApiError> {
    state
        .chat
        .unsubscribe_push(caller.id(), &request.endpoint)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
