//! The shift report (X or Z) as printed: its fields and how they are laid out.

use crate::layout::{Layout, clean, left_right_lines};

/// Everything printed on a shift report, already formatted as strings (amounts are decimal strings like "5600.00").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportView {
    /// Document title, e.g. "X-REPORT", "Z-REPORT No 3".
    pub title: String,
    /// Merchant (taxpayer) name; printed centered at the top.
    pub merchant_name: String,
    /// Merchant tax identification number.
    pub merchant_tin: String,
    /// Branch number.
    pub branch_no: String,
    /// Point-of-sale (register) number.
    pub pos_no: String,
    /// Sequential shift number.
    pub shift_number: u64,
    /// Local date and time the shift was opened, e.g. "2026-11-23 08:00:00".
    pub opened_at: String,
    /// Local date and time the shift was closed; `None` while it is open (an X-report).
    pub closed_at: Option<String>,
    /// Operator who opened the shift; may be empty.
    pub opened_by: String,
    /// Operator who closed the shift, if it is closed.
    pub closed_by: Option<String>,
    /// Local date and time the report was generated.
    pub generated_at: String,
    /// Currency code: "MNT", "MDL", "EUR".
    pub currency: String,
    /// Number of receipts issued in the shift, of every type.
    pub receipt_count: u64,
    /// Number of the first receipt of the shift.
    pub first_receipt_number: u64,
    /// Number of the last receipt of the shift.
    pub last_receipt_number: u64,
    /// Number of sale receipts.
    pub sale_count: u64,
    /// Sum of the sale receipts.
    pub sale_sum: String,
    /// Number of refund receipts.
    pub refund_count: u64,
    /// Sum of the refund receipts.
    pub refund_sum: String,
    /// Number of cancellations.
    pub cancellation_count: u64,
    /// Sum of the cancelled receipts.
    pub cancellation_sum: String,
    /// Number of zero receipts.
    pub zero_receipt_count: u64,
    /// Net turnover of the shift (sales less refunds and cancellations).
    pub total_sum: String,
    /// VAT by rate.
    pub vat_lines: Vec<ReportVatLine>,
    /// VAT of the shift.
    pub total_vat: String,
    /// City tax of the shift.
    pub total_city_tax: String,
    /// Turnover by payment method.
    pub payment_methods: Vec<ReportPaymentLine>,
    /// Number of QR (instant) payments; the QR section is printed when this or
    /// [`qr_refund_count`](Self::qr_refund_count) is nonzero.
    pub qr_payment_count: u64,
    /// Sum of the QR payments.
    pub qr_payment_sum: String,
    /// Number of QR payment refunds.
    pub qr_refund_count: u64,
    /// Sum of the QR payment refunds.
    pub qr_refund_sum: String,
    /// Notes printed word-wrapped near the end, e.g. a reconciliation mismatch.
    pub warnings: Vec<String>,
    /// Every transaction of the shift, one line each; only in a full report (empty otherwise).
    pub transactions: Vec<ReportTransactionLine>,
}

/// The VAT of one rate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportVatLine {
    /// Rate label, e.g. "VAT 10.00%".
    pub label: String,
    /// Amount the VAT is charged on.
    pub taxable_base: String,
    /// VAT at this rate.
    pub vat: String,
    /// Taxable base plus VAT.
    pub gross: String,
}

/// The turnover of one payment method.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportPaymentLine {
    /// Payment method label, e.g. "Cash", "Card".
    pub label: String,
    /// Number of payments.
    pub count: u64,
    /// Sum of the payments.
    pub sum: String,
}

/// One transaction of a full report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportTransactionLine {
    /// Transaction type, e.g. "SALE", "REFUND", "CANCEL".
    pub label: String,
    /// Transaction (or fiscal receipt) identifier; printed when there is no receipt number.
    pub id: String,
    /// Receipt number; 0 when the transaction has none.
    pub receipt_number: u64,
    /// Local time, e.g. "10:15:00"; may be empty.
    pub time: String,
    /// Amount.
    pub amount: String,
}

/// The transactions of a full report, read one at a time as the report is written, so that a
/// long shift's lines need not be copied into a [`ReportView`] first.
pub trait Transactions {
    /// How many there are.
    fn count(&self) -> usize;
    /// The one at `index` (below [`count`](Self::count)), as printed.
    fn line(&self, index: usize) -> ReportTransactionLine;
}

impl Transactions for Vec<ReportTransactionLine> {
    fn count(&self) -> usize {
        self.len()
    }

    fn line(&self, index: usize) -> ReportTransactionLine {
        self[index].clone()
    }
}

impl ReportView {
    /// Lays the report out on a grid `width` characters wide (clamped like
    /// [`Layout::new`]): merchant heading, identification, receipts, VAT by rate,
    /// totals, payment methods, QR payments (when there are any), warnings and, in a
    /// full report, the transactions one per line.
    pub fn layout(&self, width: usize) -> Layout {
        let mut b = self.layout_head(width, self.transactions.len());
        let columns = b.columns();
        for line in Self::transaction_rows(&self.transactions, columns) {
            b.line(&line);
        }
        b
    }

    /// [`layout`](Self::layout) up to the transactions, with the heading of `transactions` of
    /// them when there are any; [`transaction_rows`](Self::transaction_rows) are the rest.
    pub fn layout_head(&self, width: usize, transactions: usize) -> Layout {
        let title = clean(&self.title);
        let mut b = Layout::new(width, &title, &self.merchant_name);

        b.merchant(
            &self.merchant_name,
            &self.merchant_tin,
            &self.branch_no,
            &self.pos_no,
        );
        b.heading(&title, false);
        b.left_right("Shift No", &self.shift_number.to_string());
        b.left_right("Opened", &self.opened_at);
        if !clean(&self.opened_by).is_empty() {
            b.left_right("Opened by", &self.opened_by);
        }
        if let Some(closed_at) = &self.closed_at {
            b.left_right("Closed", closed_at);
        }
        if let Some(closed_by) = &self.closed_by {
            b.left_right("Closed by", closed_by);
        }
        b.left_right("Generated", &self.generated_at);

        b.separator();
        b.wrapped("RECEIPTS");
        if self.receipt_count == 0 {
            b.wrapped("No receipts");
        } else {
            b.left_right("Receipts", &self.receipt_count.to_string());
            b.left_right("First receipt No", &self.first_receipt_number.to_string());
            b.left_right("Last receipt No", &self.last_receipt_number.to_string());
        }
        let by_type = [
            self.sale_count,
            self.refund_count,
            self.cancellation_count,
            self.zero_receipt_count,
        ];
        if self.receipt_count != 0 || by_type.iter().any(|&count| count != 0) {
            b.left_right(&format!("Sales ({})", self.sale_count), &self.sale_sum);
            b.left_right(
                &format!("Refunds ({})", self.refund_count),
                &self.refund_sum,
            );
            b.left_right(
                &format!("Cancellations ({})", self.cancellation_count),
                &self.cancellation_sum,
            );
            b.left_right("Zero receipts", &self.zero_receipt_count.to_string());
        }

        if !self.vat_lines.is_empty() {
            b.separator();
            b.wrapped("VAT BY RATE");
            for line in &self.vat_lines {
                b.wrapped(&line.label);
                b.left_right("  Taxable base", &line.taxable_base);
                b.left_right("  VAT", &line.vat);
                b.left_right("  Gross", &line.gross);
            }
        }

        b.separator();
        let currency = clean(&self.currency);
        let with_currency = |amount: &str| {
            let amount = clean(amount);
            if currency.is_empty() {
                amount
            } else {
                format!("{amount} {currency}")
            }
        };
        b.left_right("Total VAT", &with_currency(&self.total_vat));
        b.left_right("City tax", &with_currency(&self.total_city_tax));
        b.left_right("NET TURNOVER", &with_currency(&self.total_sum));

        if !self.payment_methods.is_empty() {
            b.separator();
            b.wrapped("PAYMENT METHODS");
            for payment in &self.payment_methods {
                let label = format!("{} ({})", clean(&payment.label), payment.count);
                b.left_right(&label, &payment.sum);
            }
        }

        if self.qr_payment_count != 0 || self.qr_refund_count != 0 {
            b.separator();
            b.wrapped("QR PAYMENTS");
            b.left_right(
                &format!("Payments ({})", self.qr_payment_count),
                &self.qr_payment_sum,
            );
            b.left_right(
                &format!("Refunds ({})", self.qr_refund_count),
                &self.qr_refund_sum,
            );
        }

        let warnings: Vec<String> = self
            .warnings
            .iter()
            .map(|w| clean(w))
            .filter(|w| !w.is_empty())
            .collect();
        if !warnings.is_empty() {
            b.separator();
            b.wrapped("WARNINGS");
            for warning in &warnings {
                b.wrapped(&format!("! {warning}"));
            }
        }

        if transactions != 0 {
            b.separator();
            b.left_right("TRANSACTIONS", &transactions.to_string());
        }
        b
    }

    /// The lines of a full report's transactions on a grid `columns` characters wide (as
    /// [`Layout::columns`] says), one per transaction unless it wraps, each made as it is
    /// asked for.
    pub fn transaction_rows(
        transactions: &dyn Transactions,
        columns: usize,
    ) -> impl Iterator<Item = String> + '_ {
        (0..transactions.count()).flat_map(move |index| {
            let tx = transactions.line(index);
            let label = clean(&tx.label);
            let reference = if tx.receipt_number != 0 {
                format!("No {}", tx.receipt_number)
            } else {
                clean(&tx.id)
            };
            let left = [clean(&tx.time), label, reference]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            left_right_lines(&left, &tx.amount, columns)
        })
    }
}
