//! The `[receipts]` section of the configuration, and the policy read from it.

use chrono::FixedOffset;
use fiscus_domain::Rate;
use secrecy::SecretString;
use serde::Deserialize;

use crate::append::{ShiftRule, Terms};

/// The receipt journal: limits, tax rates and the merchants served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptsConfig {
    /// Most items one receipt may carry.
    pub item_limit: usize,
    /// Largest encoded request the receipt service accepts, in bytes.
    pub max_request_bytes: usize,
    /// ISO 4217 currency of merchants without their own.
    pub currency: String,
    /// Standard VAT rate in percent, applied to VAT_ABLE items without an explicit rate.
    pub vat_rate: String,
    /// City tax rate in percent for items that bear city tax without an explicit rate.
    pub city_tax_rate: String,
    /// The business day (for same-day cancellation) in this UTC offset; Ulaanbaatar is +480.
    pub business_day_utc_offset_minutes: i32,
    /// Most WatchReceipt streams open at once in one process; more are RESOURCE_EXHAUSTED.
    pub max_watchers: usize,
    /// Whether a receipt needs an open shift on its terminal (FAILED_PRECONDITION without one)
    /// or may be made outside any shift; a merchant's own `require_open_shift` overrides it.
    pub require_open_shift: bool,
    /// Merchants with settings of their own; any other TIN is served with the defaults.
    pub merchants: Vec<MerchantConfig>,
    /// How receipts reach their providers: `[receipts.outbox]`.
    pub outbox: OutboxConfig,
    /// transactionForms.json, the ERP forms SignTransaction maps records through. Unset: none.
    pub transaction_forms: Option<std::path::PathBuf>,
    /// The client this service asks TokenService for its own token as (`[[auth.clients]]` with
    /// scope `tokens:read`), to get e-barimt tokens for the central API; empty when
    /// authentication is off.
    pub client_id: String,
    #[serde(deserialize_with = "fiscus_kit::config::lenient::secret")]
    pub client_secret: SecretString,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        Self {
            item_limit: 1000,
            max_request_bytes: 4 * 1024 * 1024,
            currency: "MNT".to_owned(),
            vat_rate: "10.00".to_owned(),
            city_tax_rate: "2.00".to_owned(),
            business_day_utc_offset_minutes: 8 * 60,
            max_watchers: 10_000,
            require_open_shift: false,
            merchants: Vec::new(),
            outbox: OutboxConfig::default(),
            transaction_forms: None,
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
        }
    }
}

/// One merchant's settings (`[[receipts.merchants]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantConfig {
    pub tin: String,
    /// Printed at the top of the merchant's receipts.
    pub name: String,
    /// Registered as a city-tax (НХАТ) payer: its items may bear city tax.
    #[serde(default)]
    pub city_tax_payer: bool,
    /// ISO 4217 currency; defaults to `receipts.currency`.
    #[serde(default)]
    pub currency: Option<String>,
    /// Whether its receipts need an open shift; defaults to `receipts.require_open_shift`.
    #[serde(default)]
    pub require_open_shift: Option<bool>,
    /// Who fiscalizes its receipts: `builtin` (default, fiscus's signer alone), `ebarimt` or
    /// `fiskaltrust`.
    #[serde(default)]
    pub provider: ProviderKind,
    /// Its POSAPI 3.0 instance, for `provider = "ebarimt"`: `[receipts.merchants.ebarimt]`.
    #[serde(default)]
    pub ebarimt: Option<EbarimtMerchant>,
    /// Its fiskaltrust cash box, for `provider = "fiskaltrust"`:
    /// `[receipts.merchants.fiskaltrust]`.
    #[serde(default)]
    pub fiskaltrust: Option<FiskaltrustMerchant>,
}

/// Who fiscalizes a merchant's receipts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// fiscus's own signer: numbered, chained and signed, nothing sent anywhere.
    #[default]
    Builtin,
    /// Mongolia's e-barimt, through a POSAPI 3.0 instance.
    Ebarimt,
    /// fiskaltrust.Middleware (EU markets), through a cash box's POS System API v2.
    Fiskaltrust,
}

impl ProviderKind {
    /// The name in the `provider` columns and in metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "BUILTIN",
            Self::Ebarimt => "EBARIMT",
            Self::Fiskaltrust => "FISKALTRUST",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "BUILTIN" => Some(Self::Builtin),
            "EBARIMT" => Some(Self::Ebarimt),
            "FISKALTRUST" => Some(Self::Fiskaltrust),
            _ => None,
        }
    }

    /// The label of metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Ebarimt => "ebarimt",
            Self::Fiskaltrust => "fiskaltrust",
        }
    }

    /// Whether receipts go upstream (through the outbox).
    pub const fn is_upstream(self) -> bool {
        !matches!(self, Self::Builtin)
    }
}

/// A merchant's POSAPI 3.0 instance and its e-barimt settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbarimtMerchant {
    /// The POSAPI daemon (`/rest/receipt`, `/rest/info` …), e.g. `http://localhost:7080`.
    pub posapi_url: String,
    /// e-barimt's central API (`/api/info/check/…` lookups), e.g. `https://api.ebarimt.mn`.
    #[serde(default = "default_ebarimt_api")]
    pub api_url: String,
    /// The district code (4 digits) of receipts that name none, e.g. `"2501"`.
    pub district_code: String,
    /// The merchant's e-barimt credential at TokenService (`[[tokens.ebarimt]]`'s `credential`,
    /// usually `"default"`) whose token the central API's lookups carry. Unset: they carry none.
    #[serde(default)]
    pub credential: Option<String>,
}

fn default_ebarimt_api() -> String {
    "https://api.ebarimt.mn".to_owned()
}

/// A merchant's fiskaltrust cash box. Its id and access token are TokenService's
/// (`[[tokens.fiskaltrust]]`), fetched by `credential`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiskaltrustMerchant {
    /// The middleware's POS System API, below which `/v2/sign` lies, e.g.
    /// `https://possystem-api-sandbox.fiskaltrust.eu`.
    pub url: String,
    /// The market of the cash box's queue, ISO 3166-1 alpha-2 (`"IT"`, `"DE"`, `"AT"`): the
    /// country code in every case value, and the VAT rates items are classified by.
    pub market: String,
    /// The POS system id from the fiskaltrust portal (`ftPosSystemId`). Optional.
    #[serde(default)]
    pub pos_system_id: Option<String>,
    /// The cash box credential at TokenService (`[[tokens.fiskaltrust]]`'s `credential`).
    #[serde(default = "default_credential")]
    pub credential: String,
    /// How long the middleware may work on one receipt (`x-operation-lifetime`), ms.
    #[serde(default = "default_operation_lifetime_ms")]
    pub operation_lifetime_ms: u64,
}

fn default_credential() -> String {
    "default".to_owned()
}

const fn default_operation_lifetime_ms() -> u64 {
    15_000
}

/// The outbox: how receipts of upstream merchants are delivered (`[receipts.outbox]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// How long SignReceipt waits for the provider before it answers PENDING, ms.
    pub answer_within_ms: u64,
    /// How long one delivery attempt may take, ms.
    pub attempt_timeout_ms: u64,
    /// The first retry's delay, ms; each later one doubles it, with jitter, up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// A receipt still undelivered this long after it was journaled becomes a dead letter, s.
    pub dead_letter_after_secs: u64,
    /// How long a worker's claim on a receipt lasts; a worker that dies loses it after this, ms.
    pub claim_ms: u64,
    /// Deliveries one process has under way at once.
    pub concurrency: usize,
    /// How often the outbox is looked at for due receipts besides the ones this process signs, ms.
    pub poll_ms: u64,
    /// How long e-barimt's lottery number and QR data (for the printed receipt only) are kept
    /// after acceptance, s; then they are erased. 0 keeps them only in SignReceipt's answer.
    pub printed_data_retention_secs: u64,
    /// How long reference data (districts, tax codes, taxpayers, bank accounts) is cached, s.
    pub reference_cache_secs: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            answer_within_ms: 3_000,
            attempt_timeout_ms: 10_000,
            retry_min_ms: 500,
            retry_max_ms: 60_000,
            dead_letter_after_secs: 24 * 3600,
            claim_ms: 30_000,
            concurrency: 32,
            poll_ms: 500,
            printed_data_retention_secs: 15 * 60,
            reference_cache_secs: 3600,
        }
    }
}

/// The rules receipts are checked and printed by, read from [`ReceiptsConfig`] once.
#[derive(Debug, Clone)]
pub struct Policy {
    pub item_limit: usize,
    pub vat_rate: Rate,
    pub city_tax_rate: Rate,
    pub business_day: FixedOffset,
    config: ReceiptsConfig,
}

impl Policy {
    pub fn from_config(config: &ReceiptsConfig) -> anyhow::Result<Self> {
        let rate = |key: &str, value: &str| {
            Rate::parse(value)
                .ok()
                .filter(|r| r.is_percentage())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "configuration: {key} must be a percentage such as \"10.00\", not {value:?}"
                    )
                })
        };
        let business_day = FixedOffset::east_opt(
            config.business_day_utc_offset_minutes.saturating_mul(60),
        )
        .ok_or_else(|| {
            anyhow::anyhow!(
                "configuration: receipts.business_day_utc_offset_minutes must be within ±1439"
            )
        })?;
        let outbox = &config.outbox;
        if outbox.claim_ms <= outbox.attempt_timeout_ms {
            anyhow::bail!(
                "configuration: receipts.outbox.claim_ms ({}) must be longer than \
                 attempt_timeout_ms ({}): a claim must outlast the attempt it covers",
                outbox.claim_ms,
                outbox.attempt_timeout_ms
            );
        }
        if outbox.retry_min_ms == 0 || outbox.retry_max_ms < outbox.retry_min_ms {
            anyhow::bail!("configuration: receipts.outbox needs 0 < retry_min_ms <= retry_max_ms");
        }
        for m in &config.merchants {
            match (m.provider, &m.ebarimt) {
                (ProviderKind::Ebarimt, None) => anyhow::bail!(
                    "configuration: merchant {} has provider = \"ebarimt\" but no \
                     [receipts.merchants.ebarimt] (posapi_url, district_code)",
                    m.tin
                ),
                (ProviderKind::Ebarimt, Some(e))
                    if e.district_code.len() != 4
                        || !e.district_code.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    anyhow::bail!(
                        "configuration: merchant {}: ebarimt.district_code must be 4 digits, not {:?}",
                        m.tin,
                        e.district_code
                    )
                }
                _ => {}
            }
            if m.provider == ProviderKind::Fiskaltrust {
                let Some(f) = &m.fiskaltrust else {
                    anyhow::bail!(
                        "configuration: merchant {} has provider = \"fiskaltrust\" but no \
                         [receipts.merchants.fiskaltrust] (url, market)",
                        m.tin
                    );
                };
                fiscus_providers::fiskaltrust::Market::parse(&f.market).map_err(|e| {
                    anyhow::anyhow!("configuration: merchant {}: fiskaltrust.{e}", m.tin)
                })?;
                let currency = m.currency.as_deref().unwrap_or(&config.currency);
                let expected = fiscus_providers::fiskaltrust::mapping::CURRENCY;
                if currency != expected {
                    anyhow::bail!(
                        "configuration: merchant {}: fiskaltrust signs in {expected}; set \
                         currency = \"{expected}\" (not {currency:?})",
                        m.tin
                    );
                }
            }
        }
        Ok(Self {
            item_limit: config.item_limit,
            vat_rate: rate("receipts.vat_rate", &config.vat_rate)?,
            city_tax_rate: rate("receipts.city_tax_rate", &config.city_tax_rate)?,
            business_day,
            config: config.clone(),
        })
    }

    fn merchant(&self, tin: &str) -> Option<&MerchantConfig> {
        self.config.merchants.iter().find(|m| m.tin == tin)
    }

    pub fn currency(&self, merchant_tin: &str) -> &str {
        self.merchant(merchant_tin)
            .and_then(|m| m.currency.as_deref())
            .unwrap_or(&self.config.currency)
    }

    pub fn city_tax_payer(&self, merchant_tin: &str) -> bool {
        self.merchant(merchant_tin)
            .is_some_and(|m| m.city_tax_payer)
    }

    pub fn merchant_name(&self, merchant_tin: &str) -> String {
        self.merchant(merchant_tin)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| format!("Merchant {merchant_tin}"))
    }

    /// What the merchant's receipts are appended under.
    pub fn terms(&self, merchant_tin: &str) -> Terms {
        Terms {
            shift: self.shift_rule(merchant_tin),
            provider: self.provider(merchant_tin),
        }
    }

    /// Whether the merchant's receipts need an open shift.
    fn shift_rule(&self, merchant_tin: &str) -> ShiftRule {
        let required = self
            .merchant(merchant_tin)
            .and_then(|m| m.require_open_shift)
            .unwrap_or(self.config.require_open_shift);
        if required {
            ShiftRule::Required
        } else {
            ShiftRule::Optional
        }
    }

    pub fn max_watchers(&self) -> usize {
        self.config.max_watchers
    }

    /// Who fiscalizes the merchant's receipts.
    pub fn provider(&self, merchant_tin: &str) -> ProviderKind {
        self.merchant(merchant_tin)
            .map_or(ProviderKind::Builtin, |m| m.provider)
    }

    /// The TokenService credential of an e-barimt merchant's central-API calls, if any.
    pub fn ebarimt_credential(&self, merchant_tin: &str) -> Option<&str> {
        self.merchant(merchant_tin)?
            .ebarimt
            .as_ref()?
            .credential
            .as_deref()
    }

    /// Every merchant configured with e-barimt.
    pub fn ebarimt_merchants(&self) -> impl Iterator<Item = (&str, &EbarimtMerchant)> {
        self.config
            .merchants
            .iter()
            .filter(|m| m.provider == ProviderKind::Ebarimt)
            .filter_map(|m| Some((m.tin.as_str(), m.ebarimt.as_ref()?)))
    }

    /// Every merchant configured with fiskaltrust.
    pub fn fiskaltrust_merchants(&self) -> impl Iterator<Item = (&str, &FiskaltrustMerchant)> {
        self.config
            .merchants
            .iter()
            .filter(|m| m.provider == ProviderKind::Fiskaltrust)
            .filter_map(|m| Some((m.tin.as_str(), m.fiskaltrust.as_ref()?)))
    }

    pub fn outbox(&self) -> &OutboxConfig {
        &self.config.outbox
    }
}
