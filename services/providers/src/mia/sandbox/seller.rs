//! Seller sessions on a confirmed activation: login, refresh (single-use refresh tokens), logout, session info.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::activation::{activation_not_found, confirmed};
use super::api::{
    ApiError, ApiJson, ApiResult, SellerAuth, no_store, ok, required, secs_ceil, uuid_field,
};
use super::{AccessGrant, MiaState, Session, Store};
use crate::mia::paths;
use crate::sandbox::{lock, random_token};

/// Access tokens kept before expired ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;

pub(super) fn routes() -> Router<Arc<MiaState>> {
    Router::new()
        .route(paths::SELLER_LOGIN, post(login))
        .route(paths::SELLER_REFRESH, post(refresh))
        .route(paths::SELLER_LOGOUT, post(logout))
        .route(paths::SELLER_INFO, get(info))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginBody {
    terminal_activation_id: String,
    username: String,
    password: SecretString,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    refresh_token: SecretString,
    terminal_activation_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogoutBody {
    refresh_token: SecretString,
}

fn invalid_refresh_token(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN", message)
}

/// A fresh token pair for `session`, recorded in `store` (the previous refresh token is used up).
fn issue_tokens(state: &MiaState, store: &mut Store, session: u64) -> ApiResult {
    let access_token = random_token().map_err(ApiError::internal)?;
    let refresh_token = random_token().map_err(ApiError::internal)?;
    let (access_lifetime, refresh_lifetime) = {
        let t = lock(&state.tunables);
        (t.access_token_lifetime, t.refresh_token_lifetime)
    };
    let now = Instant::now();
    if store.access.len() > PRUNE_ABOVE {
        store.access.retain(|_, g| now < g.expires_at);
    }
    store.access.insert(
        access_token.clone(),
        AccessGrant {
            session,
            expires_at: now + access_lifetime,
        },
    );
    if let Some(s) = store.sessions.get_mut(&session) {
        store.refresh.remove(&s.refresh_token);
        s.refresh_token = refresh_token.clone();
        s.refresh_expires_at = now + refresh_lifetime;
    }
    store.refresh.insert(refresh_token.clone(), session);
    ok(json!({
        "result": "success",
        "authTokens": {
            "accessToken": access_token,
            "refreshToken": refresh_token,
            "accessTokenExpiresIn": secs_ceil(access_lifetime),
        },
    }))
    .map(no_store)
}

async fn login(State(state): State<Arc<MiaState>>, ApiJson(body): ApiJson<LoginBody>) -> ApiResult {
    let activation_id = uuid_field("terminalActivationId", &body.terminal_activation_id)?;
    let username = required("username", &body.username)?;
    required("password", body.password.expose_secret())?;
    let mut store = lock(&state.store);
    let activation = store
        .activations
        .get(&activation_id)
        .ok_or_else(activation_not_found)?;
    confirmed(activation)?;
    let merchant = &state.terminals[activation.terminal].merchant_idno;
    let seller = state
        .sellers
        .iter()
        .position(|s| {
            s.username == username
                && s.password.expose_secret() == body.password.expose_secret()
                && s.merchant_idno.as_ref().is_none_or(|m| m == merchant)
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "wrong username or password",
            )
        })?;
    let session = store.next_session;
    store.next_session += 1;
    store.sessions.insert(
        session,
        Session {
            activation: activation_id,
            seller,
            refresh_token: String::new(),
            refresh_expires_at: Instant::now(),
        },
    );
    tracing::debug!(%activation_id, username, session, "seller logged in");
    issue_tokens(&state, &mut store, session)
}

async fn refresh(
    State(state): State<Arc<MiaState>>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> ApiResult {
    let activation_id = uuid_field("terminalActivationId", &body.terminal_activation_id)?;
    let presented = required("refreshToken", body.refresh_token.expose_secret())?;
    let mut store = lock(&state.store);
    let session = live_refresh_session(&store, presented, Some(activation_id))?;
    issue_tokens(&state, &mut store, session)
}

/// The session a refresh token opens: it must be the session's current one, unexpired, and (for
/// refresh) of the activation presented.
fn live_refresh_session(
    store: &Store,
    refresh_token: &str,
    activation: Option<Uuid>,
) -> Result<u64, ApiError> {
    let not_valid = || invalid_refresh_token("refresh token is not valid");
    let session_id = *store.refresh.get(refresh_token).ok_or_else(not_valid)?;
    let session = store.sessions.get(&session_id).ok_or_else(not_valid)?;
    if activation.is_some_and(|a| a != session.activation) {
        return Err(not_valid());
    }
    if Instant::now() >= session.refresh_expires_at {
        return Err(invalid_refresh_token("refresh token has expired"));
    }
    Ok(session_id)
}

async fn logout(
    State(state): State<Arc<MiaState>>,
    ApiJson(body): ApiJson<LogoutBody>,
) -> ApiResult {
    let presented = required("refreshToken", body.refresh_token.expose_secret())?;
    let mut store = lock(&state.store);
    let session = live_refresh_session(&store, presented, None)?;
    store.refresh.remove(presented);
    store.sessions.remove(&session);
    store.access.retain(|_, g| g.session != session);
    tracing::debug!(session, "seller logged out");
    ok(json!({ "result": "success" }))
}

async fn info(State(state): State<Arc<MiaState>>, auth: SellerAuth) -> ApiResult {
    let store = lock(&state.store);
    let session = store.sessions.get(&auth.session).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "access token is not valid",
        )
    })?;
    let activation = store
        .activations
        .get(&session.activation)
        .ok_or_else(activation_not_found)?;
    let terminal = &state.terminals[activation.terminal];
    let seller = &state.sellers[session.seller];
    let bank = &state.bank;
    ok(json!({
        "sellerInfo": { "id": seller.id, "fullName": seller.full_name },
        "terminalInfo": { "terminalId": terminal.terminal_id, "posId": terminal.pos_id },
        "merchantInfo": { "merchantName": terminal.merchant_name, "merchantIdno": terminal.merchant_idno },
        "placeInfo": { "name": terminal.store_name, "address": terminal.store_address },
        "bankInfo": {
            "bankName": bank.bank_name,
            "image": bank.image,
            "userGuideUrl": bank.user_guide_url,
            "supportPhone": bank.support_phone,
            "supportEmail": bank.support_email,
        },
    }))
}
