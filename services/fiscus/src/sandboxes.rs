//! The upstream sandboxes `fiscus dev` runs in-process, and the dev merchant wired to them.

use anyhow::Context;
use fiscus_providers::keycloak::{SandboxClient, SandboxRealm};
use fiscus_providers::mia::{MiaSeller, MiaTerminal};
use fiscus_providers::{KeycloakSandbox, KeycloakSandboxConfig, MiaSandbox, MiaSandboxConfig};

/// The merchant `fiscus dev` serves out of the box.
pub const DEV_MERCHANT: &str = "37900846788";
const REALM: &str = "ITC";
const CLIENT: &str = "posapi-dev";
pub const MIA_TERMINAL: &str = "T-DEV-1";
pub const MIA_MERCHANT_IDNO: &str = "1003600000000";
pub const MIA_SELLER: (&str, &str) = ("seller", "seller-password");

/// Running sandboxes; they stop when this is dropped.
pub struct Sandboxes {
    pub keycloak: KeycloakSandbox,
    pub mia: MiaSandbox,
}

/// Starts the sandboxes; answers them and the service settings (TOML) that point the dev
/// merchant and the dev MIA terminal at them, for whatever the configuration leaves unset.
pub async fn start(client_secret: &str) -> anyhow::Result<(Sandboxes, String)> {
    let keycloak = KeycloakSandbox::start(KeycloakSandboxConfig::default().with_realm(
        SandboxRealm::new(REALM).with_client(SandboxClient::new(CLIENT, client_secret)),
    ))
    .await
    .context("starting the e-barimt (Keycloak) sandbox")?;
    let mia = MiaSandbox::start(
        MiaSandboxConfig::default()
            .with_terminal(MiaTerminal::new(MIA_TERMINAL, MIA_MERCHANT_IDNO))
            .with_seller(MiaSeller::new(MIA_SELLER.0, MIA_SELLER.1, 1, "Ion Popescu")),
    )
    .await
    .context("starting the MIA POS sandbox")?;
    let defaults = format!(
        r#"
[[receipts.merchants]]
tin = "{DEV_MERCHANT}"
name = "Дээж Дэлгүүр ХХК"
city_tax_payer = true

[tokens]
mia_url = "{mia_url}"

[[tokens.ebarimt]]
merchant_tin = "{DEV_MERCHANT}"
authUrl = "{auth_url}"
authRealm = "{REALM}"
authClientId = "{CLIENT}"
authClientSecret = "{client_secret}"
"#,
        mia_url = mia.base_url(),
        auth_url = keycloak.base_url(),
    );
    Ok((Sandboxes { keycloak, mia }, defaults))
}
