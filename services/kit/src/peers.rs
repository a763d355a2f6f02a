//! Channels to the other services: services talk to each other only over gRPC.

use std::time::Duration;

use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use crate::config::PeersConfig;

/// Lazily connected channels to every service (possibly this very process, in `fiscus dev`).
#[derive(Clone, Debug)]
pub struct Peers {
    pub receipts: Channel,
    pub payments: Channel,
    pub shifts: Channel,
    pub tokens: Channel,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: peers.{peer} = {url:?} is not a valid URL")]
pub struct PeerError {
    peer: &'static str,
    url: String,
}

impl Peers {
    /// Builds the channels without connecting: a peer that is down fails the calls that need it
    /// (with UNAVAILABLE), not the start of this process.
    pub fn connect_lazy(config: &PeersConfig) -> Result<Self, PeerError> {
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let channel = |peer: &'static str, url: &str| {
            Endpoint::from_shared(url.to_owned())
                .map(|endpoint| {
                    endpoint
                        .connect_timeout(connect_timeout)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(30))
                        .connect_lazy()
                })
                .map_err(|_| PeerError {
                    peer,
                    url: url.to_owned(),
                })
        };
        Ok(Self {
            receipts: channel("receipts", &config.receipts)?,
            payments: channel("payments", &config.payments)?,
            shifts: channel("shifts", &config.shifts)?,
            tokens: channel("tokens", &config.tokens)?,
        })
    }
}

/// Carries the caller's trace context to the peer (W3C `traceparent` metadata).
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateTrace;

impl Interceptor for PropagateTrace {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        crate::telemetry::inject_context(request.metadata_mut());
        Ok(request)
    }
}

/// A service's own identity towards its peers: a JWT that TokenService.IssueServiceToken gives
/// the configured client, renewed before it expires and put on every call with the caller's
/// trace. Without a client id the calls go without a token (a cluster whose authentication is
/// off).
pub struct ServiceIdentity {
    tokens: Channel,
    client_id: String,
    client_secret: secrecy::SecretString,
    scopes: Vec<String>,
    /// The current token as metadata, and when it is to be renewed.
    current: tokio::sync::Mutex<
        Option<(
            tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
            std::time::Instant,
        )>,
    >,
}

/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

impl ServiceIdentity {
    /// The identity of `client_id` (empty: none), asking for `scopes` from the token service
    /// at `tokens`.
    pub fn new(
        tokens: Channel,
        client_id: &str,
        client_secret: secrecy::SecretString,
        scopes: &[&str],
    ) -> Self {
        Self {
            tokens,
            client_id: client_id.to_owned(),
            client_secret,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            current: tokio::sync::Mutex::default(),
        }
    }

    /// Puts the caller's trace and this service's token on `request`. UNAVAILABLE when the
    /// token service cannot give a token; UNAUTHENTICATED when it refuses the credentials.
    pub async fn prepare<T>(&self, request: &mut tonic::Request<T>) -> Result<(), tonic::Status> {
        crate::telemetry::inject_context(request.metadata_mut());
        if self.client_id.is_empty() {
            return Ok(());
        }
        let mut current = self.current.lock().await;
        let now = std::time::Instant::now();
        let token = match current.as_ref().filter(|(_, renew_at)| *renew_at > now) {
            Some((token, _)) => token.clone(),
            None => {
                let (token, renew_at) = self.issue().await?;
                *current = Some((token.clone(), renew_at));
                token
            }
        };
        request.metadata_mut().insert("authorization", token);
        Ok(())
    }

    async fn issue(
        &self,
    ) -> Result<
        (
            tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
            std::time::Instant,
        ),
        tonic::Status,
    > {
        use secrecy::ExposeSecret;
        let mut client =
            fiscus_proto::v1::token_service_client::TokenServiceClient::new(self.tokens.clone());
        let issued = client
            .issue_service_token(fiscus_proto::v1::IssueServiceTokenRequest {
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.expose_secret().to_owned(),
                scopes: self.scopes.clone(),
                ..Default::default()
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                    tonic::Status::unauthenticated(format!(
                        "the token service refused this service's client {}: {}",
                        self.client_id,
                        status.message()
                    ))
                }
                _ => tonic::Status::unavailable(format!(
                    "no token for this service from the token service: {}",
                    status.message()
                )),
            })?
            .into_inner();
        let lifetime = issued
            .expires_at
            .map(|at| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Duration::from_secs(u64::try_from(at.seconds).unwrap_or(0).saturating_sub(now))
            })
            .unwrap_or_default();
        let token = format!("Bearer {}", issued.access_token)
            .parse()
            .map_err(|_| {
                tonic::Status::internal("the token service issued a token that is not metadata")
            })?;
        // Renewed a minute early, or at half its life when it lives shorter than two minutes.
        let keep = if lifetime > RENEW_BEFORE * 2 {
            lifetime - RENEW_BEFORE
        } else {
            lifetime / 2
        };
        Ok((token, std::time::Instant::now() + keep))
    }
}
