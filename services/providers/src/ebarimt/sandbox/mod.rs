//! The e-barimt sandbox: one HTTP server playing both the POSAPI 3.0 daemon (`/rest/*`) and the
//! central API (`/api/*`), so one base URL serves as both of [`crate::ebarimt::EbarimtClient`]'s.
//!
//! What it models, beyond the shape of the answers:
//!
//! - every receipt body is validated against the official OpenAPI document itself, relaxed only
//!   as [`crate::ebarimt::spec::RELAXATIONS`] says; violations are refused naming the JSON
//!   pointer and counted apart ([`EbarimtSandbox::schema_violations`]);
//! - the arithmetic the tax authority checks, on exact decimals: item totals are `qty` ×
//!   `unitPrice` rounded half away from zero to the cent; VAT and city tax are the VAT-inclusive
//!   split of each item's total (`VAT = T·0.10/(1.10+c)`, `city tax = T·c/(1.10+c)`, c of 0, 1 or
//!   2 % for city-tax payers and 0 otherwise, ±0.01 per item; no VAT on other tax types nor from
//!   merchants who are not VAT payers); sub-receipt and batch totals are exact sums; payments come
//!   to the total; `taxProductCode` on `VAT_FREE`, `VAT_ZERO` and `NO_VAT` items; a pharmacy's
//!   items carry `data.lotNo`; merchants are the ones registered here, B2B buyers known taxpayers,
//!   `consumerNo` only on `B2C_RECEIPT`, `districtCode` 4 digits, `billIdSuffix` present;
//! - `billIdSuffix` as the module docs of [`crate::ebarimt`] say: a repeat with the identical
//!   body answers the document already made, with another body is refused;
//! - corrections (`inactiveId` must name an active document of the same merchant, which becomes
//!   corrected) and `DELETE {id, date}` (an active document, `date` its date as answered, or its
//!   day alone);
//! - documents: a 33-digit ДДТД (10 digits of `posId`, the Ulaanbaatar date `yyyyMMdd`, 15 of a
//!   sequence that never repeats; each sub-receipt has its own), `date` in Ulaanbaatar time
//!   (UTC+8), a 160-digit `qrData`, and a lottery for `B2C_RECEIPT`s that correct nothing: two
//!   Latin capitals and 8 digits (`QX48120593`; the document gives no format), one of the
//!   installation's `leftLotteries`;
//! - not found on the central lookups as the live service answers it: HTTP 200
//!   `{"msg": "...", "status": 500, "data": null}`.
//!
//! Not modelled: the payment exchange service (`PAY`, `REVERSED`: only `PAID` payments are
//! taken), `reportMonth`'s window, the same-day limit on `DELETE`, the citizen's confirmation.

mod receipts;
mod reference;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use super::spec::Spec;
use super::types::{BankAccount, Branch, ProductTaxCode, ReceiptAnswer, ReceiptRequest};
use crate::sandbox::{self, Faults, SandboxError, Server, lock};

const SANDBOX: &str = "ebarimt";

/// What the sandbox knows: the installation, its merchants, and the central registers.
#[derive(Clone, Debug)]
pub struct EbarimtSandboxConfig {
    /// Where to listen; loopback on a free port by default.
    pub bind: SocketAddr,
    /// `operatorName` and `operatorTIN` of `/rest/info`: the system integrator.
    pub operator_name: String,
    pub operator_tin: String,
    /// The installation's `posId` (in every answer and ДДТД) and `posNo`.
    pub pos_id: u64,
    pub pos_no: String,
    /// The merchants registered on the installation: only they may issue receipts.
    pub merchants: Vec<EbarimtMerchant>,
    /// Other taxpayers the central register knows (B2B buyers).
    pub taxpayers: Vec<EbarimtTaxpayer>,
    /// Registration number → TIN, for `getTinInfo`.
    pub reg_numbers: Vec<(String, String)>,
    /// The districts of `getBranchInfo`; `districtCode` = branch code + sub-branch code.
    pub districts: Vec<Branch>,
    pub product_tax_codes: Vec<ProductTaxCode>,
    /// The merchants' bank accounts (`/rest/bankAccounts`), by their `tin`.
    pub bank_accounts: Vec<BankAccount>,
    /// `leftLotteries` at start; a B2C receipt needs one.
    pub lotteries: u64,
    /// When set, `/api/*` calls need `Authorization: Bearer <this>` (else HTTP 401).
    pub api_token: Option<String>,
}

/// A merchant registered on the POSAPI installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbarimtMerchant {
    pub tin: String,
    pub name: String,
    pub vat_payer: bool,
    /// Withholds city tax: its items may carry 1 or 2 % of it.
    pub city_payer: bool,
    /// "Эмийн сан": every item needs `data.lotNo`.
    pub pharmacy: bool,
}

impl EbarimtMerchant {
    /// A VAT and city-tax payer that is not a pharmacy.
    pub fn new(tin: impl Into<String>, name: impl Into<String>) -> Self {
        EbarimtMerchant {
            tin: tin.into(),
            name: name.into(),
            vat_payer: true,
            city_payer: true,
            pharmacy: false,
        }
    }

    pub fn pharmacy(mut self) -> Self {
        self.pharmacy = true;
        self
    }

    pub fn city_payer(mut self, yes: bool) -> Self {
        self.city_payer = yes;
        self
    }

    pub fn vat_payer(mut self, yes: bool) -> Self {
        self.vat_payer = yes;
        self
    }
}

/// A taxpayer of the central register that is not a merchant here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbarimtTaxpayer {
    pub tin: String,
    pub name: String,
    pub vat_payer: bool,
    pub city_payer: bool,
    pub free_project: bool,
    pub is_government: bool,
    pub vatpayer_registered_date: String,
}

impl EbarimtTaxpayer {
    /// A VAT payer, not a city-tax payer, registered 2019-02-16.
    pub fn new(tin: impl Into<String>, name: impl Into<String>) -> Self {
        EbarimtTaxpayer {
            tin: tin.into(),
            name: name.into(),
            vat_payer: true,
            city_payer: false,
            free_project: false,
            is_government: false,
            vatpayer_registered_date: "2019-02-16".to_owned(),
        }
    }
}

/// fiscus's dev merchant (`make run`).
pub const DEV_MERCHANT_TIN: &str = "37900846788";

impl Default for EbarimtSandboxConfig {
    /// The dev merchant and a pharmacy, two buyers, a few districts and tax product codes.
    fn default() -> Self {
        let branch = |code: &str, name: &str, sub: &str, sub_name: &str| Branch {
            branch_code: code.to_owned(),
            branch_name: name.to_owned(),
            sub_branch_code: sub.to_owned(),
            sub_branch_name: sub_name.to_owned(),
        };
        let code = |code: &str, name: &str, type_code: u64, type_name: &str| ProductTaxCode {
            start_date: "2016-01-01".to_owned(),
            end_date: None,
            tax_product_code: code.to_owned(),
            tax_product_name: name.to_owned(),
            tax_type_code: type_code,
            tax_type_name: type_name.to_owned(),
        };
        let account =
            |id: u64, tin: &str, no: &str, name: &str, bank_id: u64, bank: &str| BankAccount {
                id,
                tin: tin.to_owned(),
                bank_account_no: no.to_owned(),
                bank_account_name: name.to_owned(),
                bank_id,
                iban: format!("MN{:02}{:04}{:0>12}", 10 + id, bank_id, no),
                bank_name: bank.to_owned(),
            };
        EbarimtSandboxConfig {
            bind: sandbox::LOOPBACK_ANY_PORT,
            operator_name: "Фискус Интегратор ХХК".to_owned(),
            operator_tin: "20001000005".to_owned(),
            pos_id: 101,
            pos_no: "10009335".to_owned(),
            merchants: vec![
                EbarimtMerchant::new(DEV_MERCHANT_TIN, "Фискус Дев ХХК"),
                EbarimtMerchant::new("10003000017", "Ачлал Эмийн сан ХХК").pharmacy(),
            ],
            taxpayers: vec![
                EbarimtTaxpayer::new("20001000013", "Бизнес Худалдан Авагч ХХК"),
                EbarimtTaxpayer {
                    vat_payer: false,
                    ..EbarimtTaxpayer::new("20001000021", "Жижиг Бизнес ХХК")
                },
            ],
            reg_numbers: vec![
                ("5317878".to_owned(), DEV_MERCHANT_TIN.to_owned()),
                ("6235972".to_owned(), "20001000013".to_owned()),
                ("АА99010112".to_owned(), "20001000021".to_owned()),
            ],
            districts: vec![
                branch("01", "Архангай", "01", "Эрдэнэбулган"),
                branch("01", "Архангай", "02", "Чулуут"),
                branch("25", "Баянзүрх", "01", "1-р хороо"),
                branch("26", "Сүхбаатар", "01", "1-р хороо"),
                branch("34", "Хан-Уул", "01", "1-р хороо"),
            ],
            product_tax_codes: vec![
                code("304", "НӨАТ-аас чөлөөлөгдөх төсөл", 2, "VAT_FREE"),
                code("320", "Сүү, сүүн бүтээгдэхүүн", 2, "VAT_FREE"),
                code(
                    "43401",
                    "Хөдөө аж ахуйн шинэ техник, тоног төхөөрөмж",
                    2,
                    "VAT_FREE",
                ),
                code("502", "Олон улсын тээврийн үйлчилгээ", 3, "VAT_ZERO"),
                code("503", "Экспортод гаргасан бараа", 3, "VAT_ZERO"),
                code(
                    "0000414",
                    "Монгол Улсын хилийн гадна борлуулсан бараа",
                    5,
                    "NO_VAT",
                ),
            ],
            bank_accounts: vec![
                account(
                    1,
                    DEV_MERCHANT_TIN,
                    "5041466217",
                    "Фискус Дев ХХК",
                    5,
                    "Хаан банк",
                ),
                account(
                    2,
                    DEV_MERCHANT_TIN,
                    "499012345",
                    "Фискус Дев ХХК",
                    4,
                    "Голомт банк",
                ),
                account(
                    3,
                    "10003000017",
                    "5100223344",
                    "Ачлал Эмийн сан ХХК",
                    5,
                    "Хаан банк",
                ),
            ],
            lotteries: 1_000_000,
            api_token: None,
        }
    }
}

impl EbarimtSandboxConfig {
    pub fn with_merchant(mut self, merchant: EbarimtMerchant) -> Self {
        self.merchants.push(merchant);
        self
    }

    pub fn with_taxpayer(mut self, taxpayer: EbarimtTaxpayer) -> Self {
        self.taxpayers.push(taxpayer);
        self
    }

    pub fn with_bank_account(mut self, account: BankAccount) -> Self {
        self.bank_accounts.push(account);
        self
    }
}

/// What became of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocumentState {
    Active,
    /// Replaced by the correction `by` (whose `inactiveId` named it).
    Corrected {
        by: String,
    },
    /// Made inactive by `DELETE`.
    Deleted,
}

/// A document the sandbox registered: the request as received and the answer it gave.
#[derive(Clone, Debug)]
pub struct EbarimtDocument {
    /// The ДДТД.
    pub id: String,
    pub merchant_tin: String,
    pub branch_no: String,
    pub pos_no: String,
    pub bill_id_suffix: String,
    /// As answered: `yyyy-MM-dd HH:mm:ss`, Ulaanbaatar time.
    pub date: String,
    pub request: ReceiptRequest,
    /// The body as received, byte for byte (UTF-8).
    pub body: String,
    pub answer: ReceiptAnswer,
    pub state: DocumentState,
}

/// Documents by ДДТД and by what makes a ДДТД unique.
#[derive(Default)]
struct Store {
    /// In creation order.
    documents: Vec<EbarimtDocument>,
    by_id: HashMap<String, usize>,
    /// (merchant TIN, branch, POS, Ulaanbaatar day, billIdSuffix) → document.
    by_suffix: HashMap<(String, String, String, chrono::NaiveDate, String), usize>,
    /// Every ДДТД handed out, batch and sub-receipt: none twice.
    issued: HashSet<String>,
    sequence: u64,
    lotteries_left: u64,
}

/// `reject_next`: refusals to give without looking at the request.
#[derive(Default)]
struct Rejections {
    left: u32,
    message: String,
}

struct EbarimtState {
    operator_name: String,
    operator_tin: String,
    pos_id: u64,
    pos_no: String,
    merchants: Vec<EbarimtMerchant>,
    taxpayers: Vec<EbarimtTaxpayer>,
    reg_numbers: Vec<(String, String)>,
    districts: Vec<Branch>,
    product_tax_codes: Vec<ProductTaxCode>,
    bank_accounts: Vec<BankAccount>,
    api_token: Option<String>,
    spec: &'static Spec,
    store: Mutex<Store>,
    rejections: Mutex<Rejections>,
    schema_violations: AtomicU64,
    refusals: AtomicU64,
    replays: AtomicU64,
    last_bearer: Mutex<Option<String>>,
}

impl EbarimtState {
    fn merchant(&self, tin: &str) -> Option<&EbarimtMerchant> {
        self.merchants.iter().find(|m| m.tin == tin)
    }

    fn is_taxpayer(&self, tin: &str) -> bool {
        self.merchant(tin).is_some() || self.taxpayers.iter().any(|t| t.tin == tin)
    }

    /// One of `reject_next`'s refusals, if any are left.
    fn take_rejection(&self) -> Option<String> {
        let mut rejections = lock(&self.rejections);
        rejections.left = rejections.left.checked_sub(1)?;
        Some(rejections.message.clone())
    }
}

/// A running e-barimt sandbox and its test controls. Dropping it stops the server.
pub struct EbarimtSandbox {
    server: Server,
    state: Arc<EbarimtState>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for EbarimtSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbarimtSandbox")
            .field("base_url", &self.server.base_url())
            .finish_non_exhaustive()
    }
}

impl EbarimtSandbox {
    /// Binds `config.bind` and serves on the current Tokio runtime.
    pub async fn start(config: EbarimtSandboxConfig) -> Result<Self, SandboxError> {
        let spec = Spec::relaxed().map_err(|e| config_error(e.to_string()))?;
        let mut tins = HashSet::new();
        if let Some(dup) = config
            .merchants
            .iter()
            .map(|m| &m.tin)
            .chain(config.taxpayers.iter().map(|t| &t.tin))
            .find(|tin| !tins.insert(*tin))
        {
            return Err(config_error(format!("TIN {dup} listed twice")));
        }
        let state = Arc::new(EbarimtState {
            operator_name: config.operator_name,
            operator_tin: config.operator_tin,
            pos_id: config.pos_id,
            pos_no: config.pos_no,
            merchants: config.merchants,
            taxpayers: config.taxpayers,
            reg_numbers: config.reg_numbers,
            districts: config.districts,
            product_tax_codes: config.product_tax_codes,
            bank_accounts: config.bank_accounts,
            api_token: config.api_token,
            spec,
            store: Mutex::new(Store {
                lotteries_left: config.lotteries,
                ..Store::default()
            }),
            rejections: Mutex::default(),
            schema_violations: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            replays: AtomicU64::new(0),
            last_bearer: Mutex::new(None),
        });
        let (shutdown, stopping) = Server::shutdown_channel();
        let faults = Arc::new(Faults::new(reference::unavailable, stopping));
        let daemon = Router::new()
            .route(
                super::paths::RECEIPT,
                post(receipts::post).delete(receipts::delete),
            )
            .route(super::paths::INFO, get(reference::info))
            .route(super::paths::SEND_DATA, get(reference::send_data))
            .route(super::paths::BANK_ACCOUNTS, get(reference::bank_accounts));
        let central = Router::new()
            .route(super::paths::TAXPAYER_INFO, get(reference::taxpayer))
            .route(super::paths::TIN_INFO, get(reference::tin_info))
            .route(super::paths::BRANCH_INFO, get(reference::branch_info))
            .route(
                super::paths::PRODUCT_TAX_CODES,
                get(reference::product_tax_codes),
            )
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                reference::authorize,
            ));
        let router = daemon
            .merge(central)
            .fallback(reference::not_found)
            // Outermost: every request is counted, whatever it is answered.
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                sandbox::inject_faults,
            ))
            .with_state(state.clone());
        let server = Server::start(SANDBOX, config.bind, router, shutdown).await?;
        Ok(EbarimtSandbox {
            server,
            state,
            faults,
        })
    }

    /// `http://127.0.0.1:PORT`: both the POSAPI URL and the central API URL of
    /// [`crate::ebarimt::EbarimtClient::new`].
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// Requests received on any path, whatever they were answered (failures included).
    pub fn requests(&self) -> u64 {
        self.faults.requests()
    }

    /// The W3C `traceparent` header of the last request, when it carried one.
    pub fn last_traceparent(&self) -> Option<String> {
        self.faults.last_traceparent()
    }

    /// The bearer token of the last `/api/*` request, when it carried one.
    pub fn last_bearer(&self) -> Option<String> {
        lock(&self.state.last_bearer).clone()
    }

    /// Down: the sandbox stops listening, so connections are refused (returns once they are);
    /// up: it listens again on the same port. Documents are kept.
    pub async fn set_down(&self, down: bool) -> Result<(), SandboxError> {
        self.server.set_down(down).await
    }

    /// The next `n` requests answer HTTP 503 without being handled.
    pub fn fail_next(&self, n: u32) {
        self.faults.fail_next(n);
    }

    /// The next `n` requests are handled (a receipt is registered) but never answered: the
    /// caller times out not knowing.
    pub fn drop_next(&self, n: u32) {
        self.faults.drop_next(n);
    }

    /// From now on each request is handled and its answer lost with probability `ratio`.
    pub fn set_drop_ratio(&self, ratio: f64) {
        self.faults.set_drop_ratio(ratio);
    }

    /// Every request waits `latency` before it is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.set_latency(latency);
    }

    /// The next `n` receipt calls (POST or DELETE) are refused with `message` (HTTP 200
    /// `status: ERROR`), registering nothing.
    pub fn reject_next(&self, n: u32, message: impl Into<String>) {
        *lock(&self.state.rejections) = Rejections {
            left: n,
            message: message.into(),
        };
    }

    /// Documents registered, active or not (a repeated `billIdSuffix` registers none).
    pub fn documents(&self) -> u64 {
        u64::try_from(lock(&self.state.store).documents.len()).unwrap_or(u64::MAX)
    }

    /// The document with ДДТД `id`.
    pub fn document(&self, id: &str) -> Option<EbarimtDocument> {
        let store = lock(&self.state.store);
        store
            .by_id
            .get(id)
            .and_then(|i| store.documents.get(*i))
            .cloned()
    }

    /// Every document, in creation order.
    pub fn all_documents(&self) -> Vec<EbarimtDocument> {
        lock(&self.state.store).documents.clone()
    }

    /// The documents of one terminal (merchant TIN, branch, POS), in creation order.
    pub fn documents_of(
        &self,
        merchant_tin: &str,
        branch_no: &str,
        pos_no: &str,
    ) -> Vec<EbarimtDocument> {
        lock(&self.state.store)
            .documents
            .iter()
            .filter(|d| {
                d.merchant_tin == merchant_tin && d.branch_no == branch_no && d.pos_no == pos_no
            })
            .cloned()
            .collect()
    }

    /// Receipt bodies refused by the OpenAPI schema (relaxed as documented), or not JSON.
    pub fn schema_violations(&self) -> u64 {
        self.state.schema_violations.load(Ordering::SeqCst)
    }

    /// Receipt calls refused for any reason (schema violations included).
    pub fn refusals(&self) -> u64 {
        self.state.refusals.load(Ordering::SeqCst)
    }

    /// Repeats of an identical body under a used `billIdSuffix`, answered with the document
    /// already registered.
    pub fn replays(&self) -> u64 {
        self.state.replays.load(Ordering::SeqCst)
    }

    /// `leftLotteries`: lotteries the installation can still issue.
    pub fn lotteries_left(&self) -> u64 {
        lock(&self.state.store).lotteries_left
    }

    /// Stops the server and waits for answers in flight.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn config_error(detail: String) -> SandboxError {
    SandboxError::Config {
        sandbox: SANDBOX,
        detail,
    }
}
