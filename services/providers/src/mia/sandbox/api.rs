//! What every MIA sandbox endpoint shares: the error body, the JSON and bearer extractors, header
//! and field validation, and the correlation-id middleware.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::MiaState;
use crate::sandbox::{bearer, lock};

const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// MIA's error answer: `{"result":"error","errorCode","errorMessage","leftAttempts"?,"waitTimeToResend"?}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    left_attempts: Option<u32>,
    wait_time_to_resend: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            left_attempts: None,
            wait_time_to_resend: None,
        }
    }

    pub(super) fn validation(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub(super) fn with_left_attempts(mut self, left: u32) -> Self {
        self.left_attempts = Some(left);
        self
    }

    pub(super) fn with_wait_time_to_resend(mut self, seconds: u64) -> Self {
        self.wait_time_to_resend = Some(seconds);
        self
    }

    pub(super) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "mia sandbox internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "internal error",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "result": "error",
            "errorCode": self.code,
            "errorMessage": self.message,
        });
        if let Some(left) = self.left_attempts {
            body["leftAttempts"] = json!(left);
        }
        if let Some(wait) = self.wait_time_to_resend {
            body["waitTimeToResend"] = json!(wait);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

/// A success answer.
pub(super) fn ok(body: serde_json::Value) -> ApiResult {
    Ok(axum::Json(body).into_response())
}

/// For answers that must not be cached by intermediaries (they carry tokens).
pub(super) fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn unavailable() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        "service temporarily unavailable",
    )
    .into_response()
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such resource")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed on this resource",
    )
}

/// Checks `X-CORRELATION-ID` (optional, a UUID) and echoes it on the answer; remembers it and
/// the device headers for tests.
pub(super) async fn correlation(
    axum::extract::State(state): axum::extract::State<Arc<MiaState>>,
    request: Request,
    next: Next,
) -> Response {
    let correlation = request.headers().get(&CORRELATION_ID).cloned();
    {
        let text = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        *lock(&state.seen) = super::Seen {
            correlation_id: text("x-correlation-id"),
            device: text("x-device"),
            platform_type: text("x-platform-type"),
            installation_id: text("x-installation-id"),
        };
    }
    if let Some(value) = &correlation {
        let valid = value
            .to_str()
            .ok()
            .is_some_and(|v| Uuid::parse_str(v).is_ok());
        if !valid {
            return ApiError::validation("header X-CORRELATION-ID must be a UUID").into_response();
        }
    }
    let mut response = next.run(request).await;
    if let Some(value) = correlation {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    response
}

/// A JSON body; anything else is MIA's `VALIDATION_ERROR` or `UNSUPPORTED_MEDIA_TYPE`.
pub(super) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Content-Type must be application/json",
            ));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::validation(format!("unreadable body: {}", e.body_text())))?;
        serde_json::from_slice(&body)
            .map(ApiJson)
            .map_err(|e| ApiError::validation(format!("invalid request body: {e}")))
    }
}

/// A required, non-blank string field.
pub(super) fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::validation(format!("{field} must not be empty")));
    }
    Ok(value)
}

/// A field that must be a UUID.
pub(super) fn uuid_field(field: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value.trim())
        .map_err(|_| ApiError::validation(format!("{field} must be a UUID")))
}

/// A header's value as text, or `None` when absent.
pub(super) fn header_text<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| ApiError::validation(format!("header {name} must be visible ASCII"))),
    }
}

/// A header that must be present and not blank.
pub(super) fn required_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    match header_text(headers, name)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::validation(format!(
            "required header {name} is missing"
        ))),
    }
}

/// Seconds, rounded up, for the wire.
pub(super) fn secs_ceil(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The seller session of a request, from `Authorization: Bearer <accessToken>`; payments use it too.
pub(super) struct SellerAuth {
    pub(super) session: u64,
}

impl FromRequestParts<Arc<MiaState>> for SellerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<MiaState>,
    ) -> Result<Self, ApiError> {
        let Some(token) = bearer(&parts.headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "Authorization: Bearer <accessToken> is required",
            ));
        };
        let store = lock(&state.store);
        let grant = store
            .access
            .get(token)
            .filter(|g| store.sessions.contains_key(&g.session))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "INVALID_TOKEN",
                    "access token is not valid",
                )
            })?;
        if Instant::now() >= grant.expires_at {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "access token has expired",
            ));
        }
        Ok(SellerAuth {
            session: grant.session,
        })
    }
}
