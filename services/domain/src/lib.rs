//! Fiscal domain logic of fiscus, free of I/O: exact decimals, tax per item, the per-terminal
//! hash chain, receipt signatures and the encryption of signing keys at rest.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod chain;
pub mod decimal;
pub mod keys;
pub mod tax;

pub use decimal::{DecimalError, Money, Quantity, Rate};
