//! HTTP clients for fiscus's upstreams (Keycloak, MIA POS, e-barimt POSAPI 3.0, fiskaltrust.Middleware's POS System API v2) and their sandboxes: real local servers that keep the upstream contracts.
//!
//! The sandboxes are behind the `sandbox` feature: `fiscus dev` and the tests turn it on; the
//! production service binaries are built without it.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod ebarimt;
pub mod error;
pub mod fiskaltrust;
mod http;
pub mod keycloak;
pub mod metrics;
pub mod mia;
#[cfg(feature = "sandbox")]
mod sandbox;
pub mod wire;

pub use ebarimt::{EbarimtClient, MappingError, Posted};
#[cfg(feature = "sandbox")]
pub use ebarimt::{EbarimtSandbox, EbarimtSandboxConfig};
pub use error::{ProviderError, Undelivered, Upstream};
#[cfg(feature = "sandbox")]
pub use fiskaltrust::{FiskaltrustCashBox, FiskaltrustSandbox, FiskaltrustSandboxConfig};
pub use keycloak::{Grant, KeycloakAuth, KeycloakClient, TokenGrant};
#[cfg(feature = "sandbox")]
pub use keycloak::{KeycloakSandbox, KeycloakSandboxConfig};
pub use mia::MiaClient;
#[cfg(feature = "sandbox")]
pub use mia::{MiaSandbox, MiaSandboxConfig};
#[cfg(feature = "sandbox")]
pub use sandbox::SandboxError;
