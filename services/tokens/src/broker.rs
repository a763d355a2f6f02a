//! Upstream token brokerage: one cached token per (provider, merchant, credential), renewed
//! before it expires, and fetched by exactly one caller at a time across all replicas — callers
//! in one process queue on a local gate, processes on a lease in the shared cache.
//!
//! Tokens are cached sealed under the master key (the cache key bound as associated data), with
//! a time to live below the upstream's lifetime. The cache is a fast path: when it is down the
//! broker still answers, fetching upstream with only the local gate to coalesce.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use chrono::{DateTime, Utc};
use fiscus_domain::keys;
use fiscus_kit::ApiError;
use fiscus_kit::cache::SharedCache;
use fiscus_kit::config::MasterKey;

use crate::config::{EbarimtCredential, TokensConfig};
use crate::metrics;
use fiscus_providers::{Grant, KeycloakAuth, KeycloakClient, ProviderError};
use secrecy::ExposeSecret;

/// A token for an upstream.
#[derive(Debug, Clone)]
pub struct Token {
    pub access_token: String,
    pub token_type: String,
    pub expires_at: DateTime<Utc>,
    pub from_cache: bool,
    /// fiskaltrust: the cash box the token belongs to; empty for the others.
    pub cashbox_id: String,
}

/// How often a caller that lost the lease looks for the winner's token.
const POLL: Duration = Duration::from_millis(20);

/// The channel on which replicas announce a key whose token changed or was dropped.
const CHANGES: &str = "token-changes";

/// Keeps this process's token copies honest: drops a key when any replica announces a change,
/// and drops them all (and stops answering from them) while the channel is not heard.
async fn listen(
    cache: SharedCache,
    local: Arc<Mutex<HashMap<String, Entry>>>,
    listening: Arc<AtomicBool>,
) {
    loop {
        if let Ok(mut changes) = cache.subscribe(CHANGES).await {
            listening.store(true, Ordering::SeqCst);
            while let Some(key) = changes.next().await {
                let key = String::from_utf8_lossy(&key).into_owned();
                local.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            }
            listening.store(false, Ordering::SeqCst);
            // Changes may have been missed while the channel was down.
            local.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub struct Broker {
    cache: SharedCache,
    master: MasterKey,
    config: TokensConfig,
    keycloak: KeycloakClient,
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// This process's copy of the tokens it saw last, per key. It answers first while this
    /// process hears the replicas' invalidations (so a token dropped anywhere is dropped here
    /// too), and whenever the shared cache cannot be reached, so that an outage costs one fetch
    /// per replica rather than one per call.
    local: Arc<Mutex<HashMap<String, Entry>>>,
    /// Whether the invalidation channel is subscribed right now.
    listening: Arc<AtomicBool>,
    /// This process's lease value, so that it releases only its own lease.
    owner: String,
}

/// A cached entry: when it was issued and expires (ms since the epoch), and the token.
#[derive(Clone)]
struct Entry {
    issued_at_ms: i64,
    expires_at_ms: i64,
    /// When it is renewed: its expiry less the refresh margin (and jitter).
    renew_at_ms: i64,
    token: String,
}

fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("no randomness from the OS: {e}")))?;
    Ok(bytes)
}

pub(crate) fn upstream_error(error: ProviderError, what: &str) -> ApiError {
    match error {
        ProviderError::Refused {
            error, description, ..
        } => ApiError::FailedPrecondition(format!(
            "the upstream refused {what}: {error}: {description}"
        )),
        ProviderError::Unavailable { cause, .. } => ApiError::Unavailable(format!(
            "the upstream is unavailable for {what}: {cause}; retry"
        )),
        other => ApiError::Unavailable(format!("the upstream failed for {what}: {other}; retry")),
    }
}

impl Broker {
    pub fn new(
        cache: SharedCache,
        master: MasterKey,
        config: TokensConfig,
    ) -> anyhow::Result<Self> {
        let keycloak = KeycloakClient::new(Duration::from_millis(config.upstream_timeout_ms))?;
        let local: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
        let listening = Arc::new(AtomicBool::new(false));
        tokio::spawn(listen(cache.clone(), local.clone(), listening.clone()));
        Ok(Self {
            cache,
            master,
            config,
            keycloak,
            gates: Mutex::default(),
            local,
            listening,
            owner: uuid::Uuid::new_v4().to_string(),
        })
    }

    fn ebarimt_credential(&self, tin: &str, name: &str) -> Result<&EbarimtCredential, ApiError> {
        self.config
            .ebarimt
            .iter()
            .find(|c| c.merchant_tin == tin && c.credential == name)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no e-barimt credential {name:?} is configured for merchant {tin}"
                ))
            })
    }

    /// The fiskaltrust cash box token of a merchant: configured, not fetched.
    pub fn fiskaltrust(&self, tin: &str, name: &str) -> Result<Token, ApiError> {
        let credential = self
            .config
            .fiskaltrust
            .iter()
            .find(|c| c.merchant_tin == tin && c.credential == name)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no fiskaltrust cash box {name:?} is configured for merchant {tin}"
                ))
            })?;
        Ok(Token {
            access_token: credential.access_token.expose_secret().to_owned(),
            token_type: "CashBox".to_owned(),
            cashbox_id: credential.cashbox_id.clone(),
            // Cash box tokens do not expire; they are rotated in the fiskaltrust portal.
            expires_at: Utc::now() + chrono::Duration::days(365),
            from_cache: true,
        })
    }

    fn key(tin: &str, name: &str) -> String {
        format!("token:ebarimt:{tin}:{name}")
    }

    fn gate(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// The cached token, if it has `min_ttl` left (or its upstream never gives that much).
    async fn cached(&self, key: &str, min_ttl: Duration) -> Option<Token> {
        let now_ms = Utc::now().timestamp_millis();
        // A copy due for renewal says nothing: another replica may have renewed it already.
        let local = || {
            self.local
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .filter(|e| e.renew_at_ms > now_ms)
                .cloned()
        };
        let entry = match local().filter(|_| self.listening.load(Ordering::SeqCst)) {
            Some(entry) => entry,
            None => match self.cache.get(key).await {
                Ok(stored) => {
                    let entry = self.open(key, &stored?)?;
                    self.remember(key, &entry);
                    entry
                }
                Err(e) => {
                    tracing::warn!(error = %e, "token cache unavailable; using this process's last token");
                    local()?
                }
            },
        };
        if entry.renew_at_ms <= now_ms {
            return None;
        }
        let min_ms = i64::try_from(min_ttl.as_millis()).unwrap_or(i64::MAX);
        let lifetime_ms = entry.expires_at_ms - entry.issued_at_ms;
        // A renewal can only help when the upstream's tokens live longer than what is asked.
        if lifetime_ms > min_ms && entry.expires_at_ms - now_ms < min_ms {
            return None;
        }
        Some(Token {
            access_token: entry.token,
            token_type: "Bearer".into(),
            expires_at: DateTime::<Utc>::from_timestamp_millis(entry.expires_at_ms)?,
            from_cache: true,
            cashbox_id: String::new(),
        })
    }

    fn remember(&self, key: &str, entry: &Entry) {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), entry.clone());
    }

    /// Tells every replica (this one included) that `key` changed.
    async fn announce(&self, key: &str) {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Err(e) = self.cache.publish(CHANGES, key.as_bytes()).await {
            tracing::warn!(error = %e, "cannot announce a token change; replicas renew on expiry");
        }
    }

    fn open(&self, key: &str, stored: &[u8]) -> Option<Entry> {
        if stored.len() < 24 {
            return None;
        }
        let (times, sealed) = stored.split_at(24);
        let time = |i: usize| {
            times[i * 8..(i + 1) * 8]
                .try_into()
                .ok()
                .map(i64::from_be_bytes)
        };
        let token = keys::open(self.master.bytes(), sealed, key.as_bytes()).ok()?;
        Some(Entry {
            issued_at_ms: time(0)?,
            expires_at_ms: time(1)?,
            renew_at_ms: time(2)?,
            token: String::from_utf8(token).ok()?,
        })
    }

    /// An e-barimt token: cached, or fetched once for everybody who asks at the same time.
    #[tracing::instrument(skip(self))]
    pub async fn ebarimt(
        &self,
        tin: &str,
        name: &str,
        min_ttl: Duration,
    ) -> Result<Token, ApiError> {
        let credential = self.ebarimt_credential(tin, name)?;
        self.obtain(&Self::key(tin, name), min_ttl, || {
            self.fetch_keycloak(credential)
        })
        .await
    }

    /// The token cached under `key`, or the one `fetch` gets: `fetch` runs once at a time for a
    /// key across all replicas, and everybody else waits for its answer.
    pub async fn obtain<F, Fut>(
        &self,
        key: &str,
        min_ttl: Duration,
        fetch: F,
    ) -> Result<Token, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Duration), ApiError>>,
    {
        let provider = metrics::provider(key);
        if let Some(token) = self.cached(key, min_ttl).await {
            metrics::cache(provider, "hit");
            return Ok(token);
        }
        metrics::cache(provider, "miss");
        let gate = self.gate(key);
        let _turn = gate.lock().await;
        if let Some(token) = self.cached(key, min_ttl).await {
            return Ok(token);
        }
        let lease_key = format!("lease:{key}");
        let lease = Duration::from_millis(self.config.lease_ms.max(100));
        let give_up = tokio::time::Instant::now() + lease * 2;
        loop {
            match self
                .cache
                .set_if_absent(&lease_key, self.owner.as_bytes(), lease)
                .await
            {
                Ok(true) => {
                    // The previous holder may have stored the token just before we took over.
                    let fetched = match self.cached(key, min_ttl).await {
                        Some(token) => Ok(token),
                        None => self.fetch_and_store(key, &fetch).await,
                    };
                    let _ = self
                        .cache
                        .delete_if_equals(&lease_key, self.owner.as_bytes())
                        .await;
                    return fetched;
                }
                Ok(false) => {
                    tokio::time::sleep(POLL).await;
                    if let Some(token) = self.cached(key, min_ttl).await {
                        return Ok(token);
                    }
                    if tokio::time::Instant::now() > give_up {
                        return Err(ApiError::Unavailable(format!(
                            "another replica has been fetching {key} for too long; retry"
                        )));
                    }
                }
                Err(e) => {
                    // Without the shared cache only this process's gate coalesces: still correct.
                    tracing::warn!(error = %e, "token cache unavailable; fetching without a lease");
                    return self.fetch_and_store(key, &fetch).await;
                }
            }
        }
    }

    async fn fetch_keycloak(
        &self,
        credential: &EbarimtCredential,
    ) -> Result<(String, Duration), ApiError> {
        let grant = match (&credential.username, &credential.password) {
            (Some(username), Some(password)) => Grant::Password {
                username: username.clone(),
                password: password.clone(),
            },
            _ => Grant::ClientCredentials,
        };
        let auth = KeycloakAuth {
            auth_url: credential.auth_url.clone(),
            realm: credential.auth_realm.clone(),
            client_id: credential.auth_client_id.clone(),
            client_secret: credential.auth_client_secret.clone(),
            grant,
        };
        let what = format!(
            "credential {:?} of merchant {}",
            credential.credential, credential.merchant_tin
        );
        let granted = self
            .keycloak
            .fetch_token(&auth)
            .await
            .map_err(|e| upstream_error(e, &what))?;
        Ok((
            granted.access_token.expose_secret().to_owned(),
            granted.expires_in,
        ))
    }

    async fn fetch_and_store<F, Fut>(&self, key: &str, fetch: &F) -> Result<Token, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Duration), ApiError>>,
    {
        let fetched = fetch().await;
        metrics::fetched(metrics::provider(key), fetched.is_ok());
        let (token, lifetime) = fetched?;
        self.store(key, &token, lifetime).await
    }

    /// Caches a token that lives `lifetime` from now, renewed a margin early.
    pub async fn store(
        &self,
        key: &str,
        token: &str,
        lifetime: Duration,
    ) -> Result<Token, ApiError> {
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(lifetime).unwrap_or_default();
        // Renew `refresh_margin` early, less up to 10 % jitter so replicas do not renew in step;
        // a token shorter-lived than twice the margin is kept for half its life.
        let margin = Duration::from_secs(self.config.refresh_margin_seconds);
        let jitter = margin.mul_f64(f64::from(random::<1>()?[0]) / 2550.0);
        let keep = if lifetime > margin * 2 {
            lifetime - margin - jitter
        } else {
            lifetime / 2
        };
        let entry = Entry {
            issued_at_ms: now.timestamp_millis(),
            expires_at_ms: expires_at.timestamp_millis(),
            renew_at_ms: (now + chrono::Duration::from_std(keep).unwrap_or_default())
                .timestamp_millis(),
            token: token.to_owned(),
        };
        let mut value = Vec::with_capacity(24 + token.len() + 28);
        for time in [entry.issued_at_ms, entry.expires_at_ms, entry.renew_at_ms] {
            value.extend_from_slice(&time.to_be_bytes());
        }
        value.extend_from_slice(&keys::seal(
            self.master.bytes(),
            random()?,
            token.as_bytes(),
            key.as_bytes(),
        ));
        if let Err(e) = self.cache.set(key, &value, keep).await {
            tracing::warn!(error = %e, "token cache unavailable; the token is not shared this time");
        }
        self.announce(key).await;
        self.remember(key, &entry);
        tracing::info!(key, ?lifetime, "upstream token fetched");
        Ok(Token {
            access_token: token.to_owned(),
            token_type: "Bearer".into(),
            expires_at,
            from_cache: false,
            cashbox_id: String::new(),
        })
    }

    /// Forgets the token under `key` (a session that ended).
    pub async fn forget(&self, key: &str) {
        let _ = self.cache.delete(key).await;
        self.announce(key).await;
    }

    /// Drops the cached e-barimt token only if it is the one the upstream refused.
    pub async fn invalidate_ebarimt(
        &self,
        tin: &str,
        name: &str,
        refused: &str,
    ) -> Result<bool, ApiError> {
        self.ebarimt_credential(tin, name)?;
        Ok(self.invalidate(&Self::key(tin, name), refused).await)
    }

    /// Drops the token under `key` only if it is `refused`; `true` when it was dropped.
    pub async fn invalidate(&self, key: &str, refused: &str) -> bool {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, entry| k != key || entry.token != refused);
        let Ok(Some(stored)) = self.cache.get(key).await else {
            return false;
        };
        let dropped = match self.open(key, &stored) {
            Some(entry) if entry.token == refused => self
                .cache
                .delete_if_equals(key, &stored)
                .await
                .unwrap_or(false),
            _ => false,
        };
        if dropped {
            self.announce(key).await;
        }
        dropped
    }
}
