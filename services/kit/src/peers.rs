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
