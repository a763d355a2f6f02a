//! fiskaltrust.Middleware, POS System API v2: the case values a request is made of and the
//! state an answer carries ([`cases`]). The connector and its sandbox build on these.

pub mod cases;

pub use cases::{
    ChargeItemFlags, Decoded, Market, MarketError, PayItemCase, PayItemFlags, ReceiptCase,
    ReceiptFlags, Service, State, StateFlags, StateOutcome, VatRate,
};
