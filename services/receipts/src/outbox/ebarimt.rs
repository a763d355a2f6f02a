//! Delivery to e-barimt, through each merchant's POSAPI 3.0 instance.
//!
//! What a journaled receipt becomes there:
//! - a SALE: `POST /rest/receipt`;
//! - a REFUND: the correction that replaces the document standing for the original (its own, or
//!   its last correction's): `POST` of what remains of the sale, with `inactiveId` naming that
//!   document — or, when nothing remains, `DELETE /rest/receipt` of it;
//! - a CANCELLATION: `DELETE /rest/receipt` of the document standing for the cancelled receipt;
//! - a ZERO receipt: `GET /rest/info`, which proves the POSAPI answers (it has no zero receipt).
//!
//! **No duplicate document.** POSAPI's POST is not idempotent, and an answer can be lost after
//! the document was made. Every POST carries `billIdSuffix` = the receipt's number in its
//! terminal's journal, which the POSAPI keeps unique per day: the same request with the same
//! suffix on the same day answers the document already made instead of making another. So an
//! attempt whose answer was lost is reconciled by posting the identical request again on the
//! same (Ulaanbaatar) day. Past that day the suffix no longer identifies the document, and
//! posting again could make a second one: such a receipt is parked for a person to check with
//! e-barimt and then ResendPending.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate, Utc};
use fiscus_domain::receipt::{Receipt, ReceiptKind};
use fiscus_domain::refund;
use fiscus_kit::db::Database;
use fiscus_providers::ebarimt::{self, Deleted, EbarimtClient, Posted, Undelivered};

use super::Outcome;
use super::store::{self, Acceptance, Claimed};
use crate::config::{OutboxConfig, Policy};
use crate::store::{self as journal, Lookup};

/// The POSAPI clients of the e-barimt merchants.
pub struct Ebarimt {
    merchants: HashMap<String, Merchant>,
}

struct Merchant {
    client: EbarimtClient,
    district_code: String,
}

/// The day of a time in Ulaanbaatar (UTC+8), in which POSAPI dates its documents and counts
/// its days.
fn day_of(us: i64) -> Option<NaiveDate> {
    let ulaanbaatar = FixedOffset::east_opt(8 * 3600)?;
    chrono::DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.with_timezone(&ulaanbaatar).date_naive())
}

/// The `billIdSuffix` of a receipt: its number in its terminal's journal, at least two digits
/// (POSAPI's own examples send "01"). Unique per terminal for good, so per day as POSAPI asks,
/// and the same in every attempt.
pub fn bill_id_suffix(number: u64) -> String {
    format!("{number:02}")
}

impl Ebarimt {
    pub fn new(policy: &Policy, config: &OutboxConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.attempt_timeout_ms);
        let mut merchants = HashMap::new();
        for (tin, settings) in policy.ebarimt_merchants() {
            let client = EbarimtClient::new(&settings.posapi_url, &settings.api_url, timeout)
                .map_err(|e| anyhow::anyhow!("configuration: merchant {tin}: {e}"))?;
            merchants.insert(
                tin.to_owned(),
                Merchant {
                    client,
                    district_code: settings.district_code.clone(),
                },
            );
        }
        Ok(Self { merchants })
    }

    /// The POSAPI client of an e-barimt merchant.
    pub fn client(&self, merchant_tin: &str) -> Option<&EbarimtClient> {
        self.merchants.get(merchant_tin).map(|m| &m.client)
    }

    /// One delivery attempt of a claimed receipt.
    pub async fn deliver(&self, db: &Database, row: &Claimed) -> Outcome {
        match self.attempt(db, row).await {
            Ok(outcome) => outcome,
            Err(error) => Outcome::Failed {
                error: format!("fiscus could not read the receipt: {error}"),
                maybe_reached: false,
            },
        }
    }

    async fn attempt(&self, db: &Database, row: &Claimed) -> Result<Outcome, anyhow::Error> {
        let Some(merchant) = self.merchants.get(&row.merchant_tin) else {
            return Ok(Outcome::Parked(format!(
                "merchant {} has no e-barimt configuration in this process",
                row.merchant_tin
            )));
        };
        let stored = journal::find(db, &Lookup::Id(&row.receipt_id))
            .await?
            .ok_or_else(|| anyhow::anyhow!("receipt {} is not in the journal", row.receipt_id))?;
        let receipt = stored.receipt().map_err(|e| anyhow::anyhow!("{e}"))?;
        if row.in_doubt
            && let Some(first) = row.doubt_since_us.and_then(day_of)
            && Some(first) != day_of(Utc::now().timestamp_micros())
        {
            return Ok(Outcome::Parked(format!(
                "an attempt on {first} (Ulaanbaatar time) may have made its e-barimt document, and \
                 its billIdSuffix identifies that document only on that day: check with e-barimt \
                 whether it exists, then ResendPending to post it again"
            )));
        }
        let client = &merchant.client;
        Ok(match receipt.kind {
            ReceiptKind::Sale => {
                self.post(client, &receipt, &merchant.district_code, None)
                    .await
            }
            ReceiptKind::Zero => match client.info().await {
                Ok(_) => Outcome::Accepted(Acceptance::default()),
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                    maybe_reached: false,
                },
            },
            ReceiptKind::Refund => {
                let number = i64::try_from(receipt.number).unwrap_or(i64::MAX);
                let Some((standing, date)) =
                    store::standing_document(db, &receipt.original_receipt_id, number).await?
                else {
                    return Ok(unaccepted_original(&receipt));
                };
                let original = journal::find(db, &Lookup::Id(&receipt.original_receipt_id))
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the refunded receipt is not in the journal"))?
                    .receipt()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let refunds = store::refunds_up_to(db, &original.id, number)
                    .await?
                    .iter()
                    .map(|doc| Receipt::parse(doc.as_bytes()))
                    .collect::<Result<Vec<_>, _>>()?;
                let done = refund::refunded_so_far(&refunds)
                    .map_err(|e| anyhow::anyhow!("refunds of {}: {e}", original.id))?;
                match refund::remainder(&original, &done)
                    .map_err(|e| anyhow::anyhow!("remainder of {}: {e}", original.id))?
                {
                    Some(mut rest) => {
                        // The correction is this refund's document: its own number and suffix.
                        rest.number = receipt.number;
                        self.post(client, &rest, &merchant.district_code, Some(&standing))
                            .await
                    }
                    None => delete(client, &standing, &date).await,
                }
            }
            ReceiptKind::Cancellation => {
                let number = i64::try_from(receipt.number).unwrap_or(i64::MAX);
                match store::standing_document(db, &receipt.original_receipt_id, number).await? {
                    Some((standing, date)) => delete(client, &standing, &date).await,
                    None => unaccepted_original(&receipt),
                }
            }
        })
    }

    async fn post(
        &self,
        client: &EbarimtClient,
        receipt: &Receipt,
        district_code: &str,
        inactive_id: Option<&str>,
    ) -> Outcome {
        let suffix = bill_id_suffix(receipt.number);
        let request = match ebarimt::receipt_request(receipt, &suffix, inactive_id, district_code) {
            Ok(request) => request,
            Err(e) => {
                return Outcome::Parked(format!("it cannot be written as a POSAPI receipt: {e}"));
            }
        };
        match client.post_receipt(&request).await {
            Ok(Posted::Accepted(document)) => Outcome::Accepted(Acceptance {
                upstream_id: Some(document.id),
                upstream_date: Some(document.date),
                easy: document.easy,
                lottery: document.lottery.filter(|l| !l.is_empty()),
                qr: document.qr_data.filter(|q| !q.is_empty()),
                fiskaltrust: None,
            }),
            Ok(Posted::Refused { message }) => Outcome::Refused(format!("e-barimt: {message}")),
            Err(undelivered) => failed(undelivered),
        }
    }
}

async fn delete(client: &EbarimtClient, id: &str, date: &str) -> Outcome {
    match client.delete_receipt(id, date).await {
        Ok(Deleted::Done) => Outcome::Accepted(Acceptance::default()),
        Ok(Deleted::Refused { message }) => Outcome::Refused(format!("e-barimt: {message}")),
        Err(undelivered) => failed(undelivered),
    }
}

fn failed(undelivered: Undelivered) -> Outcome {
    Outcome::Failed {
        error: undelivered.error.to_string(),
        maybe_reached: undelivered.maybe_created,
    }
}

/// A refund or cancellation whose original has no e-barimt document to correct.
fn unaccepted_original(receipt: &Receipt) -> Outcome {
    Outcome::Parked(format!(
        "its original {} has no e-barimt document (it was rejected, or is a dead letter): \
         resend the original first, then this one",
        receipt.original_receipt_id
    ))
}
