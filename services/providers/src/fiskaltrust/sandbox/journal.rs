//! `GET /v2/journal/{queueId}/{type}`: a queue's receipt journal, action journal or queue items,
//! streamed as a JSON array one entry per chunk.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Book, FiskaltrustState, authenticate, problem};
use crate::fiskaltrust::JournalType;
use crate::fiskaltrust::wire::{ReceiptRequest, ReceiptResponse};
use crate::sandbox::{self, lock};

/// A queue item as the journal writes it: the request and the response whole.
#[derive(Serialize)]
struct QueueItemEntry<'a> {
    #[serde(rename = "ftQueueItemId")]
    queue_item_id: &'a str,
    #[serde(rename = "ftQueueId")]
    queue_id: &'a str,
    #[serde(rename = "ftQueueRow")]
    queue_row: u64,
    #[serde(rename = "cbTerminalID")]
    terminal_id: &'a str,
    #[serde(rename = "cbReceiptReference")]
    receipt_reference: &'a str,
    #[serde(rename = "ftQueueMoment")]
    moment: DateTime<Utc>,
    request: &'a ReceiptRequest,
    response: &'a ReceiptResponse,
}

pub(super) async fn journal(
    State(state): State<Arc<FiskaltrustState>>,
    Path((queue_id, journal_type)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let queue = match authenticate(&state, &headers) {
        Ok(queue) => queue,
        Err(detail) => return problem(StatusCode::UNAUTHORIZED, detail),
    };
    // Another cash box's queue is not told apart from one that does not exist.
    if Uuid::parse_str(queue_id.trim()).ok() != Some(queue.queue_uuid) {
        return problem(
            StatusCode::NOT_FOUND,
            format!("queueId: no queue {queue_id:?} in this cash box"),
        );
    }
    let Some(kind) = JournalType::parse(&journal_type) else {
        let known: Vec<&str> = JournalType::ALL.iter().map(|t| t.as_str()).collect();
        return problem(
            StatusCode::BAD_REQUEST,
            format!(
                "type: {journal_type:?} is not a journal type, one of {}",
                known.join(", ")
            ),
        );
    };
    let from = match from_row(query.as_deref()) {
        Ok(from) => from,
        Err(detail) => return problem(StatusCode::BAD_REQUEST, detail),
    };
    let entries = match entries(&lock(&queue.book), kind, from) {
        Ok(entries) => entries,
        Err(error) => return sandbox::internal_error(error),
    };
    // `[`, each entry (after a comma but the first), `]`: one chunk each.
    let count = entries.len();
    let chunks = std::iter::once(Bytes::from_static(b"["))
        .chain(entries.into_iter().enumerate().map(|(i, entry)| {
            if i == 0 {
                Bytes::from(entry)
            } else {
                let mut chunk = Vec::with_capacity(entry.len().saturating_add(1));
                chunk.push(b',');
                chunk.extend_from_slice(&entry);
                Bytes::from(chunk)
            }
        }))
        .chain(std::iter::once(Bytes::from_static(b"]")))
        .map(Ok::<_, Infallible>);
    tracing::debug!(
        journal = kind.as_str(),
        count,
        "fiskaltrust sandbox streams a journal"
    );
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

/// `?from=<row>`: the first queue row to list (1 when absent).
fn from_row(query: Option<&str>) -> Result<u64, String> {
    let Some(query) = query else {
        return Ok(1);
    };
    match form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "from") {
        None => Ok(1),
        Some((_, row)) => row
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("from: {row:?} is not a queue row (a positive integer)")),
    }
}

/// The journal's entries from queue row `from` on, each as JSON.
fn entries(book: &Book, kind: JournalType, from: u64) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    match kind {
        JournalType::ReceiptJournal => book
            .receipt_journal
            .iter()
            .filter(|entry| entry.number >= from)
            .map(serde_json::to_vec)
            .collect(),
        JournalType::ActionJournal => book
            .action_journal
            .iter()
            .filter(|entry| entry.row >= from)
            .map(serde_json::to_vec)
            .collect(),
        JournalType::QueueItem => book
            .items
            .iter()
            .filter(|item| item.receipt.queue_row >= from)
            .map(|item| {
                let receipt = &item.receipt;
                serde_json::to_vec(&QueueItemEntry {
                    queue_item_id: &receipt.response.queue_item_id,
                    queue_id: &receipt.response.queue_id,
                    queue_row: receipt.queue_row,
                    terminal_id: &receipt.request.terminal_id,
                    receipt_reference: &receipt.request.receipt_reference,
                    moment: receipt.response.receipt_moment,
                    request: &receipt.request,
                    response: &receipt.response,
                })
            })
            .collect(),
    }
}
