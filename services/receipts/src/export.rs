//! Journal export for auditors: JSON Lines or CSV, streamed in chunks so that memory stays flat
//! however long the journal is.

use fiscus_domain::chain::hex;
use fiscus_kit::ApiError;
use fiscus_kit::db::Database;
use fiscus_proto::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::store::{self, StoredReceipt};
use crate::validate::TerminalId;

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

const CSV_HEADER: &str = "number,id,created_at_us,kind,type,reference,total_amount,total_vat,\
    total_city_tax,currency,fiscal_state,original_receipt_id,key_id,previous_hash,hash,signature\n";

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
            let batch =
                match store::chain_batch(&db, &terminal, after, range.to_number, BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = sender.send(Err(ApiError::from(e).into())).await;
                        return;
                    }
                };
            let Some(last) = batch.last() else { return };
            after = u64::try_from(last.number).unwrap_or(u64::MAX);
            let mut data = String::new();
            if first {
                if let Format::Csv = format {
                    data.push_str(CSV_HEADER);
                }
                first = false;
            }
            let mut count = 0;
            for row in batch.iter().filter(|r| in_time(r, &range)) {
                match format {
                    Format::JsonLines => json_line(row, &mut data),
                    Format::Csv => csv_line(row, &mut data),
                }
                count += 1;
            }
            let chunk = pb::ExportJournalResponse {
                chunk: Some(pb::ExportJournalChunk {
                    data: data.into_bytes(),
                    receipts_in_chunk: count,
                }),
            };
            if sender.send(Ok(chunk)).await.is_err() || (batch.len() as i64) < BATCH {
                return;
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

fn money(minor: i64) -> String {
    fiscus_domain::Money::from_minor(minor).to_string()
}

fn json_line(row: &StoredReceipt, out: &mut String) {
    let head = serde_json::json!({
        "number": row.number,
        "id": row.id,
        "created_at_us": row.created_at_us,
        "fiscal_state": row.fiscal_state,
        "cancelled_by": row.cancelled_by,
        "key_id": row.key_id,
        "previous_hash": hex(&row.previous_hash),
        "hash": hex(&row.hash),
        "signature": hex(&row.signature),
    })
    .to_string();
    // The signed document goes in as it is stored, so auditors can re-hash it byte for byte.
    out.push_str(head.trim_end_matches('}'));
    out.push_str(",\"document\":");
    out.push_str(&row.document);
    out.push_str("}\n");
}

fn csv_field(value: &str, out: &mut String) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_line(row: &StoredReceipt, out: &mut String) {
    let document = crate::document::Document::parse(row.document.as_bytes()).ok();
    let fields = [
        row.number.to_string(),
        row.id.clone(),
        row.created_at_us.to_string(),
        row.kind.clone(),
        document
            .as_ref()
            .map(|d| d.receipt_type.clone())
            .unwrap_or_default(),
        document
            .as_ref()
            .map(|d| d.reference.clone())
            .unwrap_or_default(),
        money(row.total_minor),
        money(row.vat_minor),
        money(row.city_tax_minor),
        document
            .as_ref()
            .map(|d| d.currency.clone())
            .unwrap_or_default(),
        row.fiscal_state.clone(),
        row.original_receipt_id.clone().unwrap_or_default(),
        row.key_id.clone(),
        hex(&row.previous_hash),
        hex(&row.hash),
        hex(&row.signature),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(field, out);
    }
    out.push('\n');
}
