//! A Keycloak sandbox: the realm token endpoint (client-credentials and password grants, validated like
//! Keycloak does) plus a bearer-protected probe standing in for the upstream API the tokens unlock.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::time::Instant;

use crate::sandbox::{self, Faults, SandboxError, Server, lock};

const SANDBOX: &str = "keycloak";
const TOKEN_ROUTE: &str = "/realms/{realm}/protocol/openid-connect/token";
const PROBE_ROUTE: &str = "/sandbox/protected";
/// Issued tokens kept before expired ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;

/// What the sandbox knows: realms with their clients and users, and the token lifetime.
#[derive(Clone, Debug)]
pub struct KeycloakSandboxConfig {
    /// Where to listen; loopback on a free port by default.
    pub bind: SocketAddr,
    pub realms: Vec<SandboxRealm>,
    /// `expires_in` of new tokens; 300 s by default, like Keycloak's realm default.
    pub token_lifetime: Duration,
}

impl Default for KeycloakSandboxConfig {
    fn default() -> Self {
        KeycloakSandboxConfig {
            bind: sandbox::LOOPBACK_ANY_PORT,
            realms: Vec::new(),
            token_lifetime: Duration::from_secs(300),
        }
    }
}

impl KeycloakSandboxConfig {
    pub fn with_realm(mut self, realm: SandboxRealm) -> Self {
        self.realms.push(realm);
        self
    }
}

/// A realm: its confidential clients and its users.
#[derive(Clone, Debug)]
pub struct SandboxRealm {
    pub name: String,
    pub clients: Vec<SandboxClient>,
    pub users: Vec<SandboxUser>,
}

impl SandboxRealm {
    pub fn new(name: impl Into<String>) -> Self {
        SandboxRealm {
            name: name.into(),
            clients: Vec::new(),
            users: Vec::new(),
        }
    }

    pub fn with_client(mut self, client: SandboxClient) -> Self {
        self.clients.push(client);
        self
    }

    pub fn with_user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push(SandboxUser {
            username: username.into(),
            password: SecretString::from(password.into()),
        });
        self
    }
}

/// A confidential client, with the two Keycloak switches that decide which grants it may use.
#[derive(Clone, Debug)]
pub struct SandboxClient {
    pub client_id: String,
    pub secret: SecretString,
    /// "Service accounts enabled": may use the client-credentials grant.
    pub service_accounts_enabled: bool,
    /// "Direct access grants enabled": may use the password grant.
    pub direct_access_grants_enabled: bool,
}

impl SandboxClient {
    /// A client allowed both grants.
    pub fn new(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        SandboxClient {
            client_id: client_id.into(),
            secret: SecretString::from(secret.into()),
            service_accounts_enabled: true,
            direct_access_grants_enabled: true,
        }
    }
}

/// A realm user for the password grant. Usernames match case-insensitively, as in Keycloak.
#[derive(Clone, Debug)]
pub struct SandboxUser {
    pub username: String,
    pub password: SecretString,
}

struct IssuedToken {
    realm: String,
    client_id: String,
    username: Option<String>,
    expires_at: Instant,
    expired_early: bool,
}

impl IssuedToken {
    fn is_live(&self, now: Instant) -> bool {
        !self.expired_early && now < self.expires_at
    }
}

struct KeycloakState {
    realms: HashMap<String, SandboxRealm>,
    token_lifetime: Mutex<Duration>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
}

/// A running Keycloak sandbox and its test controls. Dropping it stops the server.
pub struct KeycloakSandbox {
    server: Server,
    state: Arc<KeycloakState>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for KeycloakSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakSandbox")
            .field("base_url", &self.server.base_url())
            .finish_non_exhaustive()
    }
}

impl KeycloakSandbox {
    /// Binds `config.bind` and serves on the current Tokio runtime.
    pub async fn start(config: KeycloakSandboxConfig) -> Result<Self, SandboxError> {
        let mut realms = HashMap::new();
        for realm in config.realms {
            let mut ids = HashSet::new();
            if let Some(dup) = realm.clients.iter().find(|c| !ids.insert(&c.client_id)) {
                return Err(config_error(format!(
                    "realm {}: client {} listed twice",
                    realm.name, dup.client_id
                )));
            }
            let name = realm.name.clone();
            if realms.insert(name.clone(), realm).is_some() {
                return Err(config_error(format!("realm {name} listed twice")));
            }
        }
        let state = Arc::new(KeycloakState {
            realms,
            token_lifetime: Mutex::new(config.token_lifetime),
            tokens: Mutex::new(HashMap::new()),
        });
        let (shutdown, stopping) = Server::shutdown_channel();
        let faults = Arc::new(Faults::new(unavailable, stopping));
        let router = Router::new()
            .route(TOKEN_ROUTE, any(token))
            // Faults and the request count apply to the token endpoint only.
            .route_layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                sandbox::inject_faults,
            ))
            .route(PROBE_ROUTE, get(probe))
            .fallback(not_found)
            .with_state(state.clone());
        let server = Server::start(SANDBOX, config.bind, router, shutdown).await?;
        Ok(KeycloakSandbox {
            server,
            state,
            faults,
        })
    }

    /// `http://127.0.0.1:PORT`: what goes into `authUrl` / [`super::KeycloakAuth::auth_url`].
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// The token endpoint of `realm`.
    pub fn token_url(&self, realm: &str) -> String {
        format!(
            "{}/realms/{realm}/protocol/openid-connect/token",
            self.base_url()
        )
    }

    /// The bearer-protected probe: 200 for a live token, 401 otherwise.
    pub fn protected_url(&self) -> String {
        format!("{}{PROBE_ROUTE}", self.base_url())
    }

    /// Requests that reached the token endpoint, whatever they were answered (failures included).
    pub fn token_requests(&self) -> u64 {
        self.faults.requests()
    }

    /// The W3C `traceparent` header of the last token request, when it carried one.
    pub fn last_traceparent(&self) -> Option<String> {
        self.faults.last_traceparent()
    }

    /// The next `n` token requests answer 503, as a Keycloak behind a failing proxy does.
    pub fn fail_next(&self, n: u32) {
        self.faults.fail_next(n);
    }

    /// The next `n` token requests are served (tokens issued) but never answered; the caller times out.
    pub fn drop_next(&self, n: u32) {
        self.faults.drop_next(n);
    }

    /// Every token request waits `latency` before it is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.set_latency(latency);
    }

    /// The lifetime (and `expires_in`) of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.token_lifetime) = lifetime;
    }

    /// Every token issued so far stops working now, whatever its `expires_in` said.
    pub fn expire_all_tokens(&self) {
        for token in lock(&self.state.tokens).values_mut() {
            token.expired_early = true;
        }
    }

    /// Whether `access_token` was issued here and is still live.
    pub fn is_token_live(&self, access_token: &str) -> bool {
        let now = Instant::now();
        lock(&self.state.tokens)
            .get(access_token)
            .is_some_and(|t| t.is_live(now))
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

/// An OAuth2 error answer, in Keycloak's shape: `{"error", "error_description"}`.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn oauth_error(
    status: StatusCode,
    error: &'static str,
    description: impl Into<String>,
) -> OAuthError {
    OAuthError {
        status,
        error,
        description: description.into(),
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            axum::Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response()
    }
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html("<html><body><h1>503 Service Unavailable</h1></body></html>"),
    )
        .into_response()
}

async fn not_found() -> OAuthError {
    oauth_error(
        StatusCode::NOT_FOUND,
        "Unable to find matching target resource method",
        "For more on this error consult the server log.",
    )
}

/// The client credentials a token request presents, from HTTP Basic or from the form.
struct ClientCredentials {
    client_id: String,
    secret: Option<String>,
}

fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<ClientCredentials, OAuthError> {
    let invalid_client =
        |description: &str| oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().ok().and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
            });
            let decoded = value
                .and_then(|v| STANDARD.decode(v).ok())
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| {
                    let (id, secret) = text.split_once(':')?;
                    Some((form_decode(id), form_decode(secret)))
                });
            match decoded {
                Some(pair) => Some(pair),
                None => return Err(invalid_client("Invalid client credentials")),
            }
        }
    };
    match basic {
        Some((id, secret)) => {
            if form.contains_key("client_secret") {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "More than one client authentication method",
                ));
            }
            if form.get("client_id").is_some_and(|form_id| *form_id != id) {
                return Err(invalid_client("Mismatch in client_id"));
            }
            Ok(ClientCredentials {
                client_id: id,
                secret: Some(secret),
            })
        }
        None => match form.get("client_id") {
            Some(id) if !id.is_empty() => Ok(ClientCredentials {
                client_id: id.clone(),
                secret: form.get("client_secret").cloned(),
            }),
            _ => Err(invalid_client("Missing client_id parameter")),
        },
    }
}

/// Basic credentials are form-encoded before base64 (RFC 6749 §2.3.1).
fn form_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn token(
    state: State<Arc<KeycloakState>>,
    realm: Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    issue_token(state, realm, method, headers, body).unwrap_or_else(IntoResponse::into_response)
}

/// Validates a token request the way Keycloak does, in Keycloak's order, and issues the token.
fn issue_token(
    State(state): State<Arc<KeycloakState>>,
    Path(realm_name): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let Some(realm) = state.realms.get(&realm_name) else {
        return Err(oauth_error(
            StatusCode::NOT_FOUND,
            "Realm does not exist",
            "Realm does not exist",
        ));
    };
    if method != Method::POST {
        return Ok((
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"))],
        )
            .into_response());
    }
    let form_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_content {
        return Err(oauth_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let mut form = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        if form.insert(name.into_owned(), value.into_owned()).is_some() {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "duplicated parameter",
            ));
        }
    }
    let grant_type = match form.get("grant_type").map(String::as_str) {
        None | Some("") => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing form parameter: grant_type",
            ));
        }
        Some(g @ ("client_credentials" | "password")) => g.to_owned(),
        Some(_) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant_type",
            ));
        }
    };
    let credentials = client_credentials(&headers, &form)?;
    let client = realm
        .clients
        .iter()
        .find(|c| c.client_id == credentials.client_id);
    let authenticated = client.filter(|c| {
        credentials
            .secret
            .as_deref()
            .is_some_and(|s| s == c.secret.expose_secret())
    });
    let Some(client) = authenticated else {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client or Invalid client credentials",
        ));
    };
    let username = if grant_type == "client_credentials" {
        if !client.service_accounts_enabled {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "Client not enabled to retrieve service account",
            ));
        }
        None
    } else {
        if !client.direct_access_grants_enabled {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "Client not allowed for direct access grants",
            ));
        }
        let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
            let missing = if form.contains_key("username") {
                "password"
            } else {
                "username"
            };
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("Missing parameter: {missing}"),
            ));
        };
        let known = realm.users.iter().any(|u| {
            u.username.eq_ignore_ascii_case(username) && u.password.expose_secret() == password
        });
        if !known {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                "Invalid user credentials",
            ));
        }
        Some(username.to_lowercase())
    };
    let access_token = match sandbox::random_token() {
        Ok(t) => t,
        Err(e) => return Ok(sandbox::internal_error(e)),
    };
    let lifetime = *lock(&state.token_lifetime);
    let now = Instant::now();
    {
        let mut tokens = lock(&state.tokens);
        if tokens.len() > PRUNE_ABOVE {
            tokens.retain(|_, t| t.is_live(now));
        }
        tokens.insert(
            access_token.clone(),
            IssuedToken {
                realm: realm.name.clone(),
                client_id: client.client_id.clone(),
                username,
                expires_at: now + lifetime,
                expired_early: false,
            },
        );
    }
    Ok((
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        axum::Json(json!({
            "access_token": access_token,
            "expires_in": lifetime.as_secs(),
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "profile email",
        })),
    )
        .into_response())
}

async fn probe(State(state): State<Arc<KeycloakState>>, headers: HeaderMap) -> Response {
    let Some(token) = sandbox::bearer(&headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            axum::Json(
                json!({ "error": "invalid_request", "error_description": "Missing bearer token" }),
            ),
        )
            .into_response();
    };
    let now = Instant::now();
    let tokens = lock(&state.tokens);
    match tokens.get(token).filter(|t| t.is_live(now)) {
        Some(t) => axum::Json(json!({
            "active": true,
            "realm": t.realm,
            "client_id": t.client_id,
            "username": t.username,
            "expires_in": t.expires_at.saturating_duration_since(now).as_secs(),
        }))
        .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer error=\"invalid_token\", error_description=\"Token is not active\"",
                ),
            )],
            axum::Json(
                json!({ "error": "invalid_token", "error_description": "Token is not active" }),
            ),
        )
            .into_response(),
    }
}
