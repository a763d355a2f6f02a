//! The e-barimt client: the POSAPI 3.0 daemon's receipt calls and the central lookups, each one
//! HTTP request, never retried here.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::paths;
use super::types::{
    BankAccount, Branch, DeleteRequest, PosInfo, ProductTaxCode, ReceiptAnswer, ReceiptRequest,
    ReceiptStatus, TaxpayerInfo,
};
use crate::error::{ProviderError, Undelivered, Upstream};
use crate::http::{self, StatusClass};

const UPSTREAM: Upstream = Upstream::Ebarimt;

/// Talks to one POSAPI 3.0 daemon and the central e-barimt API. Cheap to clone; clones share
/// their connections.
///
/// The daemon is called without keeping idle connections: a request on a connection the
/// daemon has already closed could not be told apart from one it received, and telling them
/// apart is what [`Undelivered::maybe_created`] is for. The central API keeps its connections
/// (TLS handshakes are not free) and gets the caller's bearer token where one is given.
#[derive(Clone, Debug)]
pub struct EbarimtClient {
    daemon: reqwest::Client,
    central: reqwest::Client,
    posapi: reqwest::Url,
    api: reqwest::Url,
    timeout: Duration,
}

/// What the daemon made of a receipt it received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Posted {
    /// Registered: the document to keep (the ДДТД) and to print (lottery, QR data).
    Accepted(Document),
    /// Not registered, in the daemon's words (`status: ERROR`, or HTTP 400). Sending the same
    /// request again gives the same answer; `status: PAYMENT` (payment information incomplete)
    /// is a refusal too, its message prefixed `PAYMENT: `.
    Refused { message: String },
}

/// A registered receipt, as the daemon answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// The ДДТД, 33 digits.
    pub id: String,
    /// As answered (`yyyy-MM-dd HH:mm:ss`, Ulaanbaatar time): `DELETE` wants it back verbatim.
    pub date: String,
    /// For the printed receipt only; none for B2B receipts and corrections.
    pub lottery: Option<String>,
    /// For the printed receipt's QR code only.
    pub qr_data: Option<String>,
    /// The receipt was confirmed by the card owner's "easy registration".
    pub easy: bool,
    pub pos_id: Option<u64>,
    /// Each sub-receipt's ДДТД and bank account, in the request's order.
    pub receipts: Vec<SubDocument>,
}

/// A sub-receipt of a [`Document`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubDocument {
    pub id: String,
    pub bank_account_id: Option<u64>,
}

/// What the daemon made of a `DELETE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The receipt is inactive now.
    Done,
    /// Not done, in the daemon's words.
    Refused { message: String },
}

/// The envelope of the central lookups: `{"msg", "status", "data"}`.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    data: Option<Value>,
}

/// A receipt answer's `status` and `message` alone, for DELETE and error bodies.
#[derive(Deserialize)]
struct StatusOnly {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl EbarimtClient {
    /// A client for the daemon at `posapi_url` (its `/rest/*`) and the central API at `api_url`
    /// (its `/api/*`), whose every call gives up after `timeout`.
    pub fn new(posapi_url: &str, api_url: &str, timeout: Duration) -> Result<Self, ProviderError> {
        Ok(EbarimtClient {
            daemon: http::build_client_with(UPSTREAM, timeout, |builder| {
                builder.pool_max_idle_per_host(0)
            })?,
            central: http::build_client(UPSTREAM, timeout)?,
            posapi: http::parse_base_url(UPSTREAM, posapi_url)?,
            api: http::parse_base_url(UPSTREAM, api_url)?,
            timeout,
        })
    }

    /// `POST /rest/receipt`: registers a receipt (batch).
    #[tracing::instrument(
        name = "ebarimt.post_receipt",
        skip_all,
        fields(
            merchant_tin = %request.merchant_tin,
            branch_no = %request.branch_no,
            pos_no = %request.pos_no,
            bill_id_suffix = %request.bill_id_suffix,
        ),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn post_receipt(&self, request: &ReceiptRequest) -> Result<Posted, Undelivered> {
        let url = http::join(&self.posapi, &segments(paths::RECEIPT));
        let url_text = url.to_string();
        let body = serde_json::to_vec(request).map_err(|e| Undelivered {
            error: ProviderError::config(UPSTREAM, format!("receipt body: {e}")),
            maybe_created: false,
        })?;
        let answer = self.send(Method::POST, url, &url_text, body).await?;
        read_posted(&url_text, answer)
    }

    /// `DELETE /rest/receipt`: makes receipt `id` inactive; `date` is its date as answered.
    #[tracing::instrument(
        name = "ebarimt.delete_receipt",
        skip_all,
        fields(id = %id),
        err(Display, level = tracing::Level::WARN)
    )]
    pub async fn delete_receipt(&self, id: &str, date: &str) -> Result<Deleted, Undelivered> {
        let url = http::join(&self.posapi, &segments(paths::RECEIPT));
        let url_text = url.to_string();
        let request = DeleteRequest {
            id: id.to_owned(),
            date: date.to_owned(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| Undelivered {
            error: ProviderError::config(UPSTREAM, format!("delete body: {e}")),
            maybe_created: false,
        })?;
        let answer = self.send(Method::DELETE, url, &url_text, body).await?;
        read_deleted(&url_text, answer)
    }

    /// `GET /rest/info`: the installation, its operator, the merchants it serves.
    #[tracing::instrument(name = "ebarimt.info", skip_all, err(Display, level = tracing::Level::WARN))]
    pub async fn info(&self) -> Result<PosInfo, ProviderError> {
        self.get_daemon(paths::INFO, &[]).await
    }

    /// `GET /rest/bankAccounts?tin=`: the active bank accounts of merchant `tin`.
    #[tracing::instrument(name = "ebarimt.bank_accounts", skip_all, fields(tin = %tin), err(Display, level = tracing::Level::WARN))]
    pub async fn bank_accounts(&self, tin: &str) -> Result<Vec<BankAccount>, ProviderError> {
        let accounts: Option<Vec<BankAccount>> = self
            .get_daemon(paths::BANK_ACCOUNTS, &[("tin", tin)])
            .await?;
        Ok(accounts.unwrap_or_default())
    }

    /// `GET /api/info/check/getInfo?tin=`: a taxpayer's registration; `None` when there is no
    /// such taxpayer (`data: null`, or `found: false`).
    #[tracing::instrument(name = "ebarimt.taxpayer", skip_all, fields(tin = %tin), err(Display, level = tracing::Level::WARN))]
    pub async fn taxpayer(
        &self,
        tin: &str,
        token: Option<&str>,
    ) -> Result<Option<TaxpayerInfo>, ProviderError> {
        let url = http::join(&self.api, &segments(paths::TAXPAYER_INFO));
        let url_text = url.to_string();
        let Some(data) = self.lookup(url, &url_text, &[("tin", tin)], token).await? else {
            return Ok(None);
        };
        let info: TaxpayerInfo = decode(&url_text, data)?;
        Ok(info.found.then_some(info))
    }

    /// `GET /api/info/check/getTinInfo?regNo=`: the TIN of registration number `reg_no`; `None`
    /// when there is none.
    #[tracing::instrument(name = "ebarimt.tin_of", skip_all, err(Display, level = tracing::Level::WARN))]
    pub async fn tin_of(
        &self,
        reg_no: &str,
        token: Option<&str>,
    ) -> Result<Option<String>, ProviderError> {
        let url = http::join(&self.api, &segments(paths::TIN_INFO));
        let url_text = url.to_string();
        let data = self
            .lookup(url, &url_text, &[("regNo", reg_no)], token)
            .await?;
        // Declared a number, shown as a string in the document's own example: both are read.
        match data {
            None => Ok(None),
            Some(Value::String(tin)) if tin.is_empty() => Ok(None),
            Some(Value::String(tin)) => Ok(Some(tin)),
            Some(Value::Number(tin)) => Ok(Some(tin.to_string())),
            Some(other) => Err(protocol(&url_text, format!("data {other} is not a TIN"))),
        }
    }

    /// `GET /api/info/check/getBranchInfo`: the tax office districts (`districtCode` =
    /// [`Branch::district_code`]).
    #[tracing::instrument(name = "ebarimt.branches", skip_all, err(Display, level = tracing::Level::WARN))]
    pub async fn branches(&self, token: Option<&str>) -> Result<Vec<Branch>, ProviderError> {
        let url = http::join(&self.api, &segments(paths::BRANCH_INFO));
        let url_text = url.to_string();
        let data = self.lookup(url, &url_text, &[], token).await?;
        list(&url_text, data)
    }

    /// `GET /api/receipt/receipt/getProductTaxCode`: the codes for `taxProductCode`.
    #[tracing::instrument(name = "ebarimt.product_tax_codes", skip_all, err(Display, level = tracing::Level::WARN))]
    pub async fn product_tax_codes(
        &self,
        token: Option<&str>,
    ) -> Result<Vec<ProductTaxCode>, ProviderError> {
        let url = http::join(&self.api, &segments(paths::PRODUCT_TAX_CODES));
        let url_text = url.to_string();
        let data = self.lookup(url, &url_text, &[], token).await?;
        list(&url_text, data)
    }

    /// One receipt request to the daemon; a failure says whether it can have arrived.
    async fn send(
        &self,
        method: Method,
        url: reqwest::Url,
        url_text: &str,
        body: Vec<u8>,
    ) -> Result<http::Answer, Undelivered> {
        let request = self
            .daemon
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        http::exchange_tracked(UPSTREAM, url_text, self.timeout, request)
            .await
            .map_err(|failure| Undelivered {
                error: failure.error,
                maybe_created: !failure.unsent,
            })
    }

    async fn get_daemon<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ProviderError> {
        let url = http::join(&self.posapi, &segments(path));
        let url_text = url.to_string();
        let request = self
            .daemon
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .query(query);
        let answer = http::exchange(UPSTREAM, &url_text, self.timeout, request).await?;
        match http::classify(answer.status) {
            StatusClass::Success => serde_json::from_slice(&answer.body).map_err(|e| {
                protocol(
                    &url_text,
                    format!("answer does not match the contract: {e}"),
                )
            }),
            _ => Err(status_error(&url_text, answer)),
        }
    }

    /// A central lookup's `data`: `None` for not found (`data: null`, which the service answers
    /// with `status: 500` inside an HTTP 200).
    async fn lookup(
        &self,
        url: reqwest::Url,
        url_text: &str,
        query: &[(&str, &str)],
        token: Option<&str>,
    ) -> Result<Option<Value>, ProviderError> {
        let mut request = self
            .central
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = http::exchange(UPSTREAM, url_text, self.timeout, request).await?;
        if !matches!(http::classify(answer.status), StatusClass::Success) {
            return Err(status_error(url_text, answer));
        }
        let envelope: Envelope = serde_json::from_slice(&answer.body)
            .map_err(|e| protocol(url_text, format!("answer is not e-barimt's JSON: {e}")))?;
        read_envelope(url_text, answer.status, envelope)
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn protocol(url: &str, detail: String) -> ProviderError {
    ProviderError::Protocol {
        upstream: UPSTREAM,
        url: url.to_owned(),
        detail,
    }
}

fn refused(url: &str, status: StatusCode, error: String, description: String) -> ProviderError {
    ProviderError::Refused {
        upstream: UPSTREAM,
        url: url.to_owned(),
        status: status.as_u16(),
        error,
        description,
        left_attempts: None,
        retry_after: None,
    }
}

/// The message of an error body: a receipt answer's `message`, a lookup's `msg`, or the text.
fn message_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Text {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        msg: Option<String>,
    }
    serde_json::from_slice::<Text>(body)
        .ok()
        .and_then(|t| t.message.or(t.msg))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| http::snippet(body))
}

/// A non-2xx answer as an error: 4xx refused, 5xx and the like unavailable.
fn status_error(url: &str, answer: http::Answer) -> ProviderError {
    let status = answer.status;
    match http::classify(status) {
        StatusClass::Refused => refused(
            url,
            status,
            format!("http_{}", status.as_u16()),
            message_of(&answer.body),
        ),
        StatusClass::Unavailable => ProviderError::Unavailable {
            upstream: UPSTREAM,
            url: url.to_owned(),
            cause: format!("HTTP {status}: {}", message_of(&answer.body)),
        },
        StatusClass::Success | StatusClass::Unexpected => {
            protocol(url, format!("unexpected HTTP {status}"))
        }
    }
}

fn read_posted(url: &str, answer: http::Answer) -> Result<Posted, Undelivered> {
    let status = answer.status;
    // It reached the daemon: from here on nothing proves the receipt was not registered.
    let undelivered = |error| Undelivered {
        error,
        maybe_created: true,
    };
    match http::classify(status) {
        StatusClass::Success => {}
        StatusClass::Refused if status == StatusCode::BAD_REQUEST => {
            return Ok(Posted::Refused {
                message: message_of(&answer.body),
            });
        }
        _ => return Err(undelivered(status_error(url, answer))),
    }
    let parsed: ReceiptAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
        undelivered(protocol(
            url,
            format!("answer does not match the contract: {e}"),
        ))
    })?;
    let message = parsed.message.clone().unwrap_or_default();
    match parsed.status {
        ReceiptStatus::Success => document(parsed)
            .map(Posted::Accepted)
            .map_err(|detail| undelivered(protocol(url, detail))),
        ReceiptStatus::Error => Ok(Posted::Refused { message }),
        ReceiptStatus::Payment => Ok(Posted::Refused {
            message: format!("PAYMENT: {message}"),
        }),
        ReceiptStatus::Unknown => Err(undelivered(protocol(
            url,
            "unknown status in the answer".to_owned(),
        ))),
    }
}

/// The document of a `SUCCESS` answer, which must name its ДДТД and date.
fn document(answer: ReceiptAnswer) -> Result<Document, String> {
    let id = answer
        .id
        .filter(|id| !id.is_empty())
        .ok_or("SUCCESS without an id")?;
    let date = answer
        .date
        .filter(|date| !date.is_empty())
        .ok_or("SUCCESS without a date")?;
    Ok(Document {
        id,
        date,
        lottery: answer.lottery.filter(|l| !l.is_empty()),
        qr_data: answer.qr_data.filter(|q| !q.is_empty()),
        easy: answer.easy.unwrap_or(false),
        pos_id: answer.pos_id,
        receipts: answer
            .receipts
            .into_iter()
            .map(|r| SubDocument {
                id: r.id,
                bank_account_id: r.bank_account_id,
            })
            .collect(),
    })
}

fn read_deleted(url: &str, answer: http::Answer) -> Result<Deleted, Undelivered> {
    let status = answer.status;
    match http::classify(status) {
        StatusClass::Success => {}
        StatusClass::Refused if status == StatusCode::BAD_REQUEST => {
            return Ok(Deleted::Refused {
                message: message_of(&answer.body),
            });
        }
        _ => {
            return Err(Undelivered {
                error: status_error(url, answer),
                maybe_created: true,
            });
        }
    }
    // The document gives no answer for DELETE: an empty body or one without `status: ERROR`
    // is done.
    if answer.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Deleted::Done);
    }
    match serde_json::from_slice::<StatusOnly>(&answer.body) {
        Ok(StatusOnly {
            status: Some(status),
            message,
        }) if status == "ERROR" => Ok(Deleted::Refused {
            message: message.unwrap_or_default(),
        }),
        _ => Ok(Deleted::Done),
    }
}

/// A lookup's `data`: present on `status` 200; `None` for not found (`data: null`); any other
/// status is a refusal in the service's words.
fn read_envelope(
    url: &str,
    http_status: StatusCode,
    envelope: Envelope,
) -> Result<Option<Value>, ProviderError> {
    let status = match &envelope.status {
        None => None,
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    let data = envelope.data.filter(|d| !d.is_null());
    match (status, data) {
        (None | Some(200), data) => Ok(data),
        (Some(500), None) => Ok(None),
        (Some(other), _) => Err(refused(
            url,
            http_status,
            other.to_string(),
            envelope.msg.unwrap_or_default(),
        )),
    }
}

fn decode<T: DeserializeOwned>(url: &str, data: Value) -> Result<T, ProviderError> {
    serde_json::from_value(data)
        .map_err(|e| protocol(url, format!("data does not match the contract: {e}")))
}

/// Declared an array; `getBranchInfo`'s own example shows one object: both are read.
fn list<T: DeserializeOwned>(url: &str, data: Option<Value>) -> Result<Vec<T>, ProviderError> {
    match data {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items.into_iter().map(|item| decode(url, item)).collect(),
        Some(one @ Value::Object(_)) => Ok(vec![decode(url, one)?]),
        Some(other) => Err(protocol(url, format!("data {other} is not a list"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://posapi.invalid/rest/receipt";

    fn answer(status: u16, body: &str) -> http::Answer {
        http::Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn success_error_payment_and_400_are_read_as_the_daemon_means_them() {
        let posted = read_posted(
            URL,
            answer(
                200,
                r#"{"id":"100000010120261123000000000000001","posId":101,"status":"SUCCESS","message":"",
                    "qrDate":"12345","lottery":"AB12345678","date":"2026-11-23 18:15:00","easy":"false",
                    "receipts":[{"id":"100000010120261123000000000000002","bankAccountId":1}]}"#,
            ),
        )
        .unwrap();
        let Posted::Accepted(document) = posted else {
            panic!("{posted:?}")
        };
        assert_eq!(document.qr_data.as_deref(), Some("12345"));
        assert!(!document.easy);
        assert_eq!(document.receipts[0].bank_account_id, Some(1));

        for (status, body, want) in [
            (
                200,
                r#"{"status":"ERROR","message":"merchantTin: not registered"}"#,
                "merchantTin: not registered",
            ),
            (
                200,
                r#"{"status":"PAYMENT","message":"no payments"}"#,
                "PAYMENT: no payments",
            ),
            (400, r#"{"message":"bad qty"}"#, "bad qty"),
        ] {
            assert_eq!(
                read_posted(URL, answer(status, body)).unwrap(),
                Posted::Refused {
                    message: want.to_owned()
                }
            );
        }
    }

    #[test]
    fn an_answer_that_says_nothing_usable_may_still_have_registered_the_receipt() {
        for (status, body) in [
            (500, "oops"),
            (503, ""),
            (200, "<html>"),
            (200, r#"{"status":"SUCCESS"}"#),
            (404, ""),
        ] {
            let undelivered = read_posted(URL, answer(status, body)).unwrap_err();
            assert!(undelivered.maybe_created, "{status} {body}: {undelivered}");
        }
    }

    #[test]
    fn delete_answers_are_read_tolerantly() {
        assert_eq!(read_deleted(URL, answer(200, "")).unwrap(), Deleted::Done);
        assert_eq!(
            read_deleted(URL, answer(200, r#"{"status":"SUCCESS"}"#)).unwrap(),
            Deleted::Done
        );
        assert_eq!(
            read_deleted(
                URL,
                answer(200, r#"{"status":"ERROR","message":"no such id"}"#)
            )
            .unwrap(),
            Deleted::Refused {
                message: "no such id".to_owned()
            }
        );
    }

    #[test]
    fn lookups_read_not_found_single_objects_and_numbers_as_the_service_writes_them() {
        let envelope = |text: &str| serde_json::from_str::<Envelope>(text).unwrap();
        let ok = StatusCode::OK;
        assert_eq!(
            read_envelope(
                URL,
                ok,
                envelope(r#"{"msg":"not found","status":500,"data":null}"#)
            )
            .unwrap(),
            None
        );
        assert!(
            read_envelope(
                URL,
                ok,
                envelope(r#"{"msg":"bad","status":400,"data":null}"#)
            )
            .is_err()
        );
        let one = read_envelope(
            URL,
            ok,
            envelope(
                r#"{"status":200,"msg":"ok","data":{"branchCode":"01","branchName":"Архангай","subBranchCode":"02","subBranchName":"Чулуут"}}"#,
            ),
        )
        .unwrap();
        let branches: Vec<Branch> = list(URL, one).unwrap();
        assert_eq!(branches.len(), 1);
        assert_eq!(branches[0].district_code(), "0102");
    }
}
