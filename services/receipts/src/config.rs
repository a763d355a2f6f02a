//! The `[receipts]` section of the configuration, and the policy read from it.

use chrono::FixedOffset;
use fiscus_domain::Rate;
use serde::Deserialize;

use crate::append::ShiftRule;

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

    /// Whether the merchant's receipts need an open shift.
    pub fn shift_rule(&self, merchant_tin: &str) -> ShiftRule {
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
}
