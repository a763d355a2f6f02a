//! The fiskaltrust client: `POST /v2/sign` and `GET /v2/journal/{queueId}/{type}` of the POS
//! System API, each one HTTP request, never retried here.
//!
//! **Idempotency.** Every sign call carries an `x-operation-id`; the middleware answers a
//! repeat of the identical request under the same id with the answer it gave first, without
//! signing again. So an answer that was lost is recovered by sending the identical request under
//! the same id ([`Undelivered::maybe_created`]). The same id with another body is a conflict
//! (409), and a repeat that arrives while the first is still being processed is answered 422:
//! [`Signed::Conflict`] and [`Signed::InProgress`], never a new receipt.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use super::wire::{ReceiptRequest, ReceiptResponse};
use super::{JournalType, Problem, headers, paths};
use crate::error::{ProviderError, Undelivered, Upstream};
use crate::http::{self, StatusClass};

const UPSTREAM: Upstream = Upstream::Fiskaltrust;

/// A cash box's credentials, from the fiskaltrust portal (brokered by TokenService).
#[derive(Clone, Debug)]
pub struct Credentials {
    pub cashbox_id: String,
    pub access_token: SecretString,
}

/// One sign operation: its idempotency key and where it comes from.
#[derive(Clone, Copy, Debug)]
pub struct Operation<'a> {
    /// The same on every attempt of one receipt.
    pub id: uuid::Uuid,
    pub terminal_id: &'a str,
    pub pos_system_id: Option<&'a str>,
    /// How long the middleware may work on it (`x-operation-lifetime`).
    pub lifetime: Duration,
}

/// What the middleware made of a sign request.
#[derive(Clone, Debug, PartialEq)]
pub enum Signed {
    /// Processed: the receipt's identification, signatures and the queue's state.
    Done(ReceiptResponse),
    /// Refused as it stands (400 and other 4xx): sending it again gives the same answer.
    Refused(Problem),
    /// The cash box's credentials were not accepted (401, 403).
    Unauthorized(Problem),
    /// The operation id was used before with another request (409): nothing was signed for
    /// this one.
    Conflict(Problem),
    /// A request with this operation id is still being processed (422): ask again later.
    InProgress(Problem),
}

/// Talks to one fiskaltrust.Middleware (a cloud cash box's POS System API, or a local one).
/// Cheap to clone; clones share their connections.
///
/// Sign calls keep no idle connections, for the reason the e-barimt client gives: a request on
/// a connection the server already closed cannot be told apart from one it received.
#[derive(Clone, Debug)]
pub struct FiskaltrustClient {
    sign: reqwest::Client,
    journal: reqwest::Client,
    base: reqwest::Url,
    timeout: Duration,
}

impl FiskaltrustClient {
    /// A client of the middleware at `base_url` (below which `/v2/…` lies), whose sign calls
    /// give up after `timeout`; a journal stream may last as long as it keeps coming, each read
    /// waiting at most `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ProviderError> {
        Ok(Self {
            sign: http::build_client_with(UPSTREAM, timeout, |builder| {
                builder.pool_max_idle_per_host(0)
            })?,
            journal: http::build_client_with(UPSTREAM, timeout, |builder| {
                builder
                    .timeout(Duration::from_secs(24 * 3600))
                    .read_timeout(timeout)
            })?,
            base: http::parse_base_url(UPSTREAM, base_url)?,
            timeout,
        })
    }

    /// `POST /v2/sign`: signs `request` as `operation` in the cash box of `credentials`.
    #[tracing::instrument(
        name = "fiskaltrust.sign",
        skip_all,
        fields(
            operation_id = %operation.id,
            terminal_id = %operation.terminal_id,
            receipt_reference = %request.receipt_reference,
        ),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn sign(
        &self,
        credentials: &Credentials,
        operation: &Operation<'_>,
        request: &ReceiptRequest,
    ) -> Result<Signed, Undelivered> {
        let url = self.url(paths::SIGN);
        let url_text = url.to_string();
        let body = serde_json::to_vec(request).map_err(|e| Undelivered {
            error: ProviderError::config(UPSTREAM, format!("receipt body: {e}")),
            maybe_created: false,
        })?;
        let lifetime = operation.lifetime.as_millis().to_string();
        let mut call = self
            .sign
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(headers::OPERATION_ID, operation.id.to_string())
            .header(headers::OPERATION_LIFETIME, lifetime)
            .header(headers::TERMINAL_ID, operation.terminal_id)
            .header(headers::CASHBOX_ID, &credentials.cashbox_id)
            .header(
                headers::CASHBOX_ACCESS_TOKEN,
                credentials.access_token.expose_secret(),
            )
            .body(body);
        if let Some(pos_system) = operation.pos_system_id {
            call = call.header(headers::POS_SYSTEM_ID, pos_system);
        }
        let answer = http::exchange_tracked(UPSTREAM, &url_text, self.timeout, call)
            .await
            .map_err(|failure| Undelivered {
                error: failure.error,
                maybe_created: !failure.unsent,
            })?;
        read_signed(&url_text, answer)
    }

    /// `GET /v2/journal/{queueId}/{type}`: the queue's journal, as the middleware streams it
    /// (a JSON array); read it with [`Journal::chunk`].
    #[tracing::instrument(
        name = "fiskaltrust.journal",
        skip_all,
        fields(queue_id = %queue_id, journal_type = journal_type.as_str()),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn journal(
        &self,
        credentials: &Credentials,
        queue_id: &str,
        journal_type: JournalType,
    ) -> Result<Journal, ProviderError> {
        let url = self.url(&paths::journal(queue_id, journal_type.as_str()));
        let url_text = url.to_string();
        let response = self
            .journal
            .get(url)
            .headers(http::trace_context())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(headers::CASHBOX_ID, &credentials.cashbox_id)
            .header(
                headers::CASHBOX_ACCESS_TOKEN,
                credentials.access_token.expose_secret(),
            )
            .send()
            .await
            .map_err(|e| http::transport_error(UPSTREAM, &url_text, self.timeout, e))?;
        let status = response.status();
        if !matches!(http::classify(status), StatusClass::Success) {
            let body = response.bytes().await.unwrap_or_default();
            return Err(status_error(
                &url_text,
                http::Answer {
                    status,
                    body: body.to_vec(),
                },
            ));
        }
        Ok(Journal {
            response,
            url: url_text,
            timeout: self.timeout,
        })
    }

    fn url(&self, path: &str) -> reqwest::Url {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        http::join(&self.base, &segments)
    }
}

/// A journal being streamed from the middleware.
#[derive(Debug)]
pub struct Journal {
    response: reqwest::Response,
    url: String,
    timeout: Duration,
}

impl Journal {
    /// The next piece of the journal's bytes as they come; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ProviderError> {
        self.response
            .chunk()
            .await
            .map_err(|e| http::transport_error(UPSTREAM, &self.url, self.timeout, e))
    }
}

fn read_signed(url: &str, answer: http::Answer) -> Result<Signed, Undelivered> {
    let problem = || problem_of(&answer);
    match answer.status {
        status if status.is_success() => serde_json::from_slice(&answer.body)
            .map(Signed::Done)
            .map_err(|e| Undelivered {
                // It answered, but not a receipt: whether it signed is unknown.
                error: protocol(url, format!("answer does not match the contract: {e}")),
                maybe_created: true,
            }),
        StatusCode::CONFLICT => Ok(Signed::Conflict(problem())),
        StatusCode::UNPROCESSABLE_ENTITY => Ok(Signed::InProgress(problem())),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Signed::Unauthorized(problem())),
        status => match http::classify(status) {
            StatusClass::Refused => Ok(Signed::Refused(problem())),
            // 5xx, 408, 429: it may or may not have signed before failing.
            _ => Err(Undelivered {
                error: status_error(url, answer),
                maybe_created: true,
            }),
        },
    }
}

/// The problem an error answer carries, or one made of its status and text.
fn problem_of(answer: &http::Answer) -> Problem {
    serde_json::from_slice::<Problem>(&answer.body)
        .ok()
        .filter(|p| !p.title.is_empty() || !p.detail.is_empty())
        .unwrap_or_else(|| Problem {
            title: answer
                .status
                .canonical_reason()
                .unwrap_or_default()
                .to_owned(),
            status: answer.status.as_u16(),
            detail: http::snippet(&answer.body),
        })
}

fn status_error(url: &str, answer: http::Answer) -> ProviderError {
    let problem = problem_of(&answer);
    match http::classify(answer.status) {
        StatusClass::Refused => ProviderError::Refused {
            upstream: UPSTREAM,
            url: url.to_owned(),
            status: answer.status.as_u16(),
            error: problem.title,
            description: problem.detail,
            left_attempts: None,
            retry_after: None,
        },
        StatusClass::Unavailable => ProviderError::Unavailable {
            upstream: UPSTREAM,
            url: url.to_owned(),
            cause: format!("HTTP {}: {}", answer.status.as_u16(), problem.detail),
        },
        _ => protocol(url, format!("unexpected HTTP {}", answer.status.as_u16())),
    }
}

fn protocol(url: &str, detail: String) -> ProviderError {
    ProviderError::Protocol {
        upstream: UPSTREAM,
        url: url.to_owned(),
        detail,
    }
}
