//! X- and Z-reports: the shift's totals as the contract's `Report`, and rendered for print.

use chrono::{DateTime, Utc};
use fiscus_domain::Money;
use fiscus_kit::ApiError;
use fiscus_proto::v1 as pb;
use fiscus_render::{ReportPaymentLine, ReportTransactionLine, ReportVatLine, ReportView};

/// The summary report of `shift` from its recorders' totals (transactions come separately).
pub fn summary(
    kind: pb::ReportKind,
    number: u64,
    shift: &pb::Shift,
    generated_at: prost_types::Timestamp,
    totals: crate::peers::Totals,
) -> pb::Report {
    let (totals, qr) = (totals.receipts, totals.payments);
    let warnings = mia_mismatch(&qr);
    pb::Report {
        report_number: number,
        kind: kind.into(),
        terminal: shift.terminal.clone(),
        shift: Some(shift.clone()),
        generated_at: Some(generated_at),
        currency: totals.currency,
        receipt_count: totals.receipt_count,
        first_receipt_number: totals.first_receipt_number,
        last_receipt_number: totals.last_receipt_number,
        sale_count: totals.sale_count,
        sale_sum: totals.sale_sum,
        refund_count: totals.refund_count,
        refund_sum: totals.refund_sum,
        cancellation_count: totals.cancellation_count,
        cancellation_sum: totals.cancellation_sum,
        zero_receipt_count: totals.zero_receipt_count,
        total_sum: totals.total_sum,
        vat_lines: totals.vat_lines,
        total_vat: totals.total_vat,
        total_city_tax: totals.total_city_tax,
        payment_methods: totals.payment_methods,
        qr_payment_count: qr.qr_payment_count,
        qr_payment_sum: qr.qr_payment_sum,
        qr_refund_count: qr.qr_refund_count,
        qr_refund_sum: qr.qr_refund_sum,
        full: false,
        transactions: Vec::new(),
        warnings,
    }
}

/// Where MIA's own Z-report of the shift disagrees with fiscus's QR figures: one warning per
/// figure, naming both, for the operator to see rather than a figure silently chosen.
fn mia_mismatch(qr: &pb::GetShiftPaymentTotalsResponse) -> Vec<String> {
    if !qr.mia_checked {
        return Vec::new();
    }
    let same = |a: &str, b: &str| match (Money::parse(a), Money::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let mut warnings = Vec::new();
    let mut compare = |what: &str, fiscus: String, mia: String, equal: bool| {
        if !equal {
            warnings.push(format!("QR {what}: fiscus {fiscus}, MIA's Z-report {mia}"));
        }
    };
    compare(
        "payment count",
        qr.qr_payment_count.to_string(),
        qr.mia_payment_count.to_string(),
        qr.qr_payment_count == qr.mia_payment_count,
    );
    compare(
        "payment sum",
        qr.qr_payment_sum.clone(),
        qr.mia_payment_sum.clone(),
        same(&qr.qr_payment_sum, &qr.mia_payment_sum),
    );
    compare(
        "refund count",
        qr.qr_refund_count.to_string(),
        qr.mia_refund_count.to_string(),
        qr.qr_refund_count == qr.mia_refund_count,
    );
    compare(
        "refund sum",
        qr.qr_refund_sum.clone(),
        qr.mia_refund_sum.clone(),
        same(&qr.qr_refund_sum, &qr.mia_refund_sum),
    );
    warnings
}

fn time(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn enum_label(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).replace('_', " ")
}

/// What the printed report shows.
fn view(report: &pb::Report, merchant_name: &str) -> ReportView {
    let shift = report.shift.clone().unwrap_or_default();
    let terminal = report.terminal.clone().unwrap_or_default();
    let title = match report.kind() {
        pb::ReportKind::Z => format!("Z-REPORT No {}", report.report_number),
        _ => "X-REPORT".to_owned(),
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    ReportView {
        title,
        merchant_name: merchant_name.to_owned(),
        merchant_tin: terminal.merchant_tin,
        branch_no: terminal.branch_no,
        pos_no: terminal.pos_no,
        shift_number: shift.number,
        opened_at: time(shift.opened_at.as_ref()),
        closed_at: shift.closed_at.as_ref().map(|t| time(Some(t))),
        opened_by: shift.opened_by.clone(),
        closed_by: some(&shift.closed_by),
        generated_at: time(report.generated_at.as_ref()),
        currency: report.currency.clone(),
        receipt_count: report.receipt_count,
        first_receipt_number: report.first_receipt_number,
        last_receipt_number: report.last_receipt_number,
        sale_count: report.sale_count,
        sale_sum: report.sale_sum.clone(),
        refund_count: report.refund_count,
        refund_sum: report.refund_sum.clone(),
        cancellation_count: report.cancellation_count,
        cancellation_sum: report.cancellation_sum.clone(),
        zero_receipt_count: report.zero_receipt_count,
        total_sum: report.total_sum.clone(),
        vat_lines: report
            .vat_lines
            .iter()
            .map(|l| ReportVatLine {
                label: format!(
                    "{} {}%",
                    enum_label(l.tax_type().as_str_name(), "TAX_TYPE_"),
                    l.rate
                ),
                taxable_base: l.taxable_base.clone(),
                vat: l.vat.clone(),
                gross: l.gross.clone(),
            })
            .collect(),
        total_vat: report.total_vat.clone(),
        total_city_tax: report.total_city_tax.clone(),
        payment_methods: report
            .payment_methods
            .iter()
            .map(|l| ReportPaymentLine {
                label: enum_label(l.method().as_str_name(), "PAYMENT_METHOD_"),
                count: l.count,
                sum: l.sum.clone(),
            })
            .collect(),
        qr_payment_count: report.qr_payment_count,
        qr_payment_sum: report.qr_payment_sum.clone(),
        qr_refund_count: report.qr_refund_count,
        qr_refund_sum: report.qr_refund_sum.clone(),
        warnings: report.warnings.clone(),
        // Read from the report one at a time as it is written (see `Lines`).
        transactions: Vec::new(),
    }
}

/// A full report's transactions as the renderer reads them: each printed line made from the
/// report's own when it is written, so a long shift's lines are held once, in the answer.
struct Lines<'a>(&'a [pb::ReportTransaction]);

impl fiscus_render::Transactions for Lines<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn line(&self, index: usize) -> ReportTransactionLine {
        let t = &self.0[index];
        ReportTransactionLine {
            label: enum_label(t.r#type().as_str_name(), "REPORT_TRANSACTION_TYPE_"),
            id: t.id.clone(),
            receipt_number: t.receipt_number,
            time: time(t.time.as_ref()),
            amount: t.amount.clone(),
        }
    }
}

/// Renders `report` in `format`.
pub fn render(
    report: &pb::Report,
    merchant_name: &str,
    format: pb::DocumentFormat,
) -> Result<pb::RenderedDocument, ApiError> {
    let failed = |e: String| {
        ApiError::Internal(anyhow::anyhow!(
            "rendering the report of shift {}: {e}",
            report
                .shift
                .as_ref()
                .map(|s| s.shift_id.as_str())
                .unwrap_or("")
        ))
    };
    if format == pb::DocumentFormat::Json {
        let mut content = Vec::new();
        fiscus_proto::write_json("fiscus.v1.Report", report, &mut content).map_err(failed)?;
        return Ok(pb::RenderedDocument {
            format: format.into(),
            content_type: "application/json".to_owned(),
            content,
            text_lines: Vec::new(),
        });
    }
    let view = view(report, merchant_name);
    let lines = Lines(&report.transactions);
    let rendered =
        |r: Result<Vec<u8>, fiscus_render::RenderError>| r.map_err(|e| failed(e.to_string()));
    // text_lines only for TXT: beside a PDF or PNG they would be the full report's every line
    // once more in the answer.
    let (content_type, content, text_lines) = match format {
        pb::DocumentFormat::Pdf => (
            "application/pdf",
            rendered(fiscus_render::render_report_pdf_of(&view, &lines))?,
            Vec::new(),
        ),
        pb::DocumentFormat::Png => (
            "image/png",
            rendered(fiscus_render::render_report_png_of(&view, &lines))?,
            Vec::new(),
        ),
        _ => {
            let text_lines = fiscus_render::render_report_text_of(
                &view,
                &lines,
                fiscus_render::DEFAULT_TEXT_WIDTH,
            );
            let content = text_lines.join("\n").into_bytes();
            ("text/plain; charset=utf-8", content, text_lines)
        }
    };
    Ok(pb::RenderedDocument {
        format: format.into(),
        content_type: content_type.to_owned(),
        content,
        text_lines,
    })
}
