//! Internal identity: short-lived EdDSA JWTs for configured clients, and the JWKS that every
//! service verifies them with. Keys rotate; the previous key stays published for an overlap.

use std::sync::RwLock;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use fiscus_domain::keys::{self, ReceiptSigner};
use fiscus_kit::auth::{ALL_MERCHANTS, Claims};
use fiscus_kit::config::{AuthConfig, MasterKey};
use fiscus_kit::db::Database;
use fiscus_kit::{ApiError, with_db};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), followed by the 32-byte seed.
const PKCS8_ED25519: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, Clone, sqlx::FromRow)]
struct StoredKey {
    kid: String,
    public_key: Vec<u8>,
    sealed_secret: Vec<u8>,
    created_at_us: i64,
}

/// The key that signs now.
struct ActiveKey {
    kid: String,
    created_at_us: i64,
    encoding: EncodingKey,
}

pub struct Identity {
    db: Database,
    master: MasterKey,
    config: AuthConfig,
    active: RwLock<Option<std::sync::Arc<ActiveKey>>>,
}

/// An issued token.
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub scopes: Vec<String>,
    pub merchants: Vec<String>,
}

fn same_secret(a: &str, b: &str) -> bool {
    // Compare digests so the time taken says nothing about where the secrets differ.
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Identity {
    pub fn new(db: Database, master: MasterKey, config: AuthConfig) -> Self {
        Self {
            db,
            master,
            config,
            active: RwLock::default(),
        }
    }

    fn rotation(&self) -> Duration {
        Duration::from_secs(self.config.key_rotation_hours.max(1) * 3600)
    }

    /// The newest key, made when there is none or the newest is due for rotation.
    async fn signing_key(&self, now: DateTime<Utc>) -> anyhow::Result<std::sync::Arc<ActiveKey>> {
        let due = |created_at_us: i64| {
            now.timestamp_micros() - created_at_us
                >= i64::try_from(self.rotation().as_micros()).unwrap_or(i64::MAX)
        };
        if let Some(active) = self
            .active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            && !due(active.created_at_us)
        {
            return Ok(active);
        }
        let mut newest = self.newest().await?;
        if newest.as_ref().is_none_or(|k| due(k.created_at_us)) {
            self.create_key(now).await?;
            newest = self.newest().await?;
        }
        let stored = newest.context("no JWT signing key after creating one")?;
        let seed = keys::open(
            self.master.bytes(),
            &stored.sealed_secret,
            stored.kid.as_bytes(),
        )
        .with_context(|| format!("opening JWT key {}", stored.kid))?;
        let mut der = PKCS8_ED25519.to_vec();
        der.extend_from_slice(&seed);
        let active = std::sync::Arc::new(ActiveKey {
            kid: stored.kid,
            created_at_us: stored.created_at_us,
            encoding: EncodingKey::from_ed_der(&der),
        });
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Some(active.clone());
        Ok(active)
    }

    async fn newest(&self) -> Result<Option<StoredKey>, sqlx::Error> {
        with_db!(&self.db, |pool| sqlx::query_as(
            "SELECT kid, public_key, sealed_secret, created_at_us FROM jwt_keys \
             ORDER BY created_at_us DESC LIMIT 1"
        )
        .fetch_optional(pool)
        .await)
    }

    async fn create_key(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let mut seed = [0u8; 32];
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let signer = ReceiptSigner::from_seed(seed);
        let kid = format!("jwt-{}", &signer.key_id()["ed25519:".len()..]);
        let sealed = keys::seal(self.master.bytes(), nonce, &seed, kid.as_bytes());
        with_db!(&self.db, |pool| {
            sqlx::query(
            "INSERT INTO jwt_keys (kid, public_key, sealed_secret, created_at_us) VALUES ($1, $2, $3, $4)"
        )
        .bind(&kid)
        .bind(&signer.public_key()[..])
        .bind(&sealed)
        .bind(now.timestamp_micros())
        .execute(pool)
        .await
        .map(drop)
        })?;
        tracing::info!(%kid, "JWT signing key created");
        Ok(())
    }

    /// The published keys: every key made within two rotation periods, newest first.
    pub async fn published(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<(String, String)>> {
        self.signing_key(now).await?;
        let since = now.timestamp_micros()
            - 2 * i64::try_from(self.rotation().as_micros()).unwrap_or(i64::MAX / 4);
        let keys: Vec<StoredKey> = with_db!(&self.db, |pool| sqlx::query_as(
            "SELECT kid, public_key, sealed_secret, created_at_us FROM jwt_keys \
             WHERE created_at_us >= $1 ORDER BY created_at_us DESC"
        )
        .bind(since)
        .fetch_all(pool)
        .await)?;
        Ok(keys
            .into_iter()
            .map(|k| (k.kid, URL_SAFE_NO_PAD.encode(&k.public_key)))
            .collect())
    }

    /// A token for a configured client whose secret matches.
    pub async fn issue(
        &self,
        client_id: &str,
        client_secret: &str,
        requested: &[String],
        audience: &str,
        now: DateTime<Utc>,
    ) -> Result<Issued, ApiError> {
        use secrecy::ExposeSecret;
        let client = self
            .config
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .filter(|c| same_secret(c.client_secret.expose_secret(), client_secret))
            .ok_or_else(|| ApiError::Unauthenticated("unknown client or wrong secret".into()))?;
        let scopes: Vec<String> = if requested.is_empty() {
            client.scopes.clone()
        } else if let Some(extra) = requested.iter().find(|s| !client.scopes.contains(s)) {
            return Err(ApiError::PermissionDenied(format!(
                "client {client_id} may not have scope {extra}"
            )));
        } else {
            requested.to_vec()
        };
        if !audience.is_empty() && audience != self.config.audience {
            return Err(ApiError::invalid(
                "audience",
                format!("tokens are issued for {:?} only", self.config.audience),
            ));
        }
        let merchants = if client.merchants.is_empty() {
            vec![ALL_MERCHANTS.to_owned()]
        } else {
            client.merchants.clone()
        };
        let key = self.signing_key(now).await?;
        let iat = u64::try_from(now.timestamp()).unwrap_or(0);
        let exp = iat + self.config.token_ttl_seconds.min(900);
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: client_id.to_owned(),
            aud: self.config.audience.clone(),
            exp,
            nbf: iat,
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: scopes.join(" "),
            merchants: merchants.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("signing a token: {e}")))?;
        Ok(Issued {
            token,
            expires_at: DateTime::<Utc>::from_timestamp(i64::try_from(exp).unwrap_or(0), 0)
                .unwrap_or(now),
            scopes,
            merchants,
        })
    }
}
