//! The typed requests and answers of the MIA POS activation and seller-session calls.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

/// `X-PLATFORM-TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformType {
    Ios,
    Android,
    Web,
    ExternalSystem,
}

impl PlatformType {
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformType::Ios => "ios",
            PlatformType::Android => "android",
            PlatformType::Web => "web",
            PlatformType::ExternalSystem => "external_system",
        }
    }
}

impl fmt::Display for PlatformType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device a terminal is being bound to: the `X-…` headers of the activation call.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// `X-DEVICE`: device model or browser name.
    pub device: String,
    /// `X-PLATFORM-TYPE`.
    pub platform_type: PlatformType,
    /// `X-PLATFORM-VERSION`.
    pub platform_version: Option<String>,
    /// `X-INSTALLATION-ID`: one per installation of the POS application.
    pub installation_id: Uuid,
    /// `X-NATIVE-APP-VERSION`.
    pub native_app_version: Option<u32>,
    /// `X-POS-APP-VERSION`.
    pub pos_app_version: u32,
}

/// Starts binding a terminal to a device; MIA sends an OTP to the merchant's phone.
#[derive(Clone, Debug)]
pub struct InitActivationRequest {
    pub terminal_id: String,
    pub merchant_idno: String,
}

/// Answer to [`InitActivationRequest`].
#[derive(Clone, Debug)]
pub struct InitActivation {
    pub terminal_activation_id: Uuid,
    pub masked_phone_number: String,
    /// How long before the OTP may be resent.
    pub wait_time_to_resend: Duration,
}

#[derive(Clone, Debug)]
pub struct ResendOtpRequest {
    pub terminal_activation_id: Uuid,
}

/// Answer to [`ResendOtpRequest`].
#[derive(Clone, Debug)]
pub struct OtpResent {
    /// Resends left after this one.
    pub left_attempts: u32,
    pub wait_time_to_resend: Duration,
}

#[derive(Clone, Debug)]
pub struct ConfirmActivationRequest {
    pub terminal_activation_id: Uuid,
    pub otp_code: SecretString,
}

/// Answer to [`ConfirmActivationRequest`]: the activation is confirmed.
#[derive(Clone, Debug)]
pub struct ActivationConfirmed {
    pub left_attempts: u32,
}

/// The terminal and merchant behind a confirmed activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationInfo {
    /// A string, although MIA's own example shows a number; both are accepted.
    pub terminal_id: String,
    pub merchant_idno: String,
    pub merchant_name: String,
    pub store_address: String,
}

#[derive(Clone, Debug)]
pub struct SellerLoginRequest {
    pub terminal_activation_id: Uuid,
    pub username: String,
    pub password: SecretString,
}

#[derive(Clone, Debug)]
pub struct SellerRefreshRequest {
    /// Single use: the answer carries its successor.
    pub refresh_token: SecretString,
    pub terminal_activation_id: Uuid,
}

#[derive(Clone, Debug)]
pub struct SellerLogoutRequest {
    pub refresh_token: SecretString,
}

/// A seller's token pair.
#[derive(Clone, Debug)]
pub struct SellerTokens {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub access_token_expires_in: Duration,
}

/// Who is logged in where: the seller-session info answer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SellerSession {
    pub seller_info: SellerInfo,
    pub terminal_info: TerminalInfo,
    pub merchant_info: MerchantInfo,
    pub place_info: PlaceInfo,
    pub bank_info: BankInfo,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SellerInfo {
    pub id: i64,
    pub full_name: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TerminalInfo {
    pub terminal_id: String,
    pub pos_id: i64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MerchantInfo {
    pub merchant_name: String,
    pub merchant_idno: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlaceInfo {
    pub name: String,
    pub address: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BankInfo {
    pub bank_name: String,
    pub image: String,
    pub user_guide_url: String,
    pub support_phone: String,
    pub support_email: String,
}

// ---------------------------------------------------------------------------------------------
// QR payments, transactions, returns, settings and shifts
// ---------------------------------------------------------------------------------------------

pub use fiscus_domain::qr::{AmountType, Amounts, PaymentState, QrType};

/// An amount of money as MIA writes it: a JSON number, read exactly (see [`crate::wire`]).
pub use crate::wire::WireMoney;

/// A payment request of a QR code (MIA `extension`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrExtension {
    pub extension_id: Uuid,
    /// `qrExpireIn`: how long it stays payable, from when it was read.
    pub expires_in: Duration,
    pub amount: Option<fiscus_domain::Money>,
    pub min_amount: Option<fiscus_domain::Money>,
    pub max_amount: Option<fiscus_domain::Money>,
}

/// A QR code as MIA describes it (`qrInfo`, an element of `codes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrInfo {
    pub qr_id: Uuid,
    pub qr_type: QrType,
    pub amount_type: AmountType,
    /// The text to encode (a payment URL).
    pub qr_text: String,
    /// The PNG image, base64, when it was asked for.
    pub qr_image: Option<String>,
    /// The active payment request, if any.
    pub extension: Option<QrExtension>,
}

/// The life cycle of a QR code (`state` of the QR info answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrState {
    Active,
    Paid,
    Expired,
    Cancelled,
    NotFound,
}

impl QrState {
    pub fn as_str(self) -> &'static str {
        match self {
            QrState::Active => "active",
            QrState::Paid => "paid",
            QrState::Expired => "expired",
            QrState::Cancelled => "cancelled",
            QrState::NotFound => "not_found",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(QrState::Active),
            "paid" => Some(QrState::Paid),
            "expired" => Some(QrState::Expired),
            "cancelled" => Some(QrState::Cancelled),
            "not_found" => Some(QrState::NotFound),
            _ => None,
        }
    }
}

/// A QR code and its state (`GET /pos/api/v2/qr/{qrId}`); `qr` is absent when not found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrStatus {
    pub state: QrState,
    pub qr: Option<QrInfo>,
}

/// What a transaction is now (`type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxType {
    Paid,
    Refunded,
    PartiallyRefunded,
    Cancelled,
}

impl TxType {
    pub fn as_str(self) -> &'static str {
        match self {
            TxType::Paid => "paid",
            TxType::Refunded => "refunded",
            TxType::PartiallyRefunded => "partially_refunded",
            TxType::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "paid" => Some(TxType::Paid),
            "refunded" => Some(TxType::Refunded),
            "partially_refunded" => Some(TxType::PartiallyRefunded),
            "cancelled" => Some(TxType::Cancelled),
            _ => None,
        }
    }
}

/// One return (refund) made of a transaction; see [`crate::mia`] on `returns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxReturn {
    pub request_id: u64,
    pub amount: fiscus_domain::Money,
    pub date: chrono::DateTime<chrono::Utc>,
    pub reason_code: String,
}

/// A transaction as the list of a shift shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxSummary {
    pub id: u64,
    pub amount: fiscus_domain::Money,
    pub currency: String,
    pub date: chrono::DateTime<chrono::Utc>,
    pub tx_type: TxType,
}

/// A transaction with its bank details (`txInfo`, `lastTxInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxInfo {
    pub summary: TxSummary,
    pub rrn: String,
    pub approval_code: String,
    pub mcc: String,
    pub swift_message_type: String,
    pub swift_message_id: String,
    pub swift_payer_bank: String,
    /// The returns made of it, oldest first; empty when the answer lists none.
    pub returns: Vec<TxReturn>,
}

/// A portion of a shift's transactions, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPage {
    /// True when no older transactions are left.
    pub is_ended: bool,
    pub transactions: Vec<TxSummary>,
}

/// The state of a payment request (`GET /pos/api/v2/qr/extension/{extensionId}/check`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentCheck {
    pub state: PaymentState,
    pub error_description: String,
    pub last_transaction: Option<TxInfo>,
    pub total_payments: u32,
}

/// A return of a completed transaction, in full or in part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnRequest {
    pub tx_id: u64,
    /// For a partial return; `None` with `full_refund`.
    pub amount: Option<fiscus_domain::Money>,
    pub full_refund: bool,
    pub currency: Option<String>,
    pub reason_code: String,
    pub reason_message: Option<String>,
}

/// A terminal's QR settings (`qrSettings`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrSettings {
    pub qr_type: QrType,
    pub amount_type: AmountType,
    /// Seconds, at least 30.
    pub qr_ttl: u32,
    pub prohibit_settings_change: bool,
    /// When they last changed (output only).
    pub when_updated: Option<chrono::DateTime<chrono::Utc>>,
}

/// The terminal's current shift at MIA (`GET /pos/api/v1/shift/check`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShiftStatus {
    /// The current (or last) shift.
    pub shift_id: Option<String>,
    pub is_opened: bool,
}

/// What MIA's Z-report of a closed shift adds up (`GET /pos/api/v2/shift/{shiftId}/z-report`,
/// its `reportJson`): payments and cancellations (refunds), and the net.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShiftZReport {
    pub payment_count: u64,
    pub payment_sum: fiscus_domain::Money,
    /// Refunds, as MIA's report calls them.
    pub cancellation_count: u64,
    /// Positive.
    pub cancellation_sum: fiscus_domain::Money,
    /// `paymentSum` less `cancellationSum`.
    pub total_sum: fiscus_domain::Money,
}
