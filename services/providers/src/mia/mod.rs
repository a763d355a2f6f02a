//! MIA POS (Moldova) terminal API: terminal activation, seller sessions, QR payments,
//! transactions, returns and terminal settings — the client fiscus uses and a sandbox that plays
//! the MIA POS back end, with a payer who pays the QR codes.
//!
//! Some paths and shapes are not in the published contract and are this crate's choice, shared
//! by client and sandbox: the OTP resend (`POST /pos/api/v1/terminal-activation/resend-otp`), the
//! seller session info (`GET /pos/api/v1/seller/info`), the QR info (`GET /pos/api/v2/qr/{qrId}`),
//! a shift's transactions (`GET /pos/api/v1/shift/{shiftId}/transactions?txId=`), a transaction's
//! details (`GET /pos/api/v1/transaction/{txId}`), the return (`POST
//! /pos/api/v1/transaction/return`), the settings (`GET` and `PUT /pos/api/v1/terminal/settings`),
//! the shift check's answer (`{"result","shiftId","isOpened"}`), and a transaction's `returns`
//! (`[{"requestId","amount","date","reasonCode"}]`, oldest first), which is how a return whose
//! answer was lost is found again. The seed's own spellings are kept where it has them: the
//! payment request answer's `extensionIfo` and the details' `mсс` (with two Cyrillic `с`).
//!
//! Money is a JSON number on the wire: [`WireMoney`] reads it from its text exactly.
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
pub use sandbox::{MiaBank, MiaSandbox, MiaSandboxConfig, MiaSeller, MiaTerminal, PayerTarget};
pub use types::{
    ActivationConfirmed, ActivationInfo, AmountType, Amounts, BankInfo, ConfirmActivationRequest,
    DeviceInfo, InitActivation, InitActivationRequest, MerchantInfo, OtpResent, PaymentCheck,
    PaymentState, PlaceInfo, PlatformType, QrExtension, QrInfo, QrSettings, QrState, QrStatus,
    QrType, ResendOtpRequest, ReturnRequest, SellerInfo, SellerLoginRequest, SellerLogoutRequest,
    SellerRefreshRequest, SellerSession, SellerTokens, ShiftStatus, ShiftZReport, TerminalInfo,
    TxInfo, TxPage, TxReturn, TxSummary, TxType, WireMoney,
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
    /// `POST` creates; `GET {QR}/{qrId}` reads, `DELETE {QR}/{qrId}` cancels, `POST
    /// {QR}/{qrId}/extension` attaches a payment request.
    pub const QR: &str = "/pos/api/v2/qr";
    pub const QR_ACTIVE: &str = "/pos/api/v2/qr/active";
    /// `GET {QR_EXTENSION}/{extensionId}/check`, `DELETE {QR_EXTENSION}/{extensionId}`.
    pub const QR_EXTENSION: &str = "/pos/api/v2/qr/extension";
    /// `GET {SHIFT}/{shiftId}/transactions` (not in the published contract).
    pub const SHIFT: &str = "/pos/api/v1/shift";
    pub const SHIFT_CHECK: &str = "/pos/api/v1/shift/check";
    pub const SHIFT_OPEN: &str = "/pos/api/v1/shift/open";
    pub const SHIFT_CLOSE: &str = "/pos/api/v1/shift/close";
    /// `GET {SHIFT_V2}/{shiftId}/z-report`.
    pub const SHIFT_V2: &str = "/pos/api/v2/shift";
    /// `GET {TRANSACTION}/{txId}` (not in the published contract).
    pub const TRANSACTION: &str = "/pos/api/v1/transaction";
    /// Not in the published contract (see the module docs).
    pub const TRANSACTION_RETURN: &str = "/pos/api/v1/transaction/return";
    /// `GET` and `PUT` (not in the published contract).
    pub const SETTINGS: &str = "/pos/api/v1/terminal/settings";
    /// The sandbox's payer, not MIA's: `POST` `{"qrId"|"extensionId","amount"}`.
    pub const SANDBOX_PAY: &str = "/sandbox/payer/pay";
    /// The sandbox's payer's bank refuses: `POST` `{"qrId"|"extensionId","reason"?}`.
    pub const SANDBOX_FAIL: &str = "/sandbox/payer/fail";
    /// The sandbox lets a time to live run out now: `POST` `{"qrId"|"extensionId"}`.
    pub const SANDBOX_EXPIRE: &str = "/sandbox/payer/expire";
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
    (
        "QR_NOT_FOUND",
        404,
        "no QR code with this id on the seller's terminal",
    ),
    (
        "EXTENSION_NOT_FOUND",
        404,
        "no payment request with this id on the seller's terminal",
    ),
    (
        "TRANSACTION_NOT_FOUND",
        404,
        "no transaction with this id on the seller's terminal",
    ),
    (
        "SHIFT_NOT_FOUND",
        404,
        "no shift with this id on the seller's terminal",
    ),
    (
        "ACTIVE_QR_EXISTS",
        409,
        "the terminal has an active static or hybrid QR already; the message names it",
    ),
    (
        "QR_NOT_ACTIVE",
        409,
        "the QR code is paid, expired or cancelled",
    ),
    (
        "EXTENSION_NOT_ACTIVE",
        409,
        "the payment request is paid, expired, cancelled or failed",
    ),
    (
        "OPERATION_NOT_ALLOWED",
        409,
        "not for this QR type: a payment request on a dynamic QR, cancelling a request of a non-hybrid QR",
    ),
    (
        "AMOUNT_NOT_ACCEPTED",
        400,
        "sandbox payer: the amount does not fit the payment request's amount type",
    ),
    (
        "REFUND_NOT_ALLOWED",
        409,
        "a return above what is left, or a full return of a partly returned transaction",
    ),
    ("SHIFT_ALREADY_OPENED", 409, "open while a shift is open"),
    ("SHIFT_NOT_OPENED", 409, "close while no shift is open"),
    ("SHIFT_NOT_CLOSED", 409, "a Z-report of a shift still open"),
    ("NOT_FOUND", 404, "no such path"),
    ("METHOD_NOT_ALLOWED", 405, "no such method on this path"),
    (
        "SERVICE_UNAVAILABLE",
        503,
        "the back end is down (sandbox: fail_next)",
    ),
    ("INTERNAL_ERROR", 500, "the sandbox itself failed"),
];
