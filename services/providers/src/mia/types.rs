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
