//! The one error type of every upstream client, and whether a caller may retry.

use std::fmt;
use std::time::Duration;

/// Which upstream an error came from; it prefixes every error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Upstream {
    /// e-barimt's OAuth2 server (Keycloak).
    Keycloak,
    /// MIA POS terminal API.
    Mia,
    /// e-barimt: the POSAPI 3.0 daemon (`/rest/*`) and the central lookups (`/api/*`).
    Ebarimt,
    /// fiskaltrust.Middleware's POS System API (`/v2/*`).
    Fiskaltrust,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Upstream::Keycloak => "keycloak",
            Upstream::Mia => "mia",
            Upstream::Ebarimt => "ebarimt",
            Upstream::Fiskaltrust => "fiskaltrust",
        })
    }
}

/// What went wrong talking to an upstream. Messages never carry secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The upstream understood the request and said no (bad credentials, wrong OTP, unknown terminal...).
    /// Sending the same request again gives the same answer.
    #[error("{upstream} {url}: refused with HTTP {status}: {error}: {description}")]
    Refused {
        upstream: Upstream,
        url: String,
        status: u16,
        /// The upstream's machine-readable code: Keycloak's `error`, MIA's `errorCode`,
        /// e-barimt's `status` (`ERROR`, or a lookup's numeric status).
        error: String,
        /// The upstream's human-readable text: Keycloak's `error_description`, MIA's `errorMessage`,
        /// e-barimt's `message` or `msg`.
        description: String,
        /// MIA: attempts left (OTP confirmation, resends) where the upstream says so.
        left_attempts: Option<u32>,
        /// MIA: how long until the refused request may succeed (OTP resend too early).
        retry_after: Option<Duration>,
    },
    /// The upstream could not be reached or answered it is unavailable (5xx, 408, 429, time-out,
    /// connection failure). The same request may succeed later.
    #[error("{upstream} {url}: unavailable: {cause}")]
    Unavailable {
        upstream: Upstream,
        url: String,
        cause: String,
    },
    /// The upstream answered something that breaks its contract (malformed JSON, missing fields).
    #[error("{upstream} {url}: protocol violation: {detail}")]
    Protocol {
        upstream: Upstream,
        url: String,
        detail: String,
    },
    /// The client could not be built or a request could not be formed from its configuration.
    #[error("{upstream}: invalid client configuration: {detail}")]
    Config { upstream: Upstream, detail: String },
}

impl ProviderError {
    /// Whether sending the same request again may succeed: only for [`ProviderError::Unavailable`].
    pub fn is_retriable(&self) -> bool {
        matches!(self, ProviderError::Unavailable { .. })
    }

    /// The upstream this error came from.
    pub fn upstream(&self) -> Upstream {
        match self {
            ProviderError::Refused { upstream, .. }
            | ProviderError::Unavailable { upstream, .. }
            | ProviderError::Protocol { upstream, .. }
            | ProviderError::Config { upstream, .. } => *upstream,
        }
    }

    /// The upstream's error code when it refused the request.
    pub fn refusal_code(&self) -> Option<&str> {
        match self {
            ProviderError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }

    pub(crate) fn config(upstream: Upstream, detail: impl Into<String>) -> Self {
        ProviderError::Config {
            upstream,
            detail: detail.into(),
        }
    }
}

/// A call that creates something upstream (a receipt registered, a receipt signed) and got no
/// usable answer.
///
/// When `maybe_created` is true the upstream may have done it, and the caller must reconcile —
/// e-barimt: post the identical request again (the same `billIdSuffix` on the same day answers
/// the document already made); fiskaltrust: send the identical request under the same
/// `x-operation-id`, which replays — rather than send a new one. It is false only when the
/// request provably never reached the upstream: the connection could not be made (refused,
/// unreachable, DNS, TLS).
#[derive(Debug)]
pub struct Undelivered {
    pub error: ProviderError,
    pub maybe_created: bool,
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fate = if self.maybe_created {
            "may have been done: reconcile before sending anything else"
        } else {
            "never reached the upstream"
        };
        write!(f, "{} (the request {fate})", self.error)
    }
}

impl std::error::Error for Undelivered {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
