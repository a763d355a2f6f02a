//! Internal identity: short-lived EdDSA JWTs for configured clients, and the JWKS that every
//! service verifies them with. Keys rotate; the previous key stays published for an overlap.

use std::sync::RwLock;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use fiscus_domain::keys::{self, ReceiptSigner};
use fiscus_kit::auth::{ALL_MERCHANTS, Claims};
use fiscus_kit::config::{AuthConfig, MasterKey};
use fiscus_kit::db::Database;
use fiscus_kit::{ApiError, with_db};
use fiscus_proto::v1 as pb;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use sha2::{Digest, Sha256};

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

/// The key jsonwebtoken signs with, from a stored key's sealed seed.
fn encoding_key(master: &[u8; 32], stored: &StoredKey) -> anyhow::Result<EncodingKey> {
    let seed = keys::open(master, &stored.sealed_secret, stored.kid.as_bytes())
        .with_context(|| format!("opening JWT key {}", stored.kid))?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| anyhow::anyhow!("JWT key {} has a malformed secret", stored.kid))?;
    let pkcs8 = ReceiptSigner::from_seed(seed)
        .to_pkcs8_der()
        .with_context(|| format!("encoding JWT key {}", stored.kid))?;
    Ok(EncodingKey::from_ed_der(pkcs8.as_bytes()))
}

/// The public JWK (RFC 8037) of a stored key (32 raw bytes).
fn jwk(kid: String, public_key: &[u8]) -> anyhow::Result<Jwk> {
    // jsonwebtoken's Ed25519 `DecodingKey` holds the raw key, which is what a JWK's `x` carries
    // (despite the constructor's name, `from_ed_der` takes no DER).
    let mut jwk = Jwk::from_decoding_key(
        &DecodingKey::from_ed_der(public_key),
        Some(Algorithm::EdDSA),
    )
    .with_context(|| format!("JWT key {kid} has a malformed public key"))?;
    jwk.common.key_id = Some(kid);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(jwk)
}

/// `GetJwks`: each key's fields are read back from its JSON, so the two forms cannot disagree.
pub fn jwks_response(jwks: &JwkSet) -> Result<pb::GetJwksResponse, serde_json::Error> {
    let keys = jwks
        .keys
        .iter()
        .map(|jwk| {
            let json = serde_json::to_value(jwk)?;
            let member = |name: &str| {
                json.get(name)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Ok(pb::Jwk {
                kid: member("kid"),
                kty: member("kty"),
                crv: member("crv"),
                alg: member("alg"),
                r#use: member("use"),
                x: member("x"),
                y: member("y"),
            })
        })
        .collect::<Result<_, serde_json::Error>>()?;
    Ok(pb::GetJwksResponse {
        keys,
        jwks_json: serde_json::to_string(jwks)?,
    })
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
        let active = std::sync::Arc::new(ActiveKey {
            encoding: encoding_key(self.master.bytes(), &stored)?,
            kid: stored.kid,
            created_at_us: stored.created_at_us,
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
    pub async fn published(&self, now: DateTime<Utc>) -> anyhow::Result<JwkSet> {
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
        Ok(JwkSet {
            keys: keys
                .into_iter()
                .map(|k| jwk(k.kid, &k.public_key))
                .collect::<anyhow::Result<_>>()?,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Validation;

    // RFC 8037 appendix A's key (RFC 8032 section 7.1, test 1), stored as `create_key` stores it.
    // `x` is the RFC's; the sealed seed (master key [3; 32], nonce [4; 12], the kid as
    // associated data) was computed by Python's `cryptography`.
    const KID: &str = "jwt-21fe31dfa154a261";
    const PUBLIC: [u8; 32] = [
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ];
    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const SEALED: &str = "040404040404040404040404eea169e8201ab457888e09fc3da8cee5e716f5e2\
        fa531e3c8c778ef515193c56b06a247d9c9bca9279ce16493557eee0";

    fn stored_key() -> StoredKey {
        StoredKey {
            kid: KID.into(),
            public_key: PUBLIC.to_vec(),
            sealed_secret: (0..SEALED.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&SEALED[i..i + 2], 16).unwrap())
                .collect(),
            created_at_us: 0,
        }
    }

    #[test]
    fn a_stored_key_is_published_as_the_known_jwk() {
        let jwks = JwkSet {
            keys: vec![jwk(KID.into(), &PUBLIC).unwrap()],
        };
        let response = jwks_response(&jwks).unwrap();
        assert_eq!(
            response.keys,
            [pb::Jwk {
                kid: KID.into(),
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                alg: "EdDSA".into(),
                r#use: "sig".into(),
                x: X.into(),
                y: String::new(),
            }]
        );
        // The members the JWKS has always had; their order means nothing in JSON.
        let document: serde_json::Value = serde_json::from_str(&response.jwks_json).unwrap();
        assert_eq!(
            document,
            serde_json::json!({"keys": [{
                "kid": KID, "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "x": X,
            }]})
        );
        assert!(jwk(KID.into(), &PUBLIC[..31]).is_err());
    }

    #[test]
    fn a_stored_key_signs_tokens_its_published_jwk_verifies() {
        let stored = stored_key();
        let encoding = encoding_key(&[3; 32], &stored).unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(KID.into());
        let claims = serde_json::json!({"sub": "a", "exp": 4_000_000_000u64});
        let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();

        let published = jwk(stored.kid, &stored.public_key).unwrap();
        let decoding = DecodingKey::from_jwk(&published).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(decoded.claims, claims);

        assert!(encoding_key(&[5; 32], &stored_key()).is_err());
    }
}
