//! Layered configuration: built-in defaults, then a TOML file, then `FISCUS_*` environment variables.
//!
//! Every key has a default that works on a developer machine; every section refuses unknown keys so
//! that a typo stops the process with a line naming the key instead of being silently ignored.
//! Secrets are [`SecretString`]s: they never reach `Debug` output or a log line.

use std::net::SocketAddr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The prefix of every environment variable that overrides a configuration key.
/// `FISCUS_SERVER__LISTEN` sets `server.listen`: sections are separated by a double underscore.
pub const ENV_PREFIX: &str = "FISCUS_";

/// Configuration shared by every fiscus service; one file can configure the whole cluster.
///
/// Each service's own section (`[receipts]`, `[tokens]`, …) is read by that service with
/// [`Config::section`]: kit knows which sections exist, not what is in them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub telemetry: TelemetryConfig,
    pub peers: PeersConfig,
    pub keys: KeysConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    /// Every layer the configuration was read from, for the services' own sections.
    #[serde(skip)]
    sources: Sources,
}

/// The layers of a configuration; never printed, as they hold secrets in plain text.
#[derive(Clone, Default)]
struct Sources(Figment);

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sources([REDACTED])")
    }
}

/// The sections read into [`Config`] itself.
const SHARED_SECTIONS: [&str; 8] = [
    "server",
    "database",
    "cache",
    "telemetry",
    "peers",
    "keys",
    "auth",
    "admin",
];

/// The gRPC listener and its protection against overload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the gRPC server listens; each service has its own default port.
    pub listen: Option<SocketAddr>,
    /// Longest time one RPC may run before it is answered with `DEADLINE_EXCEEDED`.
    pub request_timeout_ms: u64,
    /// Requests served at once on one HTTP/2 connection; further ones wait.
    pub concurrency_limit_per_connection: usize,
    /// After SIGTERM: how long health reports NOT_SERVING before the listener closes,
    /// so that load balancers stop routing here first.
    pub drain_delay_ms: u64,
    /// After SIGTERM: how long in-flight RPCs may take to finish before the process exits anyway.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: None,
            request_timeout_ms: 10_000,
            concurrency_limit_per_connection: 256,
            drain_delay_ms: 0,
            shutdown_grace_ms: 20_000,
        }
    }
}

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// The admin port: Prometheus metrics, apart from gRPC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin port at all.
    pub enabled: bool,
    /// Where; each service has its own default port (9461 receipts … 9464 tokens).
    pub listen: Option<SocketAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
        }
    }
}

/// The journal database: Postgres in a cluster, SQLite for a single process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/db` or `sqlite:///path/to/file.db`.
    /// Defaults to `DATABASE_URL`, else the local Postgres.
    pub url: SecretString,
    /// The Postgres schema this service owns; defaults to `fiscus_<service>`.
    pub schema: Option<String>,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
    /// Postgres cancels a statement that runs longer (`statement_timeout`); its caller is told
    /// UNAVAILABLE rather than waiting out the RPC's deadline.
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from(
                std::env::var("DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
            ),
            schema: None,
            max_connections: 16,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 5_000,
        }
    }
}

/// The shared cache (upstream tokens, idempotency fast path, leases).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `redis://host:port/db`, a Redis Cluster's seed nodes as
    /// `redis+cluster://host:port,host:port`, or `memory` for an in-process cache (single
    /// process only).
    /// Defaults to `REDIS_URL`, else the local Redis.
    pub url: SecretString,
    /// Prefix of every key, so several deployments can share one Redis.
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    /// A Redis answer slower than this counts as a miss: Redis is only ever a fast path.
    pub response_timeout_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from(
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            ),
            key_prefix: "fiscus".to_owned(),
            connect_timeout_ms: 1_000,
            response_timeout_ms: 500,
        }
    }
}

/// Logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `json` (one object a line, for collectors) or `text` (for people).
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `info,fiscus_receipts=debug`.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint; defaults to `OTEL_EXPORTER_OTLP_ENDPOINT`. No export when unset.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
            otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// Where the other services answer; services call each other only over gRPC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeersConfig {
    pub receipts: String,
    pub payments: String,
    pub shifts: String,
    pub tokens: String,
    /// Longest time to open a connection to a peer.
    pub connect_timeout_ms: u64,
}

impl Default for PeersConfig {
    fn default() -> Self {
        let url = |kind: ServiceKind| format!("http://127.0.0.1:{}", kind.default_port());
        Self {
            receipts: url(ServiceKind::Receipts),
            payments: url(ServiceKind::Payments),
            shifts: url(ServiceKind::Shifts),
            tokens: url(ServiceKind::Tokens),
            connect_timeout_ms: 2_000,
        }
    }
}

impl PeersConfig {
    /// Every peer at one address: the all-in-one `fiscus dev` process.
    pub fn all_at(url: &str) -> Self {
        Self {
            receipts: url.to_owned(),
            payments: url.to_owned(),
            shifts: url.to_owned(),
            tokens: url.to_owned(),
            ..Self::default()
        }
    }
}

/// Key material.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The key-encryption key that protects signing keys and tokens at rest:
    /// 32 bytes, as 64 hex digits. Required by the services that keep secrets (receipts, tokens).
    #[serde(deserialize_with = "lenient::optional_secret")]
    pub master_key: Option<SecretString>,
}

/// Internal identity: short-lived JWTs issued by the token service, checked by every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Only an explicit `false` turns authentication off; a warning is logged at every start.
    pub enabled: bool,
    /// The `iss` of issued tokens and the only one accepted.
    pub issuer: String,
    /// The `aud` of issued tokens and the only one accepted.
    pub audience: String,
    /// Lifetime of an issued token, at most 900 seconds.
    pub token_ttl_seconds: u64,
    /// A new signing key is made when the newest is older than this; the previous one stays in
    /// the JWKS for as long again, so tokens signed before a rotation stay valid.
    pub key_rotation_hours: u64,
    /// The callers allowed to ask for tokens (`[[auth.clients]]`).
    pub clients: Vec<AuthClient>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            issuer: "fiscus".to_owned(),
            audience: "fiscus".to_owned(),
            token_ttl_seconds: 900,
            key_rotation_hours: 24,
            clients: Vec::new(),
        }
    }
}

/// One caller: its credentials, what it may do, and which merchants it may touch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthClient {
    pub client_id: String,
    #[serde(deserialize_with = "lenient::secret")]
    pub client_secret: SecretString,
    /// e.g. `receipts:write`, `receipts:read`, `payments:write`, `shifts:write`, `reports:read`, `admin`.
    pub scopes: Vec<String>,
    /// Merchant TINs the client may touch; empty means every merchant.
    #[serde(default)]
    pub merchants: Vec<String>,
}

/// The four services, with what differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    Receipts,
    Payments,
    Shifts,
    Tokens,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 4] = [Self::Receipts, Self::Payments, Self::Shifts, Self::Tokens];

    /// Short name: used in logs, the default schema and the default SQLite file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Receipts => "receipts",
            Self::Payments => "payments",
            Self::Shifts => "shifts",
            Self::Tokens => "tokens",
        }
    }

    /// The port a service listens on when run as its own process.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Receipts => 50061,
            Self::Payments => 50062,
            Self::Shifts => 50063,
            Self::Tokens => 50064,
        }
    }

    /// The admin (metrics) port of the service when run as its own process.
    pub fn default_admin_port(self) -> u16 {
        match self {
            Self::Receipts => 9461,
            Self::Payments => 9462,
            Self::Shifts => 9463,
            Self::Tokens => 9464,
        }
    }

    /// Whether the service keeps secrets at rest and so needs `keys.master_key`.
    pub fn needs_master_key(self) -> bool {
        matches!(self, Self::Receipts | Self::Tokens)
    }
}

/// A configuration that cannot be used; its `Display` is one line naming the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl Config {
    /// Loads defaults, then the TOML files in order (each must exist; later ones override
    /// earlier ones), then `FISCUS_<SECTION>__<KEY>` variables.
    pub fn load(files: &[std::path::PathBuf]) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        for file in files {
            if !file.is_file() {
                return Err(ConfigError::new(format!(
                    "file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only `SECTION__KEY` names are configuration: other FISCUS_* variables (a script's
        // FISCUS_BIN_DIR) are not this process's to refuse.
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        Self::extract(figment.merge(env))
    }

    /// Loads from TOML text alone, by the same rules as [`Config::load`] but without the process
    /// environment (for tests and benchmarks).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::extract(Figment::new().merge(Toml::string(text)))
    }

    /// Fills what the services' sections leave unset from `text` (TOML), e.g. the dev
    /// merchants and sandboxes of `fiscus dev`. The shared sections are not touched.
    pub fn with_section_defaults(mut self, text: &str) -> Result<Self, ConfigError> {
        let sources = std::mem::take(&mut self.sources.0).join(Toml::string(text));
        Self::check_sections(&sources)?;
        self.sources = Sources(sources);
        Ok(self)
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        Self::check_sections(&figment)?;
        let mut config = figment
            .extract::<Self>()
            .map_err(|e| ConfigError::new(one_line(&figment_message(e, None))))?;
        config.sources = Sources(figment);
        Ok(config)
    }

    /// Refuses a section nobody reads (a typo would otherwise be silently ignored).
    fn check_sections(figment: &Figment) -> Result<(), ConfigError> {
        let sections: std::collections::BTreeMap<String, figment::value::Value> = figment
            .extract()
            .map_err(|e| ConfigError::new(one_line(&figment_message(e, None))))?;
        let known = |name: &str| {
            SHARED_SECTIONS.contains(&name) || ServiceKind::ALL.iter().any(|k| k.name() == name)
        };
        match sections.keys().find(|name| !known(name)) {
            Some(name) => Err(ConfigError::new(format!(
                "unknown section {name:?} (expected one of {}, {})",
                SHARED_SECTIONS.join(", "),
                ServiceKind::ALL.map(ServiceKind::name).join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// The `[<service>]` section of the configuration, read by the service that owns it;
    /// defaults when absent.
    pub fn section<T: serde::de::DeserializeOwned + Default>(
        &self,
        kind: ServiceKind,
    ) -> Result<T, ConfigError> {
        let name = kind.name();
        if !self.sources.0.contains(name) {
            return Ok(T::default());
        }
        self.sources
            .0
            .focus(name)
            .extract()
            .map_err(|e| ConfigError::new(one_line(&figment_message(e, Some(name)))))
    }

    /// Checks what the chosen service needs beyond well-formed keys.
    pub fn validate_for(&self, kind: ServiceKind) -> Result<(), ConfigError> {
        if kind.needs_master_key() {
            self.master_key()?;
        }
        if self.auth.token_ttl_seconds == 0 || self.auth.token_ttl_seconds > 900 {
            return Err(ConfigError::new(
                "auth.token_ttl_seconds must be between 1 and 900",
            ));
        }
        if self.database.max_connections < 2 {
            return Err(ConfigError::new(
                "database.max_connections must be at least 2 (the receipt journal's writer keeps one of its own)",
            ));
        }
        if self.server.request_timeout_ms == 0 {
            return Err(ConfigError::new(
                "server.request_timeout_ms must be greater than 0",
            ));
        }
        if self.server.concurrency_limit_per_connection == 0 {
            return Err(ConfigError::new(
                "server.concurrency_limit_per_connection must be greater than 0",
            ));
        }
        Ok(())
    }

    /// The key-encryption key, decoded; a missing or malformed key is a configuration error.
    pub fn master_key(&self) -> Result<MasterKey, ConfigError> {
        let secret = self.keys.master_key.as_ref().ok_or_else(|| {
            ConfigError::new(format!(
                "missing secret keys.master_key (set {ENV_PREFIX}KEYS__MASTER_KEY to 64 hex digits)"
            ))
        })?;
        MasterKey::from_hex(secret.expose_secret())
    }

    pub fn listen_for(&self, kind: ServiceKind) -> SocketAddr {
        self.server
            .listen
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], kind.default_port())))
    }

    pub fn admin_listen_for(&self, kind: ServiceKind) -> SocketAddr {
        self.admin
            .listen
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], kind.default_admin_port())))
    }

    pub fn schema_for(&self, kind: ServiceKind) -> String {
        self.database
            .schema
            .clone()
            .unwrap_or_else(|| format!("fiscus_{}", kind.name()))
    }
}

/// 32 bytes that encrypt other keys at rest. Never printed.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn from_hex(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let malformed =
            || ConfigError::new("keys.master_key must be exactly 64 hex digits (32 bytes)");
        if text.len() != 64 || !text.is_ascii() {
            return Err(malformed());
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| malformed())?;
        }
        Ok(Self(key))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// Environment values are typed by their look (`0123` becomes a number): text keys whose values
/// may be all digits, such as hex keys and secrets, accept numbers back as their text.
pub mod lenient {
    use secrecy::SecretString;
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }

    impl Lenient {
        fn into_string(self) -> String {
            match self {
                Lenient::Text(text) => text,
                Lenient::Unsigned(n) => n.to_string(),
                Lenient::Signed(n) => n.to_string(),
            }
        }
    }

    pub fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretString, D::Error> {
        Ok(SecretString::from(
            Lenient::deserialize(deserializer)?.into_string(),
        ))
    }

    pub fn optional_secret<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<Lenient>::deserialize(deserializer)?
            .map(|text| SecretString::from(text.into_string())))
    }
}

/// figment's errors as `key: problem (source)`, keys written as in the file (`server.listen`),
/// within `section` when one was read alone.
fn figment_message(error: figment::Error, section: Option<&str>) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = section
                .into_iter()
                .map(str::to_owned)
                .chain(e.path.iter().map(|p| p.to_lowercase()))
                .collect::<Vec<_>>()
                .join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(source) => format!(" (in {source})"),
                    None => format!(" (in {})", m.name),
                })
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{key}: {}{source}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Hides the secrets of a connection URL — the password of its user, and query parameters
/// such as `?password=` or `?sslpassword=` — so that the URL can be shown in an error or a log.
/// A URL that does not parse is shown as its scheme alone.
pub fn redact_url(text: &str) -> String {
    const HIDDEN: &str = "***";
    let Ok(mut url) = url::Url::parse(text) else {
        let scheme = text.split_once("://").map_or("", |(scheme, _)| scheme);
        return format!("{scheme}://{HIDDEN}");
    };
    if url.password().is_some() {
        let _ = url.set_password(Some(HIDDEN));
    }
    if url.query().is_some() {
        let secret = |key: &str| {
            let key = key.to_ascii_lowercase();
            ["password", "secret", "token", "key"]
                .iter()
                .any(|s| key.contains(s))
        };
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    HIDDEN.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let config = Config::from_toml("").expect("defaults");
        assert_eq!(config.server.request_timeout_ms, 10_000);
        assert_eq!(
            config.listen_for(ServiceKind::Shifts).port(),
            ServiceKind::Shifts.default_port()
        );
        assert_eq!(config.schema_for(ServiceKind::Receipts), "fiscus_receipts");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[server]\nlisten_adress = \"127.0.0.1:1\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listen_adress"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::from_toml("[server]\nrequest_timeout_ms = \"soon\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("server.request_timeout_ms"), "{text}");
    }

    #[test]
    fn missing_master_key_names_the_variable() {
        let config = Config::from_toml("").expect("defaults");
        let err = config.validate_for(ServiceKind::Receipts).unwrap_err();
        assert!(err.to_string().contains("FISCUS_KEYS__MASTER_KEY"), "{err}");
        assert!(config.validate_for(ServiceKind::Shifts).is_ok());
    }

    #[test]
    fn master_key_must_be_32_bytes_of_hex() {
        assert!(MasterKey::from_hex("abcd").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
        let key = MasterKey::from_hex(&"0f".repeat(32)).expect("valid");
        assert_eq!(key.to_hex(), "0f".repeat(32));
        assert_eq!(format!("{key:?}"), "MasterKey([REDACTED])");
    }

    #[test]
    fn secrets_do_not_print() {
        let config = Config::from_toml(
            "[database]\nurl = \"postgres://u:hunter2@db/x\"\n[keys]\nmaster_key = \"00\"\n",
        )
        .expect("parses");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let query = redact_url("postgres://u@db/x?sslmode=require&password=hunter2&sslpassword=p2");
        assert!(
            !query.contains("hunter2") && !query.contains("p2"),
            "{query}"
        );
        assert!(query.contains("sslmode=require"), "{query}");
        assert!(!redact_url("postgres://u:hunter2@[bad").contains("hunter2"));
    }

    #[test]
    fn service_sections_are_read_by_their_service_and_unknown_sections_refused() {
        #[derive(Debug, Default, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        struct Section {
            limit: u32,
        }
        let config = Config::from_toml("[receipts]\nlimit = 7\n").expect("parses");
        assert_eq!(
            config
                .section::<Section>(ServiceKind::Receipts)
                .unwrap()
                .limit,
            7
        );
        assert_eq!(
            config.section::<Section>(ServiceKind::Tokens).unwrap(),
            Section::default()
        );
        let typo = Config::from_toml("[receipts]\nlimt = 7\n").expect("parses");
        let err = typo
            .section::<Section>(ServiceKind::Receipts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("receipts.limt"), "{err}");
        let err = Config::from_toml("[reciepts]\nlimit = 7\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reciepts"), "{err}");
        let defaults = config
            .with_section_defaults("[receipts]\nlimit = 9\n[tokens]\nlimit = 3\n")
            .expect("joins");
        assert_eq!(
            defaults
                .section::<Section>(ServiceKind::Receipts)
                .unwrap()
                .limit,
            7
        );
        assert_eq!(
            defaults
                .section::<Section>(ServiceKind::Tokens)
                .unwrap()
                .limit,
            3
        );
    }
}
