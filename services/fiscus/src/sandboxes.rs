//! The upstream sandboxes `fiscus dev` runs in-process, and the dev merchant wired to them.

use anyhow::Context;
use fiscus_providers::ebarimt::{EbarimtMerchant, EbarimtSandbox, EbarimtSandboxConfig};
use fiscus_providers::fiskaltrust::{FiskaltrustSandbox, FiskaltrustSandboxConfig};
use fiscus_providers::keycloak::{SandboxClient, SandboxRealm};
use fiscus_providers::mia::{MiaSeller, MiaTerminal};
use fiscus_providers::{KeycloakSandbox, KeycloakSandboxConfig, MiaSandbox, MiaSandboxConfig};

/// The merchant `fiscus dev` serves out of the box, on the built-in signer.
pub const DEV_MERCHANT: &str = "37900846788";
/// The merchant `fiscus dev` serves on e-barimt, through the POSAPI sandbox.
pub const DEV_EBARIMT_MERCHANT: &str = "61001234567";
/// The merchant `fiscus dev` serves on fiskaltrust (Italy, in euros), through the sandbox's
/// dev cash box: an Italian partita IVA.
pub const DEV_FISKALTRUST_MERCHANT: &str = "12345678903";
const REALM: &str = "ITC";
const CLIENT: &str = "posapi-dev";
pub const MIA_TERMINAL: &str = "T-DEV-1";
pub const MIA_MERCHANT_IDNO: &str = "1003600000000";
pub const MIA_SELLER: (&str, &str) = ("seller", "seller-password");
/// The fiscus terminal the dev MIA terminal is bound to: the merchant's IDNO, branch 001, and
/// MIA's terminal id as the POS number.
pub const MIA_FISCUS_TERMINAL: (&str, &str, &str) = (MIA_MERCHANT_IDNO, "001", MIA_TERMINAL);

/// Running sandboxes; they stop when this is dropped.
pub struct Sandboxes {
    pub keycloak: KeycloakSandbox,
    pub mia: MiaSandbox,
    pub ebarimt: EbarimtSandbox,
    pub fiskaltrust: FiskaltrustSandbox,
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
    let ebarimt = EbarimtSandbox::start(EbarimtSandboxConfig::default().with_merchant(
        EbarimtMerchant::new(DEV_EBARIMT_MERCHANT, "Э-Баримт Дэлгүүр ХХК").city_payer(true),
    ))
    .await
    .context("starting the POSAPI (e-barimt) sandbox")?;
    let fiskaltrust_config = FiskaltrustSandboxConfig::default();
    let cash_box = fiskaltrust_config.cash_boxes[0].clone();
    let fiskaltrust = FiskaltrustSandbox::start(fiskaltrust_config)
        .await
        .context("starting the fiskaltrust sandbox")?;
    let defaults = format!(
        r#"
[[receipts.merchants]]
tin = "{DEV_MERCHANT}"
name = "Дээж Дэлгүүр ХХК"
city_tax_payer = true

[[receipts.merchants]]
tin = "{DEV_EBARIMT_MERCHANT}"
name = "Э-Баримт Дэлгүүр ХХК"
city_tax_payer = true
provider = "ebarimt"
[receipts.merchants.ebarimt]
posapi_url = "{posapi_url}"
api_url = "{posapi_url}"
district_code = "2501"
credential = "default"

[[receipts.merchants]]
tin = "{DEV_FISKALTRUST_MERCHANT}"
name = "Negozio Fiscus Srl"
currency = "EUR"
provider = "fiskaltrust"
[receipts.merchants.fiskaltrust]
url = "{fiskaltrust_url}"
market = "IT"

[[tokens.fiskaltrust]]
merchant_tin = "{DEV_FISKALTRUST_MERCHANT}"
cashbox_id = "{cashbox_id}"
access_token = "{access_token}"

[tokens]
mia_url = "{mia_url}"

[payments]
mia_url = "{mia_url}"

[[tokens.ebarimt]]
merchant_tin = "{DEV_MERCHANT}"
authUrl = "{auth_url}"
authRealm = "{REALM}"
authClientId = "{CLIENT}"
authClientSecret = "{client_secret}"

[[tokens.ebarimt]]
merchant_tin = "{DEV_EBARIMT_MERCHANT}"
authUrl = "{auth_url}"
authRealm = "{REALM}"
authClientId = "{CLIENT}"
authClientSecret = "{client_secret}"
"#,
        mia_url = mia.base_url(),
        auth_url = keycloak.base_url(),
        posapi_url = ebarimt.base_url(),
        fiskaltrust_url = fiskaltrust.base_url(),
        cashbox_id = cash_box.cashbox_id,
        access_token = cash_box.access_token,
    );

    Ok((
        Sandboxes {
            keycloak,
            mia,
            ebarimt,
            fiskaltrust,
        },
        defaults,
    ))
}

/// Activates the dev MIA terminal on the fiscus terminal [`MIA_FISCUS_TERMINAL`] and logs the dev
/// seller in, through this very process's TokenService at `addr` (with `token` when
/// authentication is on); answers the seller session id for PaymentService calls.
pub async fn dev_seller_session(
    addr: std::net::SocketAddr,
    token: Option<String>,
    mia: &MiaSandbox,
) -> anyhow::Result<String> {
    use fiscus_proto::v1 as pb;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .context("connecting to this process")?;
    let mut client = pb::token_service_client::TokenServiceClient::new(channel);
    fn with_token<T>(token: &Option<String>, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
        }
        Ok(request)
    }
    let operation = || uuid::Uuid::new_v4().to_string();
    let (merchant_tin, branch_no, pos_no) = MIA_FISCUS_TERMINAL;
    let started = client
        .init_activation(with_token(
            &token,
            pb::InitActivationRequest {
                operation_id: operation(),
                terminal: Some(pb::Terminal {
                    merchant_tin: merchant_tin.to_owned(),
                    branch_no: branch_no.to_owned(),
                    pos_no: pos_no.to_owned(),
                }),
                terminal_id: MIA_TERMINAL.to_owned(),
                merchant_idno: MIA_MERCHANT_IDNO.to_owned(),
                device: Some(pb::DeviceInfo {
                    device: "fiscus dev".to_owned(),
                    platform_type: pb::PlatformType::ExternalSystem.into(),
                    installation_id: uuid::Uuid::new_v4().to_string(),
                    pos_app_version: 1,
                    ..Default::default()
                }),
            },
        )?)
        .await
        .context("starting the dev MIA terminal's activation")?
        .into_inner();
    let activation: uuid::Uuid = started.activation_id.parse()?;
    let otp = mia
        .last_otp(activation)
        .context("the MIA sandbox sent no OTP")?;
    client
        .confirm_activation(with_token(
            &token,
            pb::ConfirmActivationRequest {
                operation_id: operation(),
                activation_id: started.activation_id.clone(),
                otp_code: otp,
            },
        )?)
        .await
        .context("confirming the dev MIA terminal's activation")?;
    let login = client
        .seller_login(with_token(
            &token,
            pb::SellerLoginRequest {
                operation_id: operation(),
                activation_id: started.activation_id,
                username: MIA_SELLER.0.to_owned(),
                password: MIA_SELLER.1.to_owned(),
            },
        )?)
        .await
        .context("logging the dev seller in")?
        .into_inner();
    Ok(login.session_id)
}
