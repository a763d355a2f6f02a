//! e-barimt (Mongolia), POSAPI 3.0: the request fiscus sends for a receipt ([`receipt_request`]),
//! the client of the POSAPI daemon and the central lookups ([`EbarimtClient`]), and a sandbox
//! that plays both, validating every body against the official OpenAPI document itself.
//!
//! # The endpoints
//!
//! The POSAPI daemon, installed beside the merchant's systems (`posapi_url`): `POST` and `DELETE
//! /rest/receipt`, `GET /rest/info`, `GET /rest/bankAccounts?tin=`. The central API (`api_url`,
//! calls carrying `Authorization: Bearer <token>` from e-barimt's auth server): `GET
//! /api/info/check/getInfo?tin=`, `getTinInfo?regNo=`, `getBranchInfo`, and `GET
//! /api/receipt/receipt/getProductTaxCode`. See [`paths`].
//!
//! # A lost answer, and `billIdSuffix`
//!
//! `POST /rest/receipt` is not idempotent: resending a receipt whose answer was lost may register
//! it twice. What makes it safe to send again is `billIdSuffix`, the request's own numbering,
//! unique per POS and day, from which the ДДТД is made unique. The sandbox models it thus (the
//! document says the suffix must not repeat within a day; what a repeat answers is this crate's
//! reading of it, the one that lets a caller recover):
//!
//! - the same merchant TIN, branch, POS, Ulaanbaatar day and `billIdSuffix` with the identical
//!   body answers the document already registered (same ДДТД, lottery, QR data, date) and
//!   registers nothing;
//! - with a different body it is refused (`status: ERROR`, the message naming `billIdSuffix`).
//!
//! So a caller told [`Undelivered`]`{maybe_created: true}` reconciles by posting the identical
//! request again, the same day; [`receipt_request`] maps one receipt to the same bytes every time.
//!
//! # Answers
//!
//! Refusals are HTTP 200 `{"status":"ERROR","message":"…"}` (an HTTP 400 is read the same way).
//! The lottery number and QR data are for the printed receipt only: the document forbids
//! keeping them otherwise; keep the ДДТД. Central lookups answer `{"msg","status","data"}`; not
//! found is HTTP 200 with `{"status": 500, "data": null}`.

mod client;
mod mapping;
#[cfg(feature = "sandbox")]
mod sandbox;
#[cfg(feature = "sandbox")]
pub mod spec;
mod types;

pub use crate::error::Undelivered;
pub use client::{Deleted, Document, EbarimtClient, Posted, SubDocument};
pub use mapping::{MappingError, receipt_request};
#[cfg(feature = "sandbox")]
pub use sandbox::{
    DocumentState, EbarimtDocument, EbarimtMerchant, EbarimtSandbox, EbarimtSandboxConfig,
    EbarimtTaxpayer,
};
pub use types::{
    AppInfo, BankAccount, Branch, CardData, DeleteRequest, InfoCustomer, InfoMerchant, ItemData,
    Payment, PaymentCode, PaymentStatus, PosInfo, ProductTaxCode, ReceiptAnswer, ReceiptItem,
    ReceiptRequest, ReceiptStatus, SubReceipt, SubReceiptAnswer, TaxType, TaxpayerInfo, WireMoney,
    WireQuantity,
};

/// Paths: `/rest/*` relative to the POSAPI daemon's base URL, `/api/*` to the central API's.
pub mod paths {
    /// `POST` registers a receipt; `DELETE` makes one inactive.
    pub const RECEIPT: &str = "/rest/receipt";
    pub const INFO: &str = "/rest/info";
    /// Sends what the daemon holds to the central system now (it does so by itself, too).
    pub const SEND_DATA: &str = "/rest/sendData";
    /// `?tin=`.
    pub const BANK_ACCOUNTS: &str = "/rest/bankAccounts";
    /// `?tin=`.
    pub const TAXPAYER_INFO: &str = "/api/info/check/getInfo";
    /// `?regNo=`.
    pub const TIN_INFO: &str = "/api/info/check/getTinInfo";
    pub const BRANCH_INFO: &str = "/api/info/check/getBranchInfo";
    pub const PRODUCT_TAX_CODES: &str = "/api/receipt/receipt/getProductTaxCode";
}
