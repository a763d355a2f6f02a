//! The `[payments]` section of the configuration: MIA, this service's identity towards
//! TokenService, the device it presents to MIA, and the pace of status polls.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// QR payments through MIA POS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Base URL of the MIA POS terminal API; empty = MIA not configured (every RPC that needs
    /// MIA answers FAILED_PRECONDITION).
    pub mia_url: String,
    /// Timeout of one MIA request. A creation or refund whose answer does not come in time has
    /// an unknown outcome: its retry looks it up at MIA before posting again.
    pub mia_timeout_ms: u64,
    /// The client this service asks TokenService for its own token as (`[[auth.clients]]` with
    /// scopes `tokens:read tokens:write`); empty when authentication is off.
    pub client_id: String,
    #[serde(deserialize_with = "fiscus_kit::config::lenient::secret")]
    pub client_secret: SecretString,
    /// ISO 4217 currency of the merchants' QR payments.
    pub currency: String,
    /// How often the payment requests somebody watches are asked at MIA. One schedule per
    /// process, whatever the number of watchers; across replicas each request is asked by one
    /// replica per round.
    pub poll_interval_ms: u64,
    /// False: this replica asks MIA nothing for watchers; it hears what the others find.
    pub poll_mia: bool,
    /// Most WatchPayment streams open at once in one process; more are RESOURCE_EXHAUSTED.
    pub max_watchers: usize,
    /// The device fiscus presents to MIA on every call (`X-DEVICE`, `X-PLATFORM-*`, …).
    pub device: DeviceConfig,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            mia_url: String::new(),
            mia_timeout_ms: 10_000,
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
            currency: "MDL".to_owned(),
            poll_interval_ms: 1_000,
            poll_mia: true,
            max_watchers: 20_000,
            device: DeviceConfig::default(),
        }
    }
}

/// MIA's device headers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// `X-DEVICE`: the device model, or the system's name.
    pub device: String,
    /// `X-PLATFORM-TYPE`: `ios`, `android`, `web` or `external_system`.
    pub platform_type: String,
    /// `X-PLATFORM-VERSION`; empty = not sent.
    pub platform_version: String,
    /// `X-INSTALLATION-ID`, a UUID kept for the installation; empty = a new one at every start.
    pub installation_id: String,
    /// `X-POS-APP-VERSION`.
    pub pos_app_version: u32,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            device: "fiscus".to_owned(),
            platform_type: "external_system".to_owned(),
            platform_version: String::new(),
            installation_id: String::new(),
            pos_app_version: 1,
        }
    }
}

impl PaymentsConfig {
    pub fn mia_timeout(&self) -> Duration {
        Duration::from_millis(self.mia_timeout_ms.max(1))
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }

    /// The device headers, checked.
    pub fn device(&self) -> anyhow::Result<fiscus_providers::mia::DeviceInfo> {
        use fiscus_providers::mia::PlatformType;
        let d = &self.device;
        let platform_type = match d.platform_type.as_str() {
            "ios" => PlatformType::Ios,
            "android" => PlatformType::Android,
            "web" => PlatformType::Web,
            "external_system" => PlatformType::ExternalSystem,
            other => anyhow::bail!(
                "configuration: payments.device.platform_type must be ios, android, web or external_system, not {other:?}"
            ),
        };
        let installation_id = if d.installation_id.is_empty() {
            uuid::Uuid::new_v4()
        } else {
            uuid::Uuid::parse_str(&d.installation_id).map_err(|_| {
                anyhow::anyhow!("configuration: payments.device.installation_id must be a UUID")
            })?
        };
        if d.device.trim().is_empty() {
            anyhow::bail!("configuration: payments.device.device must not be empty");
        }
        Ok(fiscus_providers::mia::DeviceInfo {
            device: d.device.clone(),
            platform_type,
            platform_version: (!d.platform_version.is_empty()).then(|| d.platform_version.clone()),
            installation_id,
            native_app_version: None,
            pos_app_version: d.pos_app_version.max(1),
        })
    }
}
