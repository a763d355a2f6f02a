//! fiskaltrust.Middleware, POS System API v2: the case values a request is made of and the
//! state an answer carries ([`cases`]), the bodies of `POST /v2/sign` ([`wire`]), a journaled
//! receipt written as one ([`mapping`]), and the HTTP client ([`client`]).

pub mod cases;
mod client;
pub mod mapping;
#[cfg(feature = "sandbox")]
mod sandbox;
pub mod wire;

pub use client::{Credentials, FiskaltrustClient, Journal, Operation, Signed};
pub use mapping::{CashBox, Context, MappingError as FiskaltrustMappingError};
#[cfg(feature = "sandbox")]
pub use sandbox::{
    DEV_ACCESS_TOKEN, DEV_CASHBOX_ID, DEV_QUEUE_ID, FiskaltrustCashBox, FiskaltrustSandbox,
    FiskaltrustSandboxConfig, SignedReceipt,
};

pub use cases::{
    ChargeItemFlags, Decoded, Market, MarketError, PayItemCase, PayItemFlags, ReceiptCase,
    ReceiptFlags, Service, State, StateFlags, StateOutcome, VatRate,
};

/// The POS System API's paths, below the middleware's base URL (which ends in `/v2`'s parent).
pub mod paths {
    /// `POST`: sign (fiscalize) a receipt.
    pub const SIGN: &str = "/v2/sign";
    /// `GET /v2/journal/{queueId}/{type}`: a queue's journal, streamed.
    pub const JOURNAL: &str = "/v2/journal/{queue_id}/{journal_type}";

    /// The journal path of a queue and type.
    pub fn journal(queue_id: &str, journal_type: &str) -> String {
        format!("/v2/journal/{queue_id}/{journal_type}")
    }
}

/// The request headers of the POS System API.
pub mod headers {
    /// The idempotency key: a UUID; the same id replays the first answer.
    pub const OPERATION_ID: &str = "x-operation-id";
    /// How long the middleware may work on the operation, in milliseconds (default 15000).
    pub const OPERATION_LIFETIME: &str = "x-operation-lifetime";
    pub const TERMINAL_ID: &str = "x-terminal-id";
    pub const POS_SYSTEM_ID: &str = "x-possystem-id";
    pub const CASHBOX_ID: &str = "x-cashbox-id";
    pub const CASHBOX_ACCESS_TOKEN: &str = "x-cashbox-accesstoken";
}

/// The journals `GET /v2/journal/{queueId}/{type}` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JournalType {
    /// Every request and its response, hashed and chained.
    ReceiptJournal,
    /// Operational incidents: failures, mode changes.
    ActionJournal,
    /// Every queue item: request, response, moments.
    QueueItem,
}

impl JournalType {
    pub const ALL: [Self; 3] = [Self::ReceiptJournal, Self::ActionJournal, Self::QueueItem];

    /// The name in the path.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReceiptJournal => "ReceiptJournal",
            Self::ActionJournal => "ActionJournal",
            Self::QueueItem => "QueueItem",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// A problem answer of the API (`{title, status, detail}`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: String,
}
