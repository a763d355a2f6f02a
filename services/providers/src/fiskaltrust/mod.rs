//! fiskaltrust.Middleware, POS System API v2: the case values a request is made of and the
//! state an answer carries ([`cases`]), and the bodies of `POST /v2/sign` ([`wire`]). The
//! connector and its sandbox build on these.

pub mod cases;
pub mod wire;

pub use cases::{
    ChargeItemFlags, Decoded, Market, MarketError, PayItemCase, PayItemFlags, ReceiptCase,
    ReceiptFlags, Service, State, StateFlags, StateOutcome, VatRate,
};
