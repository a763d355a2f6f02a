//! HTTP clients for fiscus's upstreams (Keycloak, MIA POS) and their sandboxes: real local servers that keep the upstream contracts.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod error;
mod http;
pub mod keycloak;
pub mod mia;
mod sandbox;

pub use error::{ProviderError, Upstream};
pub use keycloak::{
    Grant, KeycloakAuth, KeycloakClient, KeycloakSandbox, KeycloakSandboxConfig, TokenGrant,
};
pub use mia::{MiaClient, MiaSandbox, MiaSandboxConfig};
pub use sandbox::SandboxError;
