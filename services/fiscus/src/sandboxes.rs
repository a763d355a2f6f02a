//! The upstream sandboxes `fiscus dev` runs in-process, and the dev merchant wired to them.

use anyhow::Context;
use fiscus_kit::config::{Config, EbarimtCredential, MerchantConfig};
use fiscus_providers::keycloak::{SandboxClient, SandboxRealm};
use fiscus_providers::mia::{MiaSeller, MiaTerminal};
use fiscus_providers::{KeycloakSandbox, KeycloakSandboxConfig, MiaSandbox, MiaSandboxConfig};
use secrecy::SecretString;

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

/// Starts the sandboxes and points every upstream setting the configuration leaves empty at them.
pub async fn start(config: &mut Config, client_secret: &str) -> anyhow::Result<Sandboxes> {
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

    if config.receipts.merchants.is_empty() {
        config.receipts.merchants.push(MerchantConfig {
            tin: DEV_MERCHANT.to_owned(),
            name: "Дээж Дэлгүүр ХХК".to_owned(),
            city_tax_payer: true,
            currency: None,
        });
    }
    if config.tokens.ebarimt.is_empty() {
        config.tokens.ebarimt.push(EbarimtCredential {
            merchant_tin: DEV_MERCHANT.to_owned(),
            credential: "default".to_owned(),
            auth_url: keycloak.base_url().to_owned(),
            auth_realm: REALM.to_owned(),
            auth_client_id: CLIENT.to_owned(),
            auth_client_secret: SecretString::from(client_secret.to_owned()),
            username: None,
            password: None,
        });
    }
    if config.tokens.mia_url.is_empty() {
        config.tokens.mia_url = mia.base_url().to_owned();
    }
    Ok(Sandboxes { keycloak, mia })
}
