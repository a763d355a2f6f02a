//! Fiscal domain logic of fiscus, free of I/O: exact decimals, tax per item, the typed receipt
//! and its canonical document, refund and cancellation rules, what a receipt adds to its shift, the per-terminal hash chain,
//! receipt signatures, the encryption of signing keys at rest, and the rules of QR payments.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
// Money must never wrap or panic: every operation on a number is checked.
#![deny(clippy::arithmetic_side_effects)]

pub mod cancel;
pub mod chain;
pub mod decimal;
pub mod keys;
pub mod qr;
pub mod receipt;
pub mod refund;
pub mod shift;
pub mod tax;

#[cfg(test)]
mod properties;

pub use decimal::{DecimalError, Money, Overflow, Quantity, Rate};
pub use receipt::{
    BarCodeType, FiscalState, Item, Payment, PaymentMethod, Receipt, ReceiptKind, ReceiptType,
    TaxType, TerminalId, Totals,
};
