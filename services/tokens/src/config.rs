//! The `[tokens]` section of the configuration: the upstreams' credentials of each merchant.

use secrecy::SecretString;
use serde::Deserialize;

/// Upstream token brokerage: the credentials of each merchant at each upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// A cached token is renewed this long before it expires (less up to 10 % jitter).
    pub refresh_margin_seconds: u64,
    /// How long one replica may hold the right to fetch a token before another may try.
    pub lease_ms: u64,
    /// Timeout of one upstream token request.
    pub upstream_timeout_ms: u64,
    /// e-barimt (Keycloak) credentials, `[[tokens.ebarimt]]`.
    pub ebarimt: Vec<EbarimtCredential>,
    /// fiskaltrust cash boxes, `[[tokens.fiskaltrust]]`.
    pub fiskaltrust: Vec<FiskaltrustCredential>,
    /// Base URL of the MIA POS terminal API; empty = MIA not configured.
    pub mia_url: String,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            refresh_margin_seconds: 30,
            lease_ms: 10_000,
            upstream_timeout_ms: 10_000,
            ebarimt: Vec::new(),
            fiskaltrust: Vec::new(),
            mia_url: String::new(),
        }
    }
}

/// One e-barimt credential, named as in posapi.ini.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbarimtCredential {
    /// The merchant it acts for.
    pub merchant_tin: String,
    /// Its name; requests that name none use `default`.
    #[serde(default = "default_credential")]
    pub credential: String,
    /// Keycloak base URL (`authUrl`).
    #[serde(rename = "authUrl", alias = "auth_url")]
    pub auth_url: String,
    /// Keycloak realm (`authRealm`).
    #[serde(rename = "authRealm", alias = "auth_realm")]
    pub auth_realm: String,
    #[serde(rename = "authClientId", alias = "auth_client_id")]
    pub auth_client_id: String,
    #[serde(
        rename = "authClientSecret",
        alias = "auth_client_secret",
        deserialize_with = "fiscus_kit::config::lenient::secret"
    )]
    pub auth_client_secret: SecretString,
    /// For the password grant: the user; without it the client-credentials grant is used.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(
        default,
        deserialize_with = "fiscus_kit::config::lenient::optional_secret"
    )]
    pub password: Option<SecretString>,
}

/// One fiskaltrust cash box: its id and access token, from the fiskaltrust portal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiskaltrustCredential {
    pub merchant_tin: String,
    #[serde(default = "default_credential")]
    pub credential: String,
    pub cashbox_id: String,
    #[serde(deserialize_with = "fiscus_kit::config::lenient::secret")]
    pub access_token: SecretString,
}

fn default_credential() -> String {
    "default".to_owned()
}
