//! The token client: one POST to Keycloak's token endpoint per call, no caching (that is TokenService's job).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::{ProviderError, Upstream};
use crate::http::{self, StatusClass};

const UPSTREAM: Upstream = Upstream::Keycloak;

/// Where and as whom to ask for a token: e-barimt's `authUrl`, `authRealm`, `authClientId`,
/// `authClientSecret`, plus the grant.
#[derive(Clone, Debug)]
pub struct KeycloakAuth {
    /// Keycloak's base URL (`authUrl`), e.g. `https://auth.itc.gov.mn/auth` or a sandbox's `base_url()`.
    pub auth_url: String,
    pub realm: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub grant: Grant,
}

/// The OAuth2 grant to use.
#[derive(Clone, Debug)]
pub enum Grant {
    /// The client's own service account.
    ClientCredentials,
    /// Resource-owner password credentials ("direct access grant") of a user.
    Password {
        username: String,
        password: SecretString,
    },
}

impl Grant {
    /// The `grant_type` form value.
    pub fn grant_type(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::Password { .. } => "password",
        }
    }
}

/// An access token as Keycloak granted it.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    pub access_token: SecretString,
    /// `Bearer` (checked).
    pub token_type: String,
    /// Lifetime from the moment Keycloak answered.
    pub expires_in: Duration,
}

/// Keycloak's token answer; fields fiscus does not use (`refresh_expires_in`, `scope`...) are ignored.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
    token_type: String,
    expires_in: u64,
}

/// Keycloak's OAuth2 error answer.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Fetches tokens from Keycloak. Cheap to clone; clones share one connection pool.
#[derive(Clone, Debug)]
pub struct KeycloakClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl KeycloakClient {
    /// A client whose every call gives up after `timeout` (connect, send and answer together).
    pub fn new(timeout: Duration) -> Result<Self, ProviderError> {
        Ok(KeycloakClient {
            http: http::build_client(UPSTREAM, timeout)?,
            timeout,
        })
    }

    /// The token endpoint URL for `auth`: `{auth_url}/realms/{realm}/protocol/openid-connect/token`.
    pub fn token_url(auth: &KeycloakAuth) -> Result<reqwest::Url, ProviderError> {
        if auth.realm.is_empty() {
            return Err(ProviderError::config(UPSTREAM, "empty realm"));
        }
        let base = http::parse_base_url(UPSTREAM, &auth.auth_url)?;
        Ok(http::join(
            &base,
            &["realms", &auth.realm, "protocol", "openid-connect", "token"],
        ))
    }

    /// Asks Keycloak for an access token. One HTTP request, never retried here.
    #[tracing::instrument(
        name = "keycloak.fetch_token",
        skip_all,
        fields(realm = %auth.realm, client_id = %auth.client_id, grant = auth.grant.grant_type()),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn fetch_token(&self, auth: &KeycloakAuth) -> Result<TokenGrant, ProviderError> {
        let url = Self::token_url(auth)?;
        let url_text = url.to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", auth.grant.grant_type()),
            ("client_id", &auth.client_id),
            ("client_secret", auth.client_secret.expose_secret()),
        ];
        if let Grant::Password { username, password } = &auth.grant {
            form.push(("username", username));
            form.push(("password", password.expose_secret()));
        }
        let request = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let answer = http::exchange(UPSTREAM, &url_text, self.timeout, request).await?;
        read_answer(&url_text, answer)
    }
}

fn read_answer(url: &str, answer: http::Answer) -> Result<TokenGrant, ProviderError> {
    let status = answer.status;
    match http::classify(status) {
        StatusClass::Success => {
            let token: TokenAnswer = serde_json::from_slice(&answer.body)
                .map_err(|e| protocol(url, format!("token answer is not Keycloak's JSON: {e}")))?;
            if token.access_token.expose_secret().is_empty() {
                return Err(protocol(url, "empty access_token".to_owned()));
            }
            if !token.token_type.eq_ignore_ascii_case("bearer") {
                return Err(protocol(
                    url,
                    format!("token_type {:?}, expected Bearer", token.token_type),
                ));
            }
            tracing::debug!(expires_in = token.expires_in, "token granted");
            Ok(TokenGrant {
                access_token: token.access_token,
                token_type: token.token_type,
                expires_in: Duration::from_secs(token.expires_in),
            })
        }
        StatusClass::Refused => {
            let (error, description) = match serde_json::from_slice::<ErrorAnswer>(&answer.body) {
                Ok(e) => (e.error, e.error_description.unwrap_or_default()),
                Err(_) => (
                    format!("http_{}", status.as_u16()),
                    http::snippet(&answer.body),
                ),
            };
            Err(ProviderError::Refused {
                upstream: UPSTREAM,
                url: url.to_owned(),
                status: status.as_u16(),
                error,
                description,
                left_attempts: None,
                retry_after: None,
            })
        }
        StatusClass::Unavailable => Err(ProviderError::Unavailable {
            upstream: UPSTREAM,
            url: url.to_owned(),
            cause: format!("HTTP {status}: {}", http::snippet(&answer.body)),
        }),
        StatusClass::Unexpected => Err(protocol(url, format!("unexpected HTTP {status}"))),
    }
}

fn protocol(url: &str, detail: String) -> ProviderError {
    ProviderError::Protocol {
        upstream: UPSTREAM,
        url: url.to_owned(),
        detail,
    }
}
