//! The `[shifts]` section of the configuration: this service's identity towards its peers.

use secrecy::SecretString;
use serde::Deserialize;

/// Shifts and their reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShiftsConfig {
    /// The client this service asks TokenService for its own token as (`[[auth.clients]]` with
    /// the scopes `receipts:shifts payments:shifts`), for the calls it makes to ReceiptService and
    /// PaymentService; empty when
    /// authentication is off.
    pub client_id: String,
    #[serde(deserialize_with = "fiscus_kit::config::lenient::secret")]
    pub client_secret: SecretString,
    /// Timeout of one call to ReceiptService or PaymentService.
    pub peer_timeout_ms: u64,
    /// Whether QR payments (PaymentService) are counted in shifts and reports; false where
    /// PaymentService is not deployed.
    pub with_payments: bool,
}

impl Default for ShiftsConfig {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
            peer_timeout_ms: 10_000,
            with_payments: true,
        }
    }
}
