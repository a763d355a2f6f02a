//! e-barimt's reference data, for the till: the POSAPI instance, bank accounts, taxpayers,
//! districts and tax codes. Slow-changing answers are cached (in Redis, or in process) for
//! `reference_cache_secs`; a taxpayer that e-barimt does not know is NOT_FOUND.

use std::time::Duration;

use fiscus_kit::ApiError;
use fiscus_kit::cache::SharedCache;
use std::sync::Arc;

use fiscus_proto::v1 as pb;
use fiscus_providers::ProviderError;
use fiscus_providers::ebarimt::{self, EbarimtClient};
use prost::Message;

use crate::config::OutboxConfig;
use crate::proto::ToPb;
use crate::tokens::UpstreamTokens;

pub struct Reference {
    cache: SharedCache,
    ttl: Duration,
    /// The central API's e-barimt tokens.
    tokens: Arc<UpstreamTokens>,
}

/// What a caller is told when e-barimt failed a lookup: UNAVAILABLE (retry), naming it.
fn upstream(error: ProviderError, what: &str) -> ApiError {
    match error {
        ProviderError::Refused { description, .. } => {
            ApiError::FailedPrecondition(format!("e-barimt refused {what}: {description}"))
        }
        other => ApiError::Unavailable(format!("e-barimt could not answer {what}: {other}")),
    }
}

impl Reference {
    pub fn new(cache: SharedCache, config: &OutboxConfig, tokens: Arc<UpstreamTokens>) -> Self {
        Self {
            cache,
            ttl: Duration::from_secs(config.reference_cache_secs),
            tokens,
        }
    }

    /// The bearer token of the merchant's e-barimt `credential` at TokenService, for the
    /// central API; none without a credential.
    pub async fn bearer(
        &self,
        merchant_tin: &str,
        credential: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let Some(credential) = credential else {
            return Ok(None);
        };
        let answer = self
            .tokens
            .get(pb::Provider::Ebarimt, merchant_tin, credential)
            .await
            .map_err(|status| {
                ApiError::Unavailable(format!(
                    "no e-barimt token for merchant {merchant_tin} (credential {credential:?}) \
                     from the token service: {}",
                    status.message()
                ))
            })?;
        Ok(Some(answer.access_token))
    }

    /// `fetch`'s answer, from the cache when it holds one under `key`.
    async fn cached<M, F>(&self, key: String, fetch: F) -> Result<M, ApiError>
    where
        M: Message + Default,
        F: Future<Output = Result<M, ApiError>>,
    {
        if let Ok(Some(bytes)) = self.cache.get(&key).await
            && let Ok(answer) = M::decode(bytes.as_slice())
        {
            return Ok(answer);
        }
        let answer = fetch.await?;
        if !self.ttl.is_zero()
            && let Err(error) = self
                .cache
                .set(&key, &answer.encode_to_vec(), self.ttl)
                .await
        {
            tracing::debug!(%error, "reference data not cached");
        }
        Ok(answer)
    }

    /// GET /rest/info of the merchant's POSAPI instance (never cached: it reports live state).
    pub async fn service_info(
        &self,
        client: &EbarimtClient,
    ) -> Result<pb::GetServiceInfoResponse, ApiError> {
        let info = client
            .info()
            .await
            .map_err(|e| upstream(e, "the POSAPI information"))?;
        Ok(pb::GetServiceInfoResponse {
            provider: pb::Provider::Ebarimt.into(),
            operator_name: info.operator_name,
            operator_tin: info.operator_tin,
            pos_id: info.pos_id.unwrap_or_default(),
            pos_no: info.pos_no,
            last_sent_at: ulaanbaatar_time(&info.last_sent_date),
            left_lotteries: info
                .left_lotteries
                .and_then(|n| i64::try_from(n).ok())
                .unwrap_or_default(),
            app_info: Some(pb::PosApiAppInfo {
                application_dir: info.app_info.application_dir,
                current_dir: info.app_info.current_dir,
                database: info.app_info.database,
                database_host: info.app_info.database_host,
                work_dir: info.app_info.work_dir,
            }),
            merchants: info
                .merchants
                .into_iter()
                .map(|m| pb::RegisteredMerchant {
                    name: m.name,
                    tin: m.tin,
                    customers: m
                        .customers
                        .into_iter()
                        .map(|c| pb::RegisteredCustomer {
                            name: c.name,
                            tin: c.tin,
                            vat_payer: c.vat_payer,
                        })
                        .collect(),
                })
                .collect(),
            ..Default::default()
        })
    }

    pub async fn bank_accounts(
        &self,
        merchant_tin: &str,
        client: &EbarimtClient,
        tin: &str,
    ) -> Result<pb::ListBankAccountsResponse, ApiError> {
        self.cached(
            format!("ebarimt:{merchant_tin}:bank-accounts:{tin}"),
            async {
                let accounts = client
                    .bank_accounts(tin)
                    .await
                    .map_err(|e| upstream(e, &format!("the bank accounts of {tin}")))?;
                Ok(pb::ListBankAccountsResponse {
                    bank_accounts: accounts
                        .into_iter()
                        .map(|a| pb::BankAccount {
                            id: i64::try_from(a.id).unwrap_or_default(),
                            tin: a.tin,
                            bank_account_no: a.bank_account_no,
                            bank_account_name: a.bank_account_name,
                            bank_id: i64::try_from(a.bank_id).unwrap_or_default(),
                            bank_name: a.bank_name,
                            iban: a.iban,
                        })
                        .collect(),
                })
            },
        )
        .await
    }

    /// A taxpayer by TIN, or by state registration number (its TIN looked up first).
    pub async fn taxpayer(
        &self,
        merchant_tin: &str,
        client: &EbarimtClient,
        token: Option<&str>,
        lookup: &Taxpayer<'_>,
    ) -> Result<pb::GetTaxpayerInfoResponse, ApiError> {
        let tin = match lookup {
            Taxpayer::Tin(tin) => (*tin).to_owned(),
            Taxpayer::RegNo(reg_no) => client
                .tin_of(reg_no, token)
                .await
                .map_err(|e| upstream(e, &format!("the TIN of {reg_no}")))?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("reg_no: e-barimt knows no taxpayer {reg_no}"))
                })?,
        };
        let field = match lookup {
            Taxpayer::Tin(_) => "tin",
            Taxpayer::RegNo(_) => "reg_no",
        };
        self.cached(format!("ebarimt:{merchant_tin}:taxpayer:{tin}"), async {
            let info = client
                .taxpayer(&tin, token)
                .await
                .map_err(|e| upstream(e, &format!("the taxpayer {tin}")))?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("{field}: e-barimt knows no taxpayer {tin}"))
                })?;
            Ok(pb::GetTaxpayerInfoResponse {
                taxpayer: Some(pb::TaxpayerInfo {
                    tin: tin.clone(),
                    found: true,
                    name: info.name,
                    vat_payer: info.vat_payer,
                    vat_payer_registered_date: info.vatpayer_registered_date,
                    city_payer: info.city_payer,
                    free_project: info.free_project,
                    is_government: info.is_government,
                }),
            })
        })
        .await
    }

    pub async fn branches(
        &self,
        merchant_tin: &str,
        client: &EbarimtClient,
        token: Option<&str>,
    ) -> Result<pb::GetBranchInfoResponse, ApiError> {
        self.cached(format!("ebarimt:{merchant_tin}:branches"), async {
            let branches = client
                .branches(token)
                .await
                .map_err(|e| upstream(e, "the districts"))?;
            Ok(pb::GetBranchInfoResponse {
                districts: branches
                    .into_iter()
                    .map(|b| pb::District {
                        district_code: b.district_code(),
                        branch_code: b.branch_code,
                        branch_name: b.branch_name,
                        sub_branch_code: b.sub_branch_code,
                        sub_branch_name: b.sub_branch_name,
                    })
                    .collect(),
            })
        })
        .await
    }

    /// The tax types with their rates, and the product codes (of one tax type, if asked).
    pub async fn tax_types(
        &self,
        merchant_tin: &str,
        client: &EbarimtClient,
        token: Option<&str>,
        vat_rate: &str,
        only: Option<fiscus_domain::TaxType>,
    ) -> Result<pb::ListTaxTypesResponse, ApiError> {
        let all: pb::ListTaxTypesResponse = self
            .cached(format!("ebarimt:{merchant_tin}:tax-codes"), async {
                let codes = client
                    .product_tax_codes(token)
                    .await
                    .map_err(|e| upstream(e, "the product tax codes"))?;
                Ok(pb::ListTaxTypesResponse {
                    tax_types: Vec::new(),
                    tax_product_codes: codes
                        .into_iter()
                        .filter_map(|c| {
                            let tax_type = domain_tax_type(c.tax_type()?);
                            Some(pb::TaxProductCode {
                                code: c.tax_product_code,
                                name: c.tax_product_name,
                                tax_type: tax_type.to_pb().into(),
                                start_date: c.start_date,
                                end_date: c.end_date.unwrap_or_default(),
                            })
                        })
                        .collect(),
                })
            })
            .await?;
        use fiscus_domain::TaxType as T;
        let tax_types = [
            (T::VatAble, 1),
            (T::VatFree, 2),
            (T::VatZero, 3),
            (T::NoVat, 5),
        ]
        .into_iter()
        .filter(|(t, _)| only.is_none_or(|o| o == *t))
        .map(|(t, code)| pb::TaxTypeInfo {
            tax_type: t.to_pb().into(),
            name: t.as_str().to_owned(),
            vat_rate: if t.bears_vat() { vat_rate } else { "0.00" }.to_owned(),
            code,
        })
        .collect();
        let wanted = only.map(|t| i32::from(t.to_pb()));
        Ok(pb::ListTaxTypesResponse {
            tax_types,
            tax_product_codes: all
                .tax_product_codes
                .into_iter()
                .filter(|c| wanted.is_none_or(|w| c.tax_type == w))
                .collect(),
        })
    }
}

/// How GetTaxpayerInfo names its taxpayer.
pub enum Taxpayer<'a> {
    Tin(&'a str),
    RegNo(&'a str),
}

fn domain_tax_type(t: ebarimt::TaxType) -> fiscus_domain::TaxType {
    match t {
        ebarimt::TaxType::VatAble => fiscus_domain::TaxType::VatAble,
        ebarimt::TaxType::VatFree => fiscus_domain::TaxType::VatFree,
        ebarimt::TaxType::VatZero => fiscus_domain::TaxType::VatZero,
        ebarimt::TaxType::NoVat => fiscus_domain::TaxType::NoVat,
    }
}

/// A POSAPI time (`yyyy-MM-dd HH:mm:ss`, Ulaanbaatar), as a timestamp.
fn ulaanbaatar_time(text: &str) -> Option<prost_types::Timestamp> {
    let local = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    let offset = chrono::FixedOffset::east_opt(8 * 3600)?;
    let at = local.and_local_timezone(offset).single()?;
    Some(crate::proto::timestamp(at.with_timezone(&chrono::Utc)))
}
