//! Internal identity on every server: JWTs issued by the token service, checked on every RPC.
//!
//! The algorithm is pinned (EdDSA); signature, `iss`, `aud`, `exp` and `nbf` are checked; keys are
//! found by `kid` in the token service's JWKS, cached and fetched again when an unknown `kid`
//! shows up. Each RPC needs one scope; handlers then check every merchant a request names
//! against the token's merchants with [`check_merchant`].

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Layer, Service};

/// The scope that allows everything.
pub const ADMIN: &str = "admin";
/// The merchant list entry that allows every merchant.
pub const ALL_MERCHANTS: &str = "*";

/// RPCs of every server that any caller may reach without a token.
const OPEN: [&str; 2] = ["/grpc.health.v1.Health/", "/grpc.reflection."];

/// The scope each RPC of one hosted service needs: each service crate says its own.
#[derive(Debug, Clone, Copy)]
pub struct ServiceScopes {
    /// The fully-qualified gRPC service name, e.g. `fiscus.v1.ReceiptService`.
    pub service: &'static str,
    /// The scope `method` needs; `None` for an RPC every caller may reach.
    pub scope: fn(method: &str) -> Option<String>,
}

/// The usual rule: `<area>:read` for queries (Get, List, Watch, Verify, Export, Render),
/// `<area>:write` for the rest.
pub fn read_or_write(area: &str, method: &str) -> String {
    let read = ["Get", "List", "Watch", "Verify", "Export", "Render"]
        .iter()
        .any(|prefix| method.starts_with(prefix));
    format!("{area}:{}", if read { "read" } else { "write" })
}

/// The scope an RPC needs by the hosted services' rules; `admin` for a service nobody named,
/// `None` for RPCs open to everyone.
fn required_scope(scopes: &[ServiceScopes], path: &str) -> Option<String> {
    if OPEN.iter().any(|open| path.starts_with(open)) {
        return None;
    }
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Some(ADMIN.to_owned());
    };
    match scopes.iter().find(|s| s.service == service) {
        Some(rules) => (rules.scope)(method),
        None => Some(ADMIN.to_owned()),
    }
}

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The client id.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Merchant TINs the holder may touch; `["*"]` for every merchant.
    pub merchants: Vec<String>,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope || s == ADMIN)
    }

    pub fn may_touch(&self, merchant_tin: &str) -> bool {
        self.merchants
            .iter()
            .any(|m| m == ALL_MERCHANTS || m == merchant_tin)
    }
}

/// Where the issuer's public keys come from.
pub trait KeySource: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, Status>>;
}

/// The token service's `GetJwks`, over gRPC.
pub struct PeerKeys(pub tonic::transport::Channel);

impl KeySource for PeerKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, Status>> {
        // The fetch is part of the request being authenticated, so it carries that request's trace.
        let mut client =
            fiscus_proto::v1::token_service_client::TokenServiceClient::with_interceptor(
                self.0.clone(),
                crate::peers::PropagateTrace,
            );
        Box::pin(async move {
            let jwks = client
                .get_jwks(fiscus_proto::v1::GetJwksRequest::default())
                .await?
                .into_inner();
            serde_json::from_str(&jwks.jwks_json).map_err(|e| {
                Status::internal(format!("the token service's JWKS is malformed: {e}"))
            })
        })
    }
}

/// The id and verifying key of a published JWK; `None` for anything but an Ed25519 signing key
/// with an id.
fn decoding_key(jwk: &Jwk) -> Option<(String, DecodingKey)> {
    let ed25519 = matches!(&jwk.algorithm,
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519);
    let eddsa = jwk
        .common
        .key_algorithm
        .is_none_or(|alg| alg == KeyAlgorithm::EdDSA);
    let signs = jwk
        .common
        .public_key_use
        .as_ref()
        .is_none_or(|u| *u == PublicKeyUse::Signature);
    if !(ed25519 && eddsa && signs) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    // jsonwebtoken's verifier takes the first 32 bytes of an Ed25519 key and panics on fewer.
    if key.try_get_as_bytes().ok()?.len() != 32 {
        return None;
    }
    Some((jwk.common.key_id.clone()?, key))
}

/// Fetching keys again on an unknown `kid` happens at most this often.
const REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// Tokens whose signature was checked are remembered (until they expire) up to this many;
/// checking a signature costs far more than the rest of a cached RPC.
const VERIFIED_CAPACITY: usize = 10_000;

/// Checks tokens against the issuer's keys.
pub struct TokenVerifier {
    validation: Validation,
    source: Box<dyn KeySource>,
    keys: RwLock<HashMap<String, Arc<DecodingKey>>>,
    fetched_at: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Tokens already verified, with their claims; emptied whenever the key set is fetched again,
    /// so a key that leaves the JWKS takes its tokens with it.
    verified: RwLock<HashMap<String, Claims>>,
    /// The scopes of the services this process hosts.
    scopes: Vec<ServiceScopes>,
}

fn unauthenticated(message: impl Into<String>) -> Status {
    Status::new(Code::Unauthenticated, message)
}

impl TokenVerifier {
    pub fn new(
        issuer: &str,
        audience: &str,
        source: Box<dyn KeySource>,
        scopes: Vec<ServiceScopes>,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.required_spec_claims = ["exp", "nbf", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect::<HashSet<_>>();
        Self {
            validation,
            source,
            keys: RwLock::default(),
            fetched_at: Mutex::default(),
            fetch_lock: tokio::sync::Mutex::new(()),
            verified: RwLock::default(),
            scopes,
        }
    }

    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    /// The key named `kid`, fetching the key set again when it is unknown (rate-limited).
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, Status> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let _one_fetch = self.fetch_lock.lock().await;
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let recent = self
            .fetched_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < REFETCH_INTERVAL);
        if !recent {
            let fetched = self.source.fetch().await.map_err(|e| {
                Status::unavailable(format!(
                    "cannot fetch the token service's keys: {}",
                    e.message()
                ))
            })?;
            let keys: HashMap<_, _> = fetched
                .keys
                .iter()
                .filter_map(decoding_key)
                .map(|(kid, key)| (kid, Arc::new(key)))
                .collect();
            *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
            self.verified
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            *self.fetched_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        self.cached(kid)
            .ok_or_else(|| unauthenticated(format!("token signed with unknown key {kid:?}")))
    }

    /// The claims of a valid token.
    pub async fn verify(&self, token: &str) -> Result<Claims, Status> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let remembered = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned();
        if let Some(claims) = remembered {
            // The signature and the fixed claims were checked; time moves on.
            if claims.exp + self.validation.leeway > now
                && claims.nbf <= now + self.validation.leeway
            {
                return Ok(claims);
            }
            return Err(unauthenticated("token refused: ExpiredSignature"));
        }
        let claims = self.verify_signature(token).await?;
        let mut verified = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, c| c.exp > now);
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    async fn verify_signature(&self, token: &str) -> Result<Claims, Status> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| unauthenticated(format!("malformed token: {e}")))?;
        if header.alg != Algorithm::EdDSA {
            return Err(unauthenticated(format!(
                "token algorithm {:?} is not accepted (EdDSA only)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthenticated("token has no key id (kid)"))?;
        let key = self.key(&kid).await?;
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| unauthenticated(format!("token refused: {e}")))
    }

    /// Authenticates and authorizes one request by its path and `authorization` header.
    pub async fn authorize(
        &self,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<Option<Claims>, Status> {
        let Some(scope) = required_scope(&self.scopes, path) else {
            return Ok(None);
        };
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("missing `authorization: Bearer <token>` metadata"))?;
        let claims = self.verify(token.trim()).await?;
        if !claims.has_scope(&scope) {
            return Err(Status::permission_denied(format!(
                "token of {} lacks scope {scope}",
                claims.sub
            )));
        }
        Ok(Some(claims))
    }
}

/// Who is calling, as the authentication layer found: handlers check every merchant a request
/// names with [`Caller::check`]. Without authentication (turned off by configuration) every
/// merchant is allowed.
#[derive(Debug, Clone, Default)]
pub struct Caller(Option<Claims>);

impl Caller {
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        Self(request.extensions().get::<Claims>().cloned())
    }

    /// Refuses a merchant the caller's token does not cover.
    pub fn check(&self, merchant_tin: &str) -> Result<(), Status> {
        match &self.0 {
            Some(claims) if !claims.may_touch(merchant_tin) => {
                Err(Status::permission_denied(format!(
                    "token of {} may not touch merchant {merchant_tin}",
                    claims.sub
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a caller limited to some merchants when a request spans all of them.
    pub fn check_all(&self) -> Result<(), Status> {
        match &self.0 {
            Some(claims) if !claims.may_touch(ALL_MERCHANTS) => {
                Err(Status::permission_denied(format!(
                    "token of {} is limited to some merchants: name one",
                    claims.sub
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The tower layer that authenticates every RPC before it reaches a service.
#[derive(Clone)]
pub struct AuthLayer(pub Arc<TokenVerifier>);

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            verifier: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    verifier: Arc<TokenVerifier>,
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            match verifier
                .authorize(request.uri().path(), request.headers())
                .await
            {
                Ok(claims) => {
                    if let Some(claims) = claims {
                        request.extensions_mut().insert(claims);
                    }
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    // RFC 8037 appendix A's key (RFC 8032 section 7.1, test 1): its PKCS#8 from Python's
    // `cryptography`, and the JWKS exactly as the token service wrote it by hand before.
    const PKCS8: &str = "302e020100300506032b6570042204209d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const JWKS: &str = r#"{"keys":[{"alg":"EdDSA","crv":"Ed25519","kid":"jwt-21fe31dfa154a261","kty":"OKP","use":"sig","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    struct StaticKeys(JwkSet);

    impl KeySource for StaticKeys {
        fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, Status>> {
            Box::pin(async { Ok(self.0.clone()) })
        }
    }

    fn token(kid: &str) -> String {
        let der: Vec<u8> = (0..PKCS8.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&PKCS8[i..i + 2], 16).unwrap())
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = Claims {
            iss: "fiscus".into(),
            sub: "client".into(),
            aud: "fiscus".into(),
            exp: now + 60,
            nbf: now,
            iat: now,
            jti: "j".into(),
            scope: "receipts:read".into(),
            merchants: vec![ALL_MERCHANTS.into()],
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der)).unwrap()
    }

    #[tokio::test]
    async fn tokens_verify_with_the_jwks_the_token_service_has_always_served() {
        let verifier = TokenVerifier::new(
            "fiscus",
            "fiscus",
            Box::new(StaticKeys(serde_json::from_str(JWKS).unwrap())),
            Vec::new(),
        );
        let claims = verifier
            .verify(&token("jwt-21fe31dfa154a261"))
            .await
            .unwrap();
        assert_eq!(claims.sub, "client");
        let unknown = verifier.verify(&token("jwt-other")).await.unwrap_err();
        assert_eq!(unknown.code(), Code::Unauthenticated);
    }

    #[test]
    fn only_ed25519_signing_keys_of_32_bytes_verify() {
        let key = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
            edit(&mut set["keys"][0]);
            let set: JwkSet = serde_json::from_value(set).unwrap();
            decoding_key(&set.keys[0]).map(|(kid, _)| kid)
        };
        assert_eq!(key(&|_| {}).as_deref(), Some("jwt-21fe31dfa154a261"));
        assert!(key(&|k| k["alg"] = "RS256".into()).is_none());
        assert!(key(&|k| k["use"] = "enc".into()).is_none());
        assert!(key(&|k| k["crv"] = "Ed448".into()).is_none());
        assert!(key(&|k| k.as_object_mut().unwrap().remove("kid").map(drop).unwrap()).is_none());
        // 31 bytes: jsonwebtoken would panic verifying with it.
        assert!(key(&|k| k["x"] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHUQ".into()).is_none());
        assert!(
            key(&|k| {
                k.as_object_mut().unwrap().remove("alg");
                k.as_object_mut().unwrap().remove("use");
            })
            .is_some()
        );
    }

    #[test]
    fn each_rpc_needs_the_scope_its_service_names() {
        let scopes = [
            ServiceScopes {
                service: "fiscus.v1.ReceiptService",
                scope: |m| Some(read_or_write("receipts", m)),
            },
            ServiceScopes {
                service: "fiscus.v1.TokenService",
                scope: |m| (m != "IssueServiceToken").then(|| read_or_write("tokens", m)),
            },
        ];
        let scope = |p: &str| required_scope(&scopes, p);
        assert_eq!(
            scope("/fiscus.v1.ReceiptService/SignReceipt").as_deref(),
            Some("receipts:write")
        );
        assert_eq!(
            scope("/fiscus.v1.ReceiptService/GetReceipt").as_deref(),
            Some("receipts:read")
        );
        assert_eq!(
            scope("/fiscus.v1.ReceiptService/VerifyJournal").as_deref(),
            Some("receipts:read")
        );
        assert_eq!(scope("/fiscus.v1.TokenService/IssueServiceToken"), None);
        assert_eq!(scope("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            scope("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            None
        );
        assert_eq!(
            scope("/fiscus.v1.ShiftService/CloseShift").as_deref(),
            Some(ADMIN)
        );
        assert_eq!(scope("/some.Other/Thing").as_deref(), Some(ADMIN));
    }

    #[test]
    fn admin_has_every_scope_and_star_every_merchant() {
        let claims = Claims {
            iss: "fiscus".into(),
            sub: "ops".into(),
            aud: "fiscus".into(),
            exp: 0,
            nbf: 0,
            iat: 0,
            jti: String::new(),
            scope: "receipts:read admin".into(),
            merchants: vec![ALL_MERCHANTS.into()],
        };
        assert!(claims.has_scope("payments:write"));
        assert!(claims.may_touch("123"));
        let narrow = Claims {
            scope: "receipts:read".into(),
            merchants: vec!["111".into()],
            ..claims
        };
        assert!(!narrow.has_scope("receipts:write"));
        assert!(narrow.may_touch("111") && !narrow.may_touch("222"));
    }
}
