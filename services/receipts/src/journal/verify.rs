//! VerifyJournal: a terminal's chain recomputed from the stored receipts, and the first break
//! named — a hash, a signature, a number, a link, a missing receipt, a column that disagrees
//! with its signed document, or a document that does not read.

use fiscus_domain::TerminalId;
use fiscus_domain::chain::{Problem, StoredLink, Verifier};
use fiscus_domain::receipt::Receipt;
use fiscus_kit::ApiError;
use fiscus_proto::v1 as pb;

use super::Journal;
use crate::store::{self, StoredReceipt};

/// Receipts read at a time.
const BATCH: i64 = 1000;

impl Journal {
    /// Recomputes a terminal's chain from `from` to `to` (0 = from the first, to the head) and
    /// names the first break. A range past the head is INVALID_ARGUMENT: nothing can be said of
    /// receipts that do not exist.
    #[tracing::instrument(skip(self))]
    pub async fn verify(
        &self,
        terminal: &TerminalId,
        from: u64,
        to: u64,
    ) -> Result<pb::VerifyJournalResponse, ApiError> {
        let (head_number, head_hash) = store::head(&self.db, terminal)
            .await?
            .unwrap_or((0, fiscus_domain::chain::GENESIS.to_vec()));
        let past = |field: &str, number: u64| {
            ApiError::invalid(
                field,
                format!(
                    "receipt {number} does not exist: the newest receipt of {terminal} is {head_number}"
                ),
            )
        };
        if from > head_number {
            return Err(past("from_number", from));
        }
        if to > head_number {
            return Err(past("to_number", to));
        }
        let mut answer = pb::VerifyJournalResponse {
            ok: true,
            count_checked: 0,
            first_break: None,
            head_number,
            head_hash: head_hash.clone(),
        };
        if head_number == 0 {
            return Ok(answer);
        }
        let from = from.max(1);
        let to = if to == 0 { head_number } else { to };
        let mut broken = |receipt_id: &str, number: u64, problem, message: String, checked| {
            answer.ok = false;
            answer.count_checked = checked;
            answer.first_break = Some(pb::JournalBreak {
                receipt_id: receipt_id.to_owned(),
                receipt_number: number,
                problem: i32::from(problem),
                message,
            });
            answer.clone()
        };
        let mut verifier = Verifier::new();
        if from > 1 {
            let before = from.saturating_sub(1);
            let Some(previous) = store::hash_of(&self.db, terminal, before).await? else {
                return Ok(broken(
                    "",
                    before,
                    pb::JournalProblem::Missing,
                    format!("receipt {before}, where the range starts from, is missing"),
                    0,
                ));
            };
            let previous = previous.as_slice().try_into().unwrap_or([0xff; 32]);
            verifier = Verifier::resume(from, previous);
        }
        let keys = store::public_keys(&self.db, &terminal.merchant_tin).await?;
        let mut after = from.saturating_sub(1);
        while after < to {
            let batch = store::chain_batch(&self.db, terminal, after, to, BATCH).await?;
            if batch.is_empty() {
                let missing = after.saturating_add(1);
                return Ok(broken(
                    "",
                    missing,
                    pb::JournalProblem::Missing,
                    format!(
                        "receipt {missing} is missing: the chain head says the last receipt is {head_number}"
                    ),
                    verifier.checked(),
                ));
            }
            for row in &batch {
                let number = u64::try_from(row.number).unwrap_or(0);
                let linked = verifier
                    .check(StoredLink {
                        number,
                        previous_hash: &row.previous_hash,
                        hash: &row.hash,
                        document: row.document.as_bytes(),
                        signature: &row.signature,
                        public_key: keys.get(&row.key_id).map(Vec::as_slice),
                    })
                    .map_err(|b| (journal_problem(b.problem), b.message))
                    .and_then(|()| readable(row));
                if let Err((problem, message)) = linked {
                    return Ok(broken(
                        &row.id,
                        number,
                        problem,
                        message,
                        verifier.checked(),
                    ));
                }
                after = number;
            }
        }
        if to == head_number && verifier.head_hash()[..] != head_hash[..] {
            return Ok(broken(
                "",
                head_number,
                pb::JournalProblem::LinkBroken,
                "the chain head's hash is not the hash of the last receipt".to_owned(),
                verifier.checked(),
            ));
        }
        answer.count_checked = verifier.checked();
        Ok(answer)
    }
}

fn journal_problem(problem: Problem) -> pb::JournalProblem {
    match problem {
        Problem::HashMismatch => pb::JournalProblem::HashMismatch,
        Problem::SignatureInvalid => pb::JournalProblem::SignatureInvalid,
        Problem::NumberGap => pb::JournalProblem::NumberGap,
        Problem::LinkBroken => pb::JournalProblem::LinkBroken,
    }
}

/// The signed document reads, every column reads, and the indexed columns say what the
/// document says.
fn readable(row: &StoredReceipt) -> Result<(), (pb::JournalProblem, String)> {
    let document = Receipt::parse(row.document.as_bytes()).map_err(|e| {
        (
            pb::JournalProblem::Unreadable,
            format!("the signed document does not read: {e}"),
        )
    })?;
    row.standing()
        .map_err(|e| (pb::JournalProblem::Unreadable, e.to_string()))?;
    let totals = document.totals();
    let checks: [(&str, String, String); 6] = [
        ("id", row.id.clone(), document.id.clone()),
        (
            "number",
            row.number.to_string(),
            document.number.to_string(),
        ),
        ("kind", row.kind.clone(), document.kind.to_string()),
        (
            "total_amount",
            row.total_minor.to_string(),
            totals.amount.minor().to_string(),
        ),
        (
            "total_vat",
            row.vat_minor.to_string(),
            totals.vat.minor().to_string(),
        ),
        (
            "total_city_tax",
            row.city_tax_minor.to_string(),
            totals.city_tax.minor().to_string(),
        ),
    ];
    for (column, stored, signed) in checks {
        if stored != signed {
            return Err((
                pb::JournalProblem::HashMismatch,
                format!("stored {column} {stored} differs from the signed document's {signed}"),
            ));
        }
    }
    Ok(())
}
