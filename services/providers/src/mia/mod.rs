//! MIA POS (Moldova) terminal API: terminal activation and seller sessions — the client fiscus uses
//! and a sandbox that plays the MIA POS back end.
//!
//! Two paths are not in the published contract and are this crate's choice, shared by client and
//! sandbox: the OTP resend (`POST /pos/api/v1/terminal-activation/resend-otp`) and the seller
//! session info (`GET /pos/api/v1/seller/info`).
//!
//! Errors, as the sandbox answers them and the client reads them, are one JSON shape with a 4xx/5xx status:
//! `{"result":"error","errorCode":"INVALID_OTP","errorMessage":"...","leftAttempts":2,"waitTimeToResend":41}`
//! (`leftAttempts`, `waitTimeToResend` only where they mean something). See [`ERROR_CODES`].

mod client;
#[cfg(feature = "sandbox")]
mod sandbox;
mod types;

pub use client::MiaClient;
#[cfg(feature = "sandbox")]
pub use sandbox::{MiaBank, MiaSandbox, MiaSandboxConfig, MiaSeller, MiaTerminal};
pub use types::{
    ActivationConfirmed, ActivationInfo, BankInfo, ConfirmActivationRequest, DeviceInfo,
    InitActivation, InitActivationRequest, MerchantInfo, OtpResent, PlaceInfo, PlatformType,
    ResendOtpRequest, SellerInfo, SellerLoginRequest, SellerLogoutRequest, SellerRefreshRequest,
    SellerSession, SellerTokens, TerminalInfo,
};

/// API paths, relative to the MIA base URL.
pub mod paths {
    pub const ACTIVATION_INIT: &str = "/pos/api/v1/terminal-activation/init";
    /// Not in the published contract (see the module docs).
    pub const ACTIVATION_RESEND_OTP: &str = "/pos/api/v1/terminal-activation/resend-otp";
    pub const ACTIVATION_CONFIRM: &str = "/pos/api/v1/terminal-activation/confirm";
    /// `GET {ACTIVATION}/{posActivationId}`.
    pub const ACTIVATION: &str = "/pos/api/v1/terminal-activation";
    pub const SELLER_LOGIN: &str = "/pos/api/v1/seller/login";
    pub const SELLER_REFRESH: &str = "/pos/api/v1/seller/refresh";
    pub const SELLER_LOGOUT: &str = "/pos/api/v1/seller/logout";
    /// Not in the published contract (see the module docs).
    pub const SELLER_INFO: &str = "/pos/api/v1/seller/info";
}

/// Every `errorCode` the sandbox answers, with its HTTP status and meaning.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "VALIDATION_ERROR",
        400,
        "a header, the JSON body or a field is missing or malformed; the message names it",
    ),
    (
        "UNSUPPORTED_MEDIA_TYPE",
        415,
        "the body is not application/json",
    ),
    (
        "TERMINAL_NOT_FOUND",
        404,
        "no terminal with this terminalId for this merchantIdno",
    ),
    ("ACTIVATION_NOT_FOUND", 404, "no activation with this id"),
    (
        "OTP_RESEND_TOO_EARLY",
        400,
        "waitTimeToResend has not passed yet; waitTimeToResend = seconds left",
    ),
    ("OTP_RESEND_LIMIT_REACHED", 409, "no resends left"),
    (
        "INVALID_OTP",
        400,
        "wrong code; leftAttempts = confirmations left (0: the activation is now blocked)",
    ),
    ("OTP_EXPIRED", 400, "the code is too old; resend"),
    (
        "ACTIVATION_BLOCKED",
        409,
        "no confirmation attempts left; start a new activation",
    ),
    (
        "ACTIVATION_ALREADY_CONFIRMED",
        409,
        "confirm or resend on a confirmed activation",
    ),
    (
        "ACTIVATION_NOT_CONFIRMED",
        409,
        "activation info or seller login before the OTP was confirmed",
    ),
    (
        "INVALID_CREDENTIALS",
        401,
        "unknown seller or wrong password",
    ),
    (
        "INVALID_REFRESH_TOKEN",
        401,
        "unknown, already used, revoked, expired or of another activation",
    ),
    ("UNAUTHORIZED", 401, "no Authorization: Bearer header"),
    ("INVALID_TOKEN", 401, "unknown or revoked access token"),
    (
        "TOKEN_EXPIRED",
        401,
        "access token past its lifetime; refresh",
    ),
    ("NOT_FOUND", 404, "no such path"),
    ("METHOD_NOT_ALLOWED", 405, "no such method on this path"),
    (
        "SERVICE_UNAVAILABLE",
        503,
        "the back end is down (sandbox: fail_next)",
    ),
    ("INTERNAL_ERROR", 500, "the sandbox itself failed"),
];
