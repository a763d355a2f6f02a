//! The clients against their sandboxes, over real HTTP on loopback.

use std::time::Duration;

use fiscus_providers::keycloak::{SandboxClient, SandboxRealm};
use fiscus_providers::mia::{
    ConfirmActivationRequest, DeviceInfo, InitActivation, InitActivationRequest, MiaSeller,
    MiaTerminal, PlatformType, ResendOtpRequest, SellerLoginRequest, SellerLogoutRequest,
    SellerRefreshRequest, SellerTokens,
};
use fiscus_providers::{
    Grant, KeycloakAuth, KeycloakClient, KeycloakSandbox, KeycloakSandboxConfig, MiaClient,
    MiaSandbox, MiaSandboxConfig, ProviderError,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Generous: only the tests about time-outs use a short one.
const TIMEOUT: Duration = Duration::from_secs(10);

const REALM: &str = "vatps";
const CLIENT_ID: &str = "posapi-erp";
const CLIENT_SECRET: &str = "s3cret-client";
const USERNAME: &str = "integrator";
const PASSWORD: &str = "s3cret-user";

async fn keycloak() -> KeycloakSandbox {
    let config = KeycloakSandboxConfig::default().with_realm(
        SandboxRealm::new(REALM)
            .with_client(SandboxClient::new(CLIENT_ID, CLIENT_SECRET))
            .with_user(USERNAME, PASSWORD),
    );
    KeycloakSandbox::start(config)
        .await
        .expect("keycloak sandbox starts")
}

fn auth(sandbox: &KeycloakSandbox, grant: Grant) -> KeycloakAuth {
    KeycloakAuth {
        auth_url: sandbox.base_url().to_owned(),
        realm: REALM.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: SecretString::from(CLIENT_SECRET),
        grant,
    }
}

fn password_grant(password: &str) -> Grant {
    Grant::Password {
        username: USERNAME.to_owned(),
        password: SecretString::from(password),
    }
}

/// A plain HTTP client for requests the typed clients would never send.
fn raw_http() -> reqwest::Client {
    // The workspace's reqwest has no built-in crypto provider: pick one for this process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("plain HTTP client")
}

async fn probe_status(sandbox: &KeycloakSandbox, token: &SecretString) -> u16 {
    raw_http()
        .get(sandbox.protected_url())
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .expect("probe answers")
        .status()
        .as_u16()
}

fn assert_refused(error: &ProviderError, want_status: u16, want_code: &str) {
    match error {
        ProviderError::Refused {
            status,
            error: code,
            ..
        } => {
            assert_eq!(
                (*status, code.as_str()),
                (want_status, want_code),
                "{error}"
            );
        }
        other => panic!("expected a refusal {want_status} {want_code}, got {other}"),
    }
    assert!(!error.is_retriable(), "a refusal is not retriable: {error}");
}

#[test]
fn sandbox_handles_and_clients_can_be_shared_across_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<KeycloakSandbox>();
    shareable::<MiaSandbox>();
    shareable::<KeycloakClient>();
    shareable::<MiaClient>();
    shareable::<ProviderError>();
}

#[test]
fn token_url_keeps_the_auth_url_prefix_and_encodes_the_realm() {
    let auth = KeycloakAuth {
        auth_url: "https://auth.example/auth/".to_owned(),
        realm: "my realm".to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: SecretString::from(CLIENT_SECRET),
        grant: Grant::ClientCredentials,
    };

    let url = KeycloakClient::token_url(&auth).unwrap();

    assert_eq!(
        url.as_str(),
        "https://auth.example/auth/realms/my%20realm/protocol/openid-connect/token"
    );
}

#[tokio::test]
async fn client_credentials_grant_issues_a_live_token_with_expires_in() {
    let sandbox = keycloak().await;
    let client = KeycloakClient::new(TIMEOUT).unwrap();

    let grant = client
        .fetch_token(&auth(&sandbox, Grant::ClientCredentials))
        .await
        .unwrap();

    assert_eq!(grant.expires_in, Duration::from_secs(300));
    assert_eq!(grant.token_type, "Bearer");
    assert!(sandbox.is_token_live(grant.access_token.expose_secret()));
    assert_eq!(probe_status(&sandbox, &grant.access_token).await, 200);
    assert_eq!(sandbox.token_requests(), 1);
}

#[tokio::test]
async fn password_grant_issues_a_token_with_the_configured_lifetime() {
    let sandbox = keycloak().await;
    sandbox.set_token_lifetime(Duration::from_secs(120));
    let client = KeycloakClient::new(TIMEOUT).unwrap();

    let grant = client
        .fetch_token(&auth(&sandbox, password_grant(PASSWORD)))
        .await
        .unwrap();

    assert_eq!(grant.expires_in, Duration::from_secs(120));
    assert!(sandbox.is_token_live(grant.access_token.expose_secret()));
}

#[tokio::test]
async fn wrong_client_secret_is_refused_as_invalid_client_and_counted() {
    let sandbox = keycloak().await;
    let client = KeycloakClient::new(TIMEOUT).unwrap();
    let mut wrong = auth(&sandbox, Grant::ClientCredentials);
    wrong.client_secret = SecretString::from("not-the-secret");

    let error = client.fetch_token(&wrong).await.unwrap_err();

    assert_refused(&error, 401, "invalid_client");
    assert!(!error.to_string().contains("not-the-secret"));
    assert!(!format!("{wrong:?}").contains("not-the-secret"));
    assert_eq!(sandbox.token_requests(), 1);
}

#[tokio::test]
async fn wrong_user_password_is_refused_as_invalid_grant() {
    let sandbox = keycloak().await;
    let client = KeycloakClient::new(TIMEOUT).unwrap();

    let error = client
        .fetch_token(&auth(&sandbox, password_grant("wrong")))
        .await
        .unwrap_err();

    assert_refused(&error, 401, "invalid_grant");
}

#[tokio::test]
async fn unknown_realm_is_refused_with_404() {
    let sandbox = keycloak().await;
    let client = KeycloakClient::new(TIMEOUT).unwrap();
    let mut other = auth(&sandbox, Grant::ClientCredentials);
    other.realm = "nope".to_owned();

    let error = client.fetch_token(&other).await.unwrap_err();

    assert_refused(&error, 404, "Realm does not exist");
}

#[tokio::test]
async fn token_endpoint_validates_method_content_type_and_grant_type() {
    let sandbox = keycloak().await;
    let http = raw_http();
    let url = sandbox.token_url(REALM);

    let get = http.get(&url).send().await.unwrap();
    assert_eq!(get.status(), 405);

    let json = http
        .post(&url)
        .json(&serde_json::json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);

    let refresh = http
        .post(&url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 400);
    let body: serde_json::Value = refresh.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");

    let basic = http
        .post(&url)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200, "HTTP Basic client authentication");
    let body: serde_json::Value = basic.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");

    assert_eq!(sandbox.token_requests(), 4);
}

#[tokio::test]
async fn a_failed_token_request_is_unavailable_and_the_next_succeeds() {
    let sandbox = keycloak().await;
    let client = KeycloakClient::new(TIMEOUT).unwrap();
    let auth = auth(&sandbox, Grant::ClientCredentials);
    sandbox.fail_next(1);

    let error = client.fetch_token(&auth).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error}"
    );
    assert!(error.is_retriable());

    client.fetch_token(&auth).await.unwrap();
    assert_eq!(sandbox.token_requests(), 2);
}

#[tokio::test]
async fn latency_beyond_the_client_timeout_is_unavailable() {
    let sandbox = keycloak().await;
    sandbox.set_latency(Duration::from_secs(30));
    let impatient = KeycloakClient::new(Duration::from_millis(200)).unwrap();

    let error = impatient
        .fetch_token(&auth(&sandbox, Grant::ClientCredentials))
        .await
        .unwrap_err();

    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error}"
    );
    assert!(error.is_retriable());
}

#[tokio::test]
async fn a_lost_answer_is_unavailable_although_the_request_was_served() {
    let sandbox = keycloak().await;
    sandbox.drop_next(1);
    let impatient = KeycloakClient::new(Duration::from_millis(300)).unwrap();

    let error = impatient
        .fetch_token(&auth(&sandbox, Grant::ClientCredentials))
        .await
        .unwrap_err();

    assert!(error.is_retriable(), "{error}");
    assert_eq!(sandbox.token_requests(), 1);
}

#[tokio::test]
async fn a_stopped_keycloak_is_unavailable() {
    let sandbox = keycloak().await;
    let auth = auth(&sandbox, Grant::ClientCredentials);
    sandbox.shutdown().await;

    let error = KeycloakClient::new(TIMEOUT)
        .unwrap()
        .fetch_token(&auth)
        .await
        .unwrap_err();

    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn expired_tokens_are_refused_by_the_protected_probe() {
    let sandbox = keycloak().await;
    let client = KeycloakClient::new(TIMEOUT).unwrap();
    let grant = client
        .fetch_token(&auth(&sandbox, Grant::ClientCredentials))
        .await
        .unwrap();
    assert_eq!(probe_status(&sandbox, &grant.access_token).await, 200);

    sandbox.expire_all_tokens();

    assert_eq!(probe_status(&sandbox, &grant.access_token).await, 401);
    assert!(!sandbox.is_token_live(grant.access_token.expose_secret()));
    let unknown = SecretString::from("never-issued");
    assert_eq!(probe_status(&sandbox, &unknown).await, 401);
}

// ---- MIA POS ----

const TERMINAL: &str = "T123";
const MERCHANT: &str = "1003600012345";
const SELLER: &str = "cashier1";
const SELLER_PASSWORD: &str = "s3cret-seller";

async fn mia() -> MiaSandbox {
    let config = MiaSandboxConfig::default()
        .with_terminal(MiaTerminal {
            merchant_name: "Test Merchant SRL".to_owned(),
            store_name: "Test Store".to_owned(),
            pos_id: 42,
            ..MiaTerminal::new(TERMINAL, MERCHANT)
        })
        .with_seller(MiaSeller::new(SELLER, SELLER_PASSWORD, 7, "Ion Popescu"));
    MiaSandbox::start(config).await.expect("mia sandbox starts")
}

fn device() -> DeviceInfo {
    DeviceInfo {
        device: "fiscus".to_owned(),
        platform_type: PlatformType::ExternalSystem,
        platform_version: Some("1.0".to_owned()),
        installation_id: Uuid::new_v4(),
        native_app_version: None,
        pos_app_version: 1,
    }
}

fn our_terminal() -> InitActivationRequest {
    InitActivationRequest {
        terminal_id: TERMINAL.to_owned(),
        merchant_idno: MERCHANT.to_owned(),
    }
}

async fn init(client: &MiaClient) -> InitActivation {
    client
        .init_activation(&device(), &our_terminal())
        .await
        .expect("activation starts")
}

async fn confirm(client: &MiaClient, activation: Uuid, otp: &str) -> Result<u32, ProviderError> {
    client
        .confirm_activation(&ConfirmActivationRequest {
            terminal_activation_id: activation,
            otp_code: SecretString::from(otp),
        })
        .await
        .map(|c| c.left_attempts)
}

async fn login(
    client: &MiaClient,
    activation: Uuid,
    password: &str,
) -> Result<SellerTokens, ProviderError> {
    client
        .seller_login(&SellerLoginRequest {
            terminal_activation_id: activation,
            username: SELLER.to_owned(),
            password: SecretString::from(password),
        })
        .await
}

async fn refresh(
    client: &MiaClient,
    activation: Uuid,
    refresh_token: &SecretString,
) -> Result<SellerTokens, ProviderError> {
    client
        .seller_refresh(&SellerRefreshRequest {
            refresh_token: refresh_token.clone(),
            terminal_activation_id: activation,
        })
        .await
}

fn left_attempts(error: &ProviderError) -> Option<u32> {
    match error {
        ProviderError::Refused { left_attempts, .. } => *left_attempts,
        _ => None,
    }
}

/// A six-digit code that is not `otp`.
fn wrong_otp(otp: &str) -> String {
    if otp == "000000" { "111111" } else { "000000" }.to_owned()
}

#[tokio::test]
async fn wrong_otps_use_up_the_attempts_and_then_even_the_right_code_is_refused() {
    let sandbox = mia().await;
    let client = MiaClient::new(sandbox.base_url(), TIMEOUT).unwrap();
    let started = init(&client).await;
    assert_eq!(started.wait_time_to_resend, Duration::from_secs(60));
    assert!(!started.masked_phone_number.is_empty());

    let too_early = client
        .resend_otp(&ResendOtpRequest {
            terminal_activation_id: started.terminal_activation_id,
        })
        .await
        .unwrap_err();
    assert_refused(&too_early, 400, "OTP_RESEND_TOO_EARLY");
    let ProviderError::Refused { retry_after, .. } = &too_early else {
        panic!("{too_early}");
    };
    assert!(retry_after.is_some_and(|r| r > Duration::ZERO && r <= Duration::from_secs(60)));

    let otp = sandbox.last_otp(started.terminal_activation_id).unwrap();
    assert_eq!(otp.len(), 6);
    assert!(otp.bytes().all(|b| b.is_ascii_digit()));
    let wrong = wrong_otp(&otp);
    for left in [2, 1, 0] {
        let error = confirm(&client, started.terminal_activation_id, &wrong)
            .await
            .unwrap_err();
        assert_refused(&error, 400, "INVALID_OTP");
        assert_eq!(left_attempts(&error), Some(left), "{error}");
    }

    let blocked = confirm(&client, started.terminal_activation_id, &otp)
        .await
        .unwrap_err();
    assert_refused(&blocked, 409, "ACTIVATION_BLOCKED");
    assert_eq!(left_attempts(&blocked), Some(0));
}

#[tokio::test]
async fn a_confirmed_activation_carries_a_seller_session_from_login_to_logout() {
    let sandbox = mia().await;
    let client = MiaClient::new(sandbox.base_url(), TIMEOUT).unwrap();
    let activation = init(&client).await.terminal_activation_id;

    let not_yet = login(&client, activation, SELLER_PASSWORD)
        .await
        .unwrap_err();
    assert_refused(&not_yet, 409, "ACTIVATION_NOT_CONFIRMED");

    let otp = sandbox.last_otp(activation).unwrap();
    assert_eq!(confirm(&client, activation, &otp).await.unwrap(), 3);

    let info = client.activation_info(activation).await.unwrap();
    assert_eq!(info.terminal_id, TERMINAL);
    assert_eq!(info.merchant_idno, MERCHANT);
    assert_eq!(info.merchant_name, "Test Merchant SRL");
    assert!(!info.store_address.is_empty());

    let bad_password = login(&client, activation, "wrong").await.unwrap_err();
    assert_refused(&bad_password, 401, "INVALID_CREDENTIALS");

    let first = login(&client, activation, SELLER_PASSWORD).await.unwrap();
    assert_eq!(first.access_token_expires_in, Duration::from_secs(300));

    let second = refresh(&client, activation, &first.refresh_token)
        .await
        .unwrap();
    assert_ne!(
        second.refresh_token.expose_secret(),
        first.refresh_token.expose_secret()
    );
    let reused = refresh(&client, activation, &first.refresh_token)
        .await
        .unwrap_err();
    assert_refused(&reused, 401, "INVALID_REFRESH_TOKEN");

    let session = client.seller_info(&second.access_token).await.unwrap();
    assert_eq!(session.seller_info.id, 7);
    assert_eq!(session.seller_info.full_name, "Ion Popescu");
    assert_eq!(session.terminal_info.terminal_id, TERMINAL);
    assert_eq!(session.terminal_info.pos_id, 42);
    assert_eq!(session.merchant_info.merchant_idno, MERCHANT);
    assert_eq!(session.place_info.name, "Test Store");
    assert!(!session.bank_info.bank_name.is_empty());

    client
        .seller_logout(&SellerLogoutRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await
        .unwrap();
    let after_logout = refresh(&client, activation, &second.refresh_token)
        .await
        .unwrap_err();
    assert_refused(&after_logout, 401, "INVALID_REFRESH_TOKEN");
    let revoked = client.seller_info(&second.access_token).await.unwrap_err();
    assert_refused(&revoked, 401, "INVALID_TOKEN");
    assert!(!sandbox.is_access_token_live(second.access_token.expose_secret()));
}

#[tokio::test]
async fn expired_access_tokens_are_refused_until_refreshed() {
    let sandbox = mia().await;
    let client = MiaClient::new(sandbox.base_url(), TIMEOUT).unwrap();
    let activation = init(&client).await.terminal_activation_id;
    let otp = sandbox.last_otp(activation).unwrap();
    confirm(&client, activation, &otp).await.unwrap();
    let tokens = login(&client, activation, SELLER_PASSWORD).await.unwrap();

    sandbox.expire_access_tokens();

    let expired = client.seller_info(&tokens.access_token).await.unwrap_err();
    assert_refused(&expired, 401, "TOKEN_EXPIRED");
    let fresh = refresh(&client, activation, &tokens.refresh_token)
        .await
        .unwrap();
    client.seller_info(&fresh.access_token).await.unwrap();
}

#[tokio::test]
async fn activation_of_an_unknown_terminal_is_refused() {
    let sandbox = mia().await;
    let client = MiaClient::new(sandbox.base_url(), TIMEOUT).unwrap();

    let error = client
        .init_activation(
            &device(),
            &InitActivationRequest {
                terminal_id: TERMINAL.to_owned(),
                merchant_idno: "another-merchant".to_owned(),
            },
        )
        .await
        .unwrap_err();

    assert_refused(&error, 404, "TERMINAL_NOT_FOUND");
}

#[tokio::test]
async fn init_without_x_device_is_refused_with_a_400_naming_the_header() {
    let sandbox = mia().await;
    let response = raw_http()
        .post(format!(
            "{}/pos/api/v1/terminal-activation/init",
            sandbox.base_url()
        ))
        .header("X-PLATFORM-TYPE", "web")
        .header("X-INSTALLATION-ID", Uuid::new_v4().to_string())
        .header("X-POS-APP-VERSION", "1")
        .json(&serde_json::json!({ "terminalId": TERMINAL, "merchantIdno": MERCHANT }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["result"], "error");
    assert_eq!(body["errorCode"], "VALIDATION_ERROR");
    let message = body["errorMessage"].as_str().unwrap();
    assert!(message.contains("X-DEVICE"), "{message}");
}

#[tokio::test]
async fn correlation_id_is_echoed_and_a_malformed_one_is_refused() {
    let sandbox = mia().await;
    let http = raw_http();
    let url = format!(
        "{}/pos/api/v1/terminal-activation/{}",
        sandbox.base_url(),
        Uuid::new_v4()
    );
    let id = Uuid::new_v4().to_string();

    let unknown = http
        .get(&url)
        .header("X-CORRELATION-ID", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["x-correlation-id"], id.as_str());

    let malformed = http
        .get(&url)
        .header("X-CORRELATION-ID", "not-a-uuid")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: serde_json::Value = malformed.json().await.unwrap();
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("X-CORRELATION-ID")
    );
}

#[tokio::test]
async fn a_failing_mia_is_unavailable_and_counted() {
    let sandbox = mia().await;
    let client = MiaClient::new(sandbox.base_url(), TIMEOUT).unwrap();
    sandbox.fail_next(1);

    let error = client
        .init_activation(&device(), &our_terminal())
        .await
        .unwrap_err();
    assert!(error.is_retriable(), "{error}");

    init(&client).await;
    assert_eq!(sandbox.requests(), 2);
}

// ---- MIA POS: QR payments ----

mod mia_payments {
    use super::*;
    use fiscus_domain::Money;
    use fiscus_providers::mia::{
        AmountType, Amounts, PayerTarget, PaymentState, QrSettings, QrState, QrType, ReturnRequest,
        ShiftStatus, ShiftZReport, TxType,
    };

    fn m(text: &str) -> Money {
        Money::parse(text).expect("a test amount")
    }

    /// A sandbox, a client with a device, and a live seller token on terminal T123.
    async fn session() -> (MiaSandbox, MiaClient, SecretString) {
        let sandbox = mia().await;
        let client = MiaClient::new(sandbox.base_url(), TIMEOUT)
            .expect("client")
            .with_device(device());
        let activation = init(&client).await.terminal_activation_id;
        let otp = sandbox.last_otp(activation).expect("an OTP");
        confirm(&client, activation, &otp).await.expect("confirms");
        let tokens = login(&client, activation, SELLER_PASSWORD)
            .await
            .expect("logs in");
        (sandbox, client, tokens.access_token)
    }

    #[tokio::test]
    async fn a_dynamic_qr_is_paid_once_with_its_amount_and_its_transaction_has_bank_details() {
        let (sandbox, client, token) = session().await;
        let qr = client
            .create_qr(
                &token,
                QrType::Dynamic,
                AmountType::Fixed,
                Some(&Amounts::Fixed(m("12.50"))),
            )
            .await
            .unwrap();
        assert_eq!(qr.qr_type, QrType::Dynamic);
        assert!(qr.qr_image.is_some(), "the create answer carries the image");
        let extension = qr
            .extension
            .clone()
            .expect("a dynamic QR carries its request");
        assert_eq!(extension.amount, Some(m("12.5")));
        assert_eq!(extension.expires_in, Duration::from_secs(300));
        let (device_header, platform, _) = sandbox.last_device_headers();
        assert_eq!(device_header.as_deref(), Some("fiscus"));
        assert_eq!(platform.as_deref(), Some("external_system"));

        let pending = client
            .check_extension(&token, extension.extension_id)
            .await
            .unwrap();
        assert_eq!(pending.state, PaymentState::Pending);
        let refused = sandbox
            .pay(PayerTarget::Qr(qr.qr_id), m("12.49"))
            .unwrap_err();
        assert!(refused.contains("AMOUNT_NOT_ACCEPTED"), "{refused}");
        let tx_id = sandbox.pay(PayerTarget::Qr(qr.qr_id), m("12.50")).unwrap();
        let paid = client
            .check_extension(&token, extension.extension_id)
            .await
            .unwrap();
        assert_eq!(paid.state, PaymentState::Paid);
        assert_eq!(paid.total_payments, 1);
        let tx = paid.last_transaction.expect("the paying transaction");
        assert_eq!(tx.summary.id, tx_id);
        assert_eq!(tx.summary.amount, m("12.50"));
        assert_eq!(tx.summary.currency, "MDL");
        assert_eq!(tx.mcc, "5411", "read from the seed's Cyrillic key");
        assert_eq!(tx.rrn.len(), 12);
        assert!(!tx.swift_message_id.is_empty() && !tx.approval_code.is_empty());
        let status = client.qr(&token, qr.qr_id, false).await.unwrap();
        assert_eq!(status.state, QrState::Paid);
        assert!(status.qr.expect("info").extension.is_none());
        assert!(
            sandbox.pay(PayerTarget::Qr(qr.qr_id), m("12.50")).is_err(),
            "paid once"
        );
    }

    #[tokio::test]
    async fn a_terminal_has_one_active_static_qr_whose_requests_come_and_go() {
        let (sandbox, client, token) = session().await;
        let fixed = client
            .create_qr(&token, QrType::Static, AmountType::Controlled, None)
            .await
            .unwrap();
        assert!(fixed.extension.is_none());
        let second = client
            .create_qr(&token, QrType::Hybrid, AmountType::Fixed, None)
            .await
            .unwrap_err();
        assert_refused(&second, 409, "ACTIVE_QR_EXISTS");
        let request = client
            .create_extension(
                &token,
                fixed.qr_id,
                &Amounts::Controlled {
                    min: m("5"),
                    max: m("10"),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (request.min_amount, request.max_amount),
            (Some(m("5")), Some(m("10")))
        );
        assert!(
            sandbox
                .pay(PayerTarget::Extension(request.extension_id), m("10.01"))
                .is_err()
        );
        sandbox
            .pay(PayerTarget::Extension(request.extension_id), m("7.77"))
            .unwrap();
        sandbox
            .pay(PayerTarget::Extension(request.extension_id), m("5"))
            .unwrap();
        let check = client
            .check_extension(&token, request.extension_id)
            .await
            .unwrap();
        assert_eq!((check.state, check.total_payments), (PaymentState::Paid, 2));
        let cancel = client
            .cancel_extension(&token, request.extension_id)
            .await
            .unwrap_err();
        assert_refused(&cancel, 409, "OPERATION_NOT_ALLOWED");
        let active = client
            .active_qrs(&token, Some(QrType::Static), true)
            .await
            .unwrap();
        assert_eq!(active.len(), 1);
        assert!(active[0].qr_image.is_some());
        client.cancel_qr(&token, fixed.qr_id).await.unwrap();
        assert_refused(
            &client.cancel_qr(&token, fixed.qr_id).await.unwrap_err(),
            409,
            "QR_NOT_ACTIVE",
        );
        assert!(
            client
                .active_qrs(&token, None, false)
                .await
                .unwrap()
                .is_empty()
        );
        let hybrid = client
            .create_qr(&token, QrType::Hybrid, AmountType::Fixed, None)
            .await
            .unwrap();
        let on_dynamic = client
            .create_qr(
                &token,
                QrType::Dynamic,
                AmountType::Free,
                Some(&Amounts::Free),
            )
            .await
            .unwrap();
        let refused = client
            .create_extension(&token, on_dynamic.qr_id, &Amounts::Fixed(m("1")))
            .await
            .unwrap_err();
        assert_refused(&refused, 409, "OPERATION_NOT_ALLOWED");
        let request = client
            .create_extension(&token, hybrid.qr_id, &Amounts::Fixed(m("3")))
            .await
            .unwrap();
        client
            .cancel_extension(&token, request.extension_id)
            .await
            .unwrap();
        let cancelled = client
            .check_extension(&token, request.extension_id)
            .await
            .unwrap();
        assert_eq!(cancelled.state, PaymentState::Cancelled);
    }

    #[tokio::test]
    async fn returns_add_up_to_the_payment_and_pages_go_from_newest_to_oldest() {
        let (sandbox, client, token) = session().await;
        let mut paid = Vec::new();
        for i in 1..=12 {
            let qr = client
                .create_qr(
                    &token,
                    QrType::Dynamic,
                    AmountType::Free,
                    Some(&Amounts::Free),
                )
                .await
                .unwrap();
            paid.push(
                sandbox
                    .pay(PayerTarget::Qr(qr.qr_id), Money::from_minor(i * 100))
                    .unwrap(),
            );
        }
        let shift = client.shift_check(&token).await.unwrap();
        assert!(shift.is_opened);
        let shift_id = shift.shift_id.unwrap();
        let first = client.transactions(&token, &shift_id, None).await.unwrap();
        assert_eq!(first.transactions.len(), 10);
        assert!(!first.is_ended);
        let last_seen = first.transactions.last().unwrap().id;
        let rest = client
            .transactions(&token, &shift_id, Some(last_seen))
            .await
            .unwrap();
        assert!(rest.is_ended);
        let ids: Vec<u64> = first
            .transactions
            .iter()
            .chain(&rest.transactions)
            .map(|t| t.id)
            .collect();
        let mut newest_first = paid.clone();
        newest_first.reverse();
        assert_eq!(ids, newest_first);

        let tx = paid[11];
        let partial = |amount: &str| ReturnRequest {
            tx_id: tx,
            amount: Some(m(amount)),
            full_refund: false,
            currency: Some("MDL".to_owned()),
            reason_code: "RETURN".to_owned(),
            reason_message: Some("damaged".to_owned()),
        };
        let first_return = client
            .return_transaction(&token, &partial("4.00"))
            .await
            .unwrap();
        client
            .return_transaction(&token, &partial("6.00"))
            .await
            .unwrap();
        let above = client
            .return_transaction(&token, &partial("2.01"))
            .await
            .unwrap_err();
        assert_refused(&above, 409, "REFUND_NOT_ALLOWED");
        let full = client
            .return_transaction(
                &token,
                &ReturnRequest {
                    amount: None,
                    full_refund: true,
                    ..partial("1")
                },
            )
            .await
            .unwrap_err();
        assert_refused(&full, 409, "REFUND_NOT_ALLOWED");
        let details = client.transaction(&token, tx).await.unwrap();
        assert_eq!(details.summary.tx_type, TxType::PartiallyRefunded);
        assert_eq!(details.returns.len(), 2);
        assert_eq!(details.returns[0].request_id, first_return);
        assert_eq!(sandbox.count("return.done"), 2);
    }

    #[tokio::test]
    async fn settings_refuse_a_ttl_below_30_seconds_and_new_requests_live_their_ttl() {
        let (sandbox, client, token) = session().await;
        let mut settings = client.settings(&token).await.unwrap();
        assert_eq!(settings.qr_ttl, 300);
        settings.qr_ttl = 29;
        let refused = client.update_settings(&token, &settings).await.unwrap_err();
        assert_refused(&refused, 400, "VALIDATION_ERROR");
        let wanted = QrSettings {
            qr_type: QrType::Hybrid,
            amount_type: AmountType::Controlled,
            qr_ttl: 30,
            prohibit_settings_change: true,
            when_updated: None,
        };
        client.update_settings(&token, &wanted).await.unwrap();
        let stored = client.settings(&token).await.unwrap();
        assert_eq!(
            (stored.qr_type, stored.amount_type, stored.qr_ttl),
            (QrType::Hybrid, AmountType::Controlled, 30)
        );
        assert!(stored.prohibit_settings_change && stored.when_updated.is_some());
        let qr = client
            .create_qr(
                &token,
                QrType::Dynamic,
                AmountType::Fixed,
                Some(&Amounts::Fixed(m("1"))),
            )
            .await
            .unwrap();
        let extension = qr.extension.unwrap();
        assert_eq!(extension.expires_in, Duration::from_secs(30));
        sandbox.expire(PayerTarget::Qr(qr.qr_id)).unwrap();
        let expired = client
            .check_extension(&token, extension.extension_id)
            .await
            .unwrap();
        assert_eq!(expired.state, PaymentState::Expired);
        assert_eq!(
            client.qr(&token, qr.qr_id, false).await.unwrap().state,
            QrState::Expired
        );
    }

    #[tokio::test]
    async fn amounts_travel_as_exact_json_numbers_and_sub_cent_ones_are_refused() {
        let (sandbox, _client, token) = session().await;
        let http = raw_http();
        let post = |body: serde_json::Value| {
            http.post(format!("{}/pos/api/v2/qr", sandbox.base_url()))
                .bearer_auth(token.expose_secret())
                .json(&body)
                .send()
        };
        let sub_cent = post(serde_json::json!({
            "qrType": "dynamic", "amountType": "fixed", "extension": {"amount": 0.125}
        }))
        .await
        .unwrap();
        assert_eq!(sub_cent.status(), 400);
        let text = sub_cent.text().await.unwrap();
        assert!(text.contains("VALIDATION_ERROR"), "{text}");
        // The body's own text: a JSON value would hold the number as a float.
        let answer = post(serde_json::json!({
            "qrType": "dynamic", "amountType": "fixed", "extension": {"amount": 1e1}
        }))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(answer.contains(r#""amount":10.00"#), "{answer}");
        let hybrid_with_extension = post(serde_json::json!({
            "qrType": "hybrid", "amountType": "fixed", "extension": {"amount": 1}
        }))
        .await
        .unwrap();
        assert_eq!(hybrid_with_extension.status(), 400);
    }

    #[tokio::test]
    async fn a_shift_opens_closes_and_its_z_report_adds_up_its_payments_and_returns() {
        let (sandbox, client, token) = session().await;
        let opened = client.shift_open(&token).await.unwrap();
        assert_refused(
            &client.shift_open(&token).await.unwrap_err(),
            409,
            "SHIFT_ALREADY_OPENED",
        );
        assert_eq!(
            client.shift_check(&token).await.unwrap(),
            ShiftStatus {
                shift_id: Some(opened.clone()),
                is_opened: true
            }
        );
        let mut paid = Vec::new();
        for amount in ["12.50", "0.05"] {
            let qr = client
                .create_qr(
                    &token,
                    QrType::Dynamic,
                    AmountType::Free,
                    Some(&Amounts::Free),
                )
                .await
                .unwrap();
            paid.push(sandbox.pay(PayerTarget::Qr(qr.qr_id), m(amount)).unwrap());
        }
        // Paid at MIA without a QR code of this client: MIA's report counts it all the same.
        sandbox.pay_outside_fiscus(TERMINAL, m("100.10")).unwrap();
        client
            .return_transaction(
                &token,
                &ReturnRequest {
                    tx_id: paid[0],
                    amount: Some(m("2.45")),
                    full_refund: false,
                    currency: Some("MDL".to_owned()),
                    reason_code: "RETURN".to_owned(),
                    reason_message: None,
                },
            )
            .await
            .unwrap();
        assert_refused(
            &client.shift_z_report(&token, &opened).await.unwrap_err(),
            409,
            "SHIFT_NOT_CLOSED",
        );
        assert_eq!(
            client.shift_close(&token).await.unwrap(),
            Some(opened.clone())
        );
        assert_refused(
            &client.shift_close(&token).await.unwrap_err(),
            409,
            "SHIFT_NOT_OPENED",
        );
        assert_eq!(sandbox.shift(TERMINAL), Some((opened.clone(), false)));
        let z = client.shift_z_report(&token, &opened).await.unwrap();
        assert_eq!(
            z,
            ShiftZReport {
                payment_count: 3,
                payment_sum: m("112.65"),
                cancellation_count: 1,
                cancellation_sum: m("2.45"),
                total_sum: m("110.20"),
            }
        );
        assert_refused(
            &client
                .shift_z_report(&token, "no-such-shift")
                .await
                .unwrap_err(),
            404,
            "SHIFT_NOT_FOUND",
        );
        // The next shift starts from nothing.
        let next = client.shift_open(&token).await.unwrap();
        assert_ne!(next, opened);
        client.shift_close(&token).await.unwrap();
        let empty = client.shift_z_report(&token, &next).await.unwrap();
        assert_eq!((empty.payment_count, empty.total_sum), (0, Money::ZERO));
        assert_eq!(
            (
                sandbox.count("shift.opened"),
                sandbox.count("shift.closed"),
                sandbox.count("shift.z_report")
            ),
            (2, 2, 2)
        );
    }
}

// ---- e-barimt POSAPI 3.0 ----

#[path = "providers/ebarimt.rs"]
mod ebarimt;
#[path = "providers/fiskaltrust.rs"]
mod fiskaltrust;
