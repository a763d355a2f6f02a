//! The MIA POS sandbox: one HTTP server for the whole MIA terminal API, built from per-area routers
//! (activation, seller sessions, QR payments) over one shared state, and the payer's control
//! endpoints beside it.

mod activation;
mod api;
mod payer;
mod payments;
mod seller;

pub use payer::Target as PayerTarget;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use secrecy::SecretString;
use tokio::time::Instant;
use uuid::Uuid;

use crate::sandbox::{self, Faults, SandboxError, Server, lock};

const SANDBOX: &str = "mia";

/// What the sandbox knows and how strict it is.
#[derive(Clone, Debug)]
pub struct MiaSandboxConfig {
    /// Where to listen; loopback on a free port by default.
    pub bind: SocketAddr,
    pub terminals: Vec<MiaTerminal>,
    pub sellers: Vec<MiaSeller>,
    pub bank: MiaBank,
    /// Before this has passed since the last OTP, a resend is refused. 60 s by default.
    pub wait_time_to_resend: Duration,
    /// An OTP older than this is refused. 300 s by default.
    pub otp_lifetime: Duration,
    /// Wrong OTPs tolerated before the activation is blocked. 3 by default.
    pub otp_attempts: u32,
    /// Resends allowed per activation. 3 by default.
    pub otp_resends: u32,
    /// `accessTokenExpiresIn`. 300 s by default.
    pub access_token_lifetime: Duration,
    /// How long an unused refresh token stays valid. 24 h by default.
    pub refresh_token_lifetime: Duration,
    /// Transactions per portion of a shift's list. 10 by default.
    pub transactions_page_size: usize,
    /// ISO 4217 currency of every payment. `MDL` by default.
    pub currency: String,
}

impl Default for MiaSandboxConfig {
    fn default() -> Self {
        MiaSandboxConfig {
            bind: sandbox::LOOPBACK_ANY_PORT,
            terminals: Vec::new(),
            sellers: Vec::new(),
            bank: MiaBank::default(),
            wait_time_to_resend: Duration::from_secs(60),
            otp_lifetime: Duration::from_secs(300),
            otp_attempts: 3,
            otp_resends: 3,
            access_token_lifetime: Duration::from_secs(300),
            refresh_token_lifetime: Duration::from_secs(24 * 3600),
            transactions_page_size: 10,
            currency: "MDL".to_owned(),
        }
    }
}

impl MiaSandboxConfig {
    pub fn with_terminal(mut self, terminal: MiaTerminal) -> Self {
        self.terminals.push(terminal);
        self
    }

    pub fn with_seller(mut self, seller: MiaSeller) -> Self {
        self.sellers.push(seller);
        self
    }
}

/// A POS terminal registered at MIA, and the merchant and store it belongs to.
#[derive(Clone, Debug)]
pub struct MiaTerminal {
    pub terminal_id: String,
    pub merchant_idno: String,
    pub merchant_name: String,
    /// `placeInfo.name` of a seller session.
    pub store_name: String,
    pub store_address: String,
    /// What `init` answers as `maskedPhoneNumber`: where the OTP "goes".
    pub masked_phone_number: String,
    /// `terminalInfo.posId` of a seller session.
    pub pos_id: i64,
}

impl MiaTerminal {
    /// A terminal with sandbox defaults for everything but its identity.
    pub fn new(terminal_id: impl Into<String>, merchant_idno: impl Into<String>) -> Self {
        MiaTerminal {
            terminal_id: terminal_id.into(),
            merchant_idno: merchant_idno.into(),
            merchant_name: "Sandbox Merchant SRL".to_owned(),
            store_name: "Sandbox Store".to_owned(),
            store_address: "str. Mihai Viteazu 15, Chișinău".to_owned(),
            masked_phone_number: "+373 *** ** 123".to_owned(),
            pos_id: 1,
        }
    }
}

/// A seller (cashier) who logs in on activated terminals.
#[derive(Clone, Debug)]
pub struct MiaSeller {
    pub username: String,
    pub password: SecretString,
    pub id: i64,
    pub full_name: String,
    /// Only terminals of this merchant; `None`: any terminal.
    pub merchant_idno: Option<String>,
}

impl MiaSeller {
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
        id: i64,
        full_name: impl Into<String>,
    ) -> Self {
        MiaSeller {
            username: username.into(),
            password: SecretString::from(password.into()),
            id,
            full_name: full_name.into(),
            merchant_idno: None,
        }
    }
}

/// The acquiring bank shown in seller sessions.
#[derive(Clone, Debug)]
pub struct MiaBank {
    pub bank_name: String,
    pub image: String,
    pub user_guide_url: String,
    pub support_phone: String,
    pub support_email: String,
}

impl Default for MiaBank {
    fn default() -> Self {
        MiaBank {
            bank_name: "Sandbox Bank".to_owned(),
            image: "https://bank.invalid/logo.png".to_owned(),
            user_guide_url: "https://bank.invalid/miapos-guide".to_owned(),
            support_phone: "+373 22 000 000".to_owned(),
            support_email: "support@bank.invalid".to_owned(),
        }
    }
}

/// Settings tests may change while the sandbox serves.
struct Tunables {
    wait_time_to_resend: Duration,
    otp_lifetime: Duration,
    otp_attempts: u32,
    otp_resends: u32,
    access_token_lifetime: Duration,
    refresh_token_lifetime: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ActivationState {
    Pending,
    Confirmed,
    Blocked,
}

struct Activation {
    terminal: usize,
    state: ActivationState,
    otp: String,
    otp_sent_at: Instant,
    left_attempts: u32,
    left_resends: u32,
}

struct Session {
    activation: Uuid,
    seller: usize,
    refresh_token: String,
    refresh_expires_at: Instant,
}

struct AccessGrant {
    session: u64,
    expires_at: Instant,
}

/// Everything the sandbox has been told.
#[derive(Default)]
struct Store {
    activations: HashMap<Uuid, Activation>,
    sessions: HashMap<u64, Session>,
    next_session: u64,
    /// Access token → grant.
    access: HashMap<String, AccessGrant>,
    /// Live refresh token → session.
    refresh: HashMap<String, u64>,
    /// QR payments, by terminal index.
    payments: payments::Payments,
}

/// What the last request to the MIA API said about itself, for tests.
#[derive(Default, Clone, Debug)]
struct Seen {
    correlation_id: Option<String>,
    device: Option<String>,
    platform_type: Option<String>,
    installation_id: Option<String>,
}

struct MiaState {
    terminals: Vec<MiaTerminal>,
    sellers: Vec<MiaSeller>,
    bank: MiaBank,
    tunables: Mutex<Tunables>,
    store: Mutex<Store>,
    currency: String,
    page_size: usize,
    /// What was done, by name (`qr.created`, `return.done`, …).
    counters: Mutex<BTreeMap<&'static str, u64>>,
    seen: Mutex<Seen>,
}

impl MiaState {
    fn count(&self, what: &'static str) {
        *lock(&self.counters).entry(what).or_default() += 1;
    }
}

/// A running MIA POS sandbox and its test controls. Dropping it stops the server.
pub struct MiaSandbox {
    server: Server,
    state: Arc<MiaState>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for MiaSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiaSandbox")
            .field("base_url", &self.server.base_url())
            .finish_non_exhaustive()
    }
}

impl MiaSandbox {
    /// Binds `config.bind` and serves on the current Tokio runtime.
    pub async fn start(config: MiaSandboxConfig) -> Result<Self, SandboxError> {
        let mut terminal_ids = HashSet::new();
        if let Some(dup) = config
            .terminals
            .iter()
            .find(|t| !terminal_ids.insert(&t.terminal_id))
        {
            return Err(config_error(format!(
                "terminal {} listed twice",
                dup.terminal_id
            )));
        }
        let mut usernames = HashSet::new();
        if let Some(dup) = config
            .sellers
            .iter()
            .find(|s| !usernames.insert(&s.username))
        {
            return Err(config_error(format!(
                "seller {} listed twice",
                dup.username
            )));
        }
        if config.otp_attempts == 0 {
            return Err(config_error("otp_attempts must be at least 1".to_owned()));
        }
        let state = Arc::new(MiaState {
            terminals: config.terminals,
            sellers: config.sellers,
            bank: config.bank,
            tunables: Mutex::new(Tunables {
                wait_time_to_resend: config.wait_time_to_resend,
                otp_lifetime: config.otp_lifetime,
                otp_attempts: config.otp_attempts,
                otp_resends: config.otp_resends,
                access_token_lifetime: config.access_token_lifetime,
                refresh_token_lifetime: config.refresh_token_lifetime,
            }),
            store: Mutex::new(Store::default()),
            currency: config.currency,
            page_size: config.transactions_page_size.max(1),
            counters: Mutex::default(),
            seen: Mutex::default(),
        });
        let (shutdown, stopping) = Server::shutdown_channel();
        let faults = Arc::new(Faults::new(api::unavailable, stopping));
        let mia = Router::new()
            .merge(activation::routes())
            .merge(seller::routes())
            .merge(payments::routes())
            .fallback(api::not_found)
            .method_not_allowed_fallback(api::method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                api::correlation,
            ))
            // Outermost: every request is counted, whatever it is answered.
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                sandbox::inject_faults,
            ));
        // The payer is not MIA's client: its requests are neither counted nor faulted.
        let router = payer::routes().merge(mia).with_state(state.clone());
        let server = Server::start(SANDBOX, config.bind, router, shutdown).await?;
        Ok(MiaSandbox {
            server,
            state,
            faults,
        })
    }

    /// `http://127.0.0.1:PORT`: the base URL for [`crate::mia::MiaClient::new`].
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// Requests received on any path, whatever they were answered (failures included).
    pub fn requests(&self) -> u64 {
        self.faults.requests()
    }

    /// The W3C `traceparent` header of the last request, when it carried one.
    pub fn last_traceparent(&self) -> Option<String> {
        self.faults.last_traceparent()
    }

    /// The next `n` requests answer 503 `SERVICE_UNAVAILABLE` without being handled.
    pub fn fail_next(&self, n: u32) {
        self.faults.fail_next(n);
    }

    /// The next `n` requests are handled (state changes) but never answered; the caller times out.
    pub fn drop_next(&self, n: u32) {
        self.faults.drop_next(n);
    }

    /// Every request waits `latency` before it is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.set_latency(latency);
    }

    /// The test's SMS inbox: the OTP last sent for an activation (init or resend).
    pub fn last_otp(&self, activation_id: Uuid) -> Option<String> {
        lock(&self.state.store)
            .activations
            .get(&activation_id)
            .map(|a| a.otp.clone())
    }

    /// The resend wait of OTPs sent from now on.
    pub fn set_wait_time_to_resend(&self, wait: Duration) {
        lock(&self.state.tunables).wait_time_to_resend = wait;
    }

    /// The lifetime of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        lock(&self.state.tunables).access_token_lifetime = lifetime;
    }

    /// Every access token issued so far expires now (`TOKEN_EXPIRED`); refresh tokens keep working.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for grant in lock(&self.state.store).access.values_mut() {
            grant.expires_at = grant.expires_at.min(now);
        }
    }

    /// Whether `access_token` was issued here, is unexpired and its session not logged out.
    pub fn is_access_token_live(&self, access_token: &str) -> bool {
        let now = Instant::now();
        let store = lock(&self.state.store);
        store
            .access
            .get(access_token)
            .is_some_and(|g| now < g.expires_at && store.sessions.contains_key(&g.session))
    }

    /// How often something was done: `qr.created`, `qr.cancelled`, `extension.created`,
    /// `extension.cancelled`, `extension.checked`, `qr.read`, `qr.listed`, `tx.listed`,
    /// `tx.read`, `return.done`, `settings.read`, `settings.updated`, `shift.checked`,
    /// `shift.opened`, `shift.closed`, `shift.z_report`, `payer.paid`, `payer.refused`, `payer.outside`.
    pub fn count(&self, what: &str) -> u64 {
        lock(&self.state.counters)
            .iter()
            .find(|(name, _)| **name == what)
            .map_or(0, |(_, n)| *n)
    }

    /// `X-CORRELATION-ID` of the last request to the MIA API, when it had one.
    pub fn last_correlation_id(&self) -> Option<String> {
        lock(&self.state.seen).correlation_id.clone()
    }

    /// `X-DEVICE`, `X-PLATFORM-TYPE` and `X-INSTALLATION-ID` of the last request to the MIA API.
    pub fn last_device_headers(&self) -> (Option<String>, Option<String>, Option<String>) {
        let seen = lock(&self.state.seen).clone();
        (seen.device, seen.platform_type, seen.installation_id)
    }

    /// The payer pays `amount` against a QR code's active payment request (or, for a static
    /// free QR without one, the QR itself); answers the transaction id, or why it was refused.
    pub fn pay(&self, target: PayerTarget, amount: fiscus_domain::Money) -> Result<u64, String> {
        payer::pay(&self.state, target, amount).map_err(|e| e.to_string())
    }

    /// A payment MIA takes on terminal `terminal_id` without a QR code fiscus made (another app
    /// on the terminal): recorded in the terminal's open shift (opened if none is), so MIA's
    /// Z-report counts it and fiscus knows nothing of it. Answers the transaction id.
    pub fn pay_outside_fiscus(
        &self,
        terminal_id: &str,
        amount: fiscus_domain::Money,
    ) -> Result<u64, String> {
        payer::record_outside(&self.state, terminal_id, amount).map_err(|e| e.to_string())
    }

    /// Terminal `terminal_id`'s current (or last) MIA shift and whether it is open.
    pub fn shift(&self, terminal_id: &str) -> Option<(String, bool)> {
        let terminal = self
            .state
            .terminals
            .iter()
            .position(|t| t.terminal_id == terminal_id)?;
        lock(&self.state.store).payments.shift_of(terminal)
    }

    /// The payer's bank refuses the payment: the payment request FAILED with `reason`.
    pub fn fail_payment(&self, target: PayerTarget, reason: &str) -> Result<(), String> {
        payer::fail(&self.state, target, reason).map_err(|e| e.to_string())
    }

    /// The time to live of a QR code's payment request (or a payment request) runs out now.
    pub fn expire(&self, target: PayerTarget) -> Result<(), String> {
        payer::expire(&self.state, target).map_err(|e| e.to_string())
    }

    /// Stops the server and waits for answers in flight.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn config_error(detail: String) -> SandboxError {
    SandboxError::Config {
        sandbox: SANDBOX,
        detail,
    }
}
