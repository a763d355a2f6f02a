//! Journal export for auditors: JSON Lines (each line the canonical protobuf JSON mapping of a
//! `fiscus.v1.Receipt`, signed document included) or CSV (one row per item), streamed in
//! chunks so that memory stays flat however long the journal is.

use fiscus_domain::TerminalId;
use fiscus_domain::chain::hex;
use fiscus_domain::receipt::instant;
use fiscus_kit::ApiError;
use fiscus_kit::db::Database;
use fiscus_proto::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::proto;
use crate::store::{self, StoredReceipt};

/// Receipts read (and sent as one chunk) at a time.
const BATCH: i64 = 500;

#[derive(Debug, Clone, Copy)]
pub enum Format {
    JsonLines,
    Csv,
}

#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub from_number: u64,
    pub to_number: u64,
    pub created_from_us: Option<i64>,
    pub created_to_us: Option<i64>,
}

/// The CSV columns, as `receipts.proto` lists them.
const CSV_HEADER: [&str; 27] = [
    "receipt_number",
    "receipt_id",
    "created_at",
    "kind",
    "type",
    "receipt_reference",
    "receipt_moment",
    "currency",
    "total_amount",
    "total_vat",
    "total_city_tax",
    "fiscal_state",
    "original_receipt_id",
    "key_id",
    "previous_hash",
    "hash",
    "signature",
    "item_position",
    "item_name",
    "item_quantity",
    "item_unit_price",
    "item_tax_type",
    "item_vat_rate",
    "item_city_tax_rate",
    "item_total_amount",
    "item_total_vat",
    "item_total_city_tax",
];

/// Streams the export; reading stops as soon as the client goes away.
pub fn stream(
    db: Database,
    terminal: TerminalId,
    format: Format,
    range: Range,
) -> ReceiverStream<Result<pb::ExportJournalResponse, Status>> {
    // Two chunks in flight at most: the reader waits for a slow client instead of buffering.
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut after = range.from_number.saturating_sub(1);
        let mut first = true;
        loop {
            let chunk =
                match store::chain_batch(&db, &terminal, after, range.to_number, BATCH).await {
                    Ok(batch) if batch.is_empty() => return,
                    Ok(batch) => {
                        let last = batch.last().map_or(i64::MAX, |r| r.number);
                        after = u64::try_from(last).unwrap_or(u64::MAX);
                        let full = batch.len() as i64 == BATCH;
                        let header = std::mem::take(&mut first);
                        let rows: Vec<StoredReceipt> =
                            batch.into_iter().filter(|r| in_time(r, &range)).collect();
                        // Encoding 500 receipts is CPU work: keep it off the async workers.
                        tokio::task::spawn_blocking(move || encode(&rows, format, header))
                            .await
                            .map_err(|e| ApiError::Internal(anyhow::anyhow!("export task: {e}")))
                            .and_then(|chunk| chunk)
                            .map(|chunk| (chunk, full))
                    }
                    Err(e) => Err(ApiError::from(e)),
                };
            match chunk {
                Ok((chunk, full)) => {
                    if sender.send(Ok(chunk)).await.is_err() || !full {
                        return;
                    }
                }
                Err(e) => {
                    let _ = sender.send(Err(e.into())).await;
                    return;
                }
            }
        }
    });
    ReceiverStream::new(receiver)
}

fn in_time(row: &StoredReceipt, range: &Range) -> bool {
    range
        .created_from_us
        .is_none_or(|from| row.created_at_us >= from)
        && range.created_to_us.is_none_or(|to| row.created_at_us < to)
}

/// One chunk: `rows` in `format`, after the CSV header when `header`.
fn encode(
    rows: &[StoredReceipt],
    format: Format,
    header: bool,
) -> Result<pb::ExportJournalResponse, ApiError> {
    let data = match format {
        Format::JsonLines => json_lines(rows)?,
        Format::Csv => csv_rows(rows, header)?,
    };
    Ok(pb::ExportJournalResponse {
        chunk: Some(pb::ExportJournalChunk {
            data,
            receipts_in_chunk: rows.len() as u64,
        }),
    })
}

fn json_lines(rows: &[StoredReceipt]) -> Result<Vec<u8>, ApiError> {
    let mut data = Vec::new();
    for row in rows {
        proto::write_json(&row.exported(), &mut data)?;
        data.push(b'\n');
    }
    Ok(data)
}

/// RFC 3339 UTC with microseconds, or empty when unset.
fn time(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .map(instant::text)
        .unwrap_or_default()
}

fn csv_rows(rows: &[StoredReceipt], header: bool) -> Result<Vec<u8>, ApiError> {
    let failed = |e: csv::Error| ApiError::Internal(anyhow::anyhow!("writing CSV: {e}"));
    let mut out = csv::Writer::from_writer(Vec::new());
    if header {
        out.write_record(CSV_HEADER).map_err(failed)?;
    }
    for row in rows {
        let r = row.exported();
        let receipt_columns = [
            r.receipt_number.to_string(),
            r.id.clone(),
            time(r.created_at.as_ref()),
            r.kind().as_str_name().to_owned(),
            r.r#type().as_str_name().to_owned(),
            r.receipt_reference.clone(),
            time(r.receipt_moment.as_ref()),
            r.currency.clone(),
            r.total_amount.clone(),
            r.total_vat.clone(),
            r.total_city_tax.clone(),
            r.fiscal_state().as_str_name().to_owned(),
            r.original_receipt_id.clone(),
            r.key_id.clone(),
            hex(&r.previous_hash),
            hex(&r.hash),
            hex(&r.signature),
        ];
        let items: Vec<[String; 10]> = r
            .items
            .iter()
            .map(|i| {
                [
                    i.position.to_string(),
                    i.name.clone(),
                    i.quantity.clone(),
                    i.unit_price.clone(),
                    i.tax_type().as_str_name().to_owned(),
                    i.vat_rate.clone(),
                    i.city_tax_rate.clone(),
                    i.total_amount.clone(),
                    i.total_vat.clone(),
                    i.total_city_tax.clone(),
                ]
            })
            .collect();
        // A receipt without items is one row with the item columns empty.
        let items = if items.is_empty() {
            vec![Default::default()]
        } else {
            items
        };
        for item in items {
            out.write_record(receipt_columns.iter().chain(item.iter()))
                .map_err(failed)?;
        }
    }
    out.into_inner()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("writing CSV: {e}")))
}
