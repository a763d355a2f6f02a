//! Keycloak, e-barimt's OAuth2 server: the token client fiscus uses and a sandbox that plays Keycloak.

mod client;
#[cfg(feature = "sandbox")]
mod sandbox;

pub use client::{Grant, KeycloakAuth, KeycloakClient, TokenGrant};
#[cfg(feature = "sandbox")]
pub use sandbox::{
    KeycloakSandbox, KeycloakSandboxConfig, SandboxClient, SandboxRealm, SandboxUser,
};

/// The token endpoint below `authUrl`, as Keycloak (17+, without the legacy `/auth` prefix) serves it.
pub const TOKEN_PATH_TEMPLATE: &str = "/realms/{realm}/protocol/openid-connect/token";
