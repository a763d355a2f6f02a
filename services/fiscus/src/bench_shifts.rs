//! `fiscus bench --only shifts`: CloseShift on a long shift — `--shift-receipts` receipts and a
//! tenth as many QR payments on one terminal — to its Z-report, and that shift's full Z-report
//! rendered as a PDF, with the process's memory before and after each.
//!
//! The shift is filled straight through SQL (receipts with their shift lines in the journal's
//! schema, payments in PaymentService's): what is measured is the closing and the rendering,
//! not the signing, which the receipts benchmark measures.

use std::time::Instant;

use fiscus_kit::db::{ConnectSettings, Database};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::shift_service_client::ShiftServiceClient;

use crate::bench::{BenchArgs, InProcess, bench_config, connections};

/// This process's resident memory now and at its peak, in MiB (Linux).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let read = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (read("VmRSS:"), read("VmHWM:"))
}

fn terminal() -> pb::Terminal {
    pb::Terminal {
        merchant_tin: "37900846788".into(),
        branch_no: "001".into(),
        pos_no: "SHIFT".into(),
    }
}

pub async fn run(args: &BenchArgs, suffix: &str, settings: &ConnectSettings) -> anyhow::Result<()> {
    let receipts = args.shift_receipts;
    let payments = receipts / 10;
    println!(
        "\nfiscus bench: CloseShift on a shift of {receipts} receipts and {payments} QR payments, Postgres + Redis"
    );
    let receipts_schema = format!("bench_sreceipts_{}", &suffix[..12]);
    let payments_schema = format!("bench_spayments_{}", &suffix[..12]);
    let shifts_schema = format!("bench_shifts_{}", &suffix[..12]);
    let service = InProcess::start_all(
        &[
            (&fiscus_receipts::MODULE, receipts_schema.as_str()),
            (&fiscus_payments::MODULE, payments_schema.as_str()),
            (&fiscus_shifts::MODULE, shifts_schema.as_str()),
        ],
        bench_config(args, suffix)?,
        args,
        settings,
        false,
    )
    .await?;
    let outcome = measure(
        args,
        service.addr,
        &receipts_schema,
        &payments_schema,
        settings,
    )
    .await;
    service.stop().await?;
    outcome
}

async fn measure(
    args: &BenchArgs,
    addr: std::net::SocketAddr,
    receipts_schema: &str,
    payments_schema: &str,
    settings: &ConnectSettings,
) -> anyhow::Result<()> {
    let channel = connections(addr).await?[0].clone();
    let mut shifts = ShiftServiceClient::new(channel).max_decoding_message_size(1 << 30);
    let shift = shifts
        .open_shift(pb::OpenShiftRequest {
            operation_id: uuid::Uuid::new_v4().to_string(),
            terminal: Some(terminal()),
            opened_by: "bench".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .shift
        .ok_or_else(|| anyhow::anyhow!("no shift"))?;
    let filled = Instant::now();
    fill(
        args,
        receipts_schema,
        payments_schema,
        &shift.shift_id,
        settings,
    )
    .await?;
    println!(
        "filled in {:.1} s; the process at {:.0} MiB resident",
        filled.elapsed().as_secs_f64(),
        memory_mib().0
    );

    let before = memory_mib();
    let started = Instant::now();
    let closed = shifts
        .close_shift(pb::CloseShiftRequest {
            operation_id: uuid::Uuid::new_v4().to_string(),
            terminal: Some(terminal()),
            closed_by: "bench".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let to_z = started.elapsed();
    let after = memory_mib();
    let z = closed.z_report.unwrap_or_default();
    println!(
        "CloseShift to its Z-report: {:.0} ms ({} receipts, {} QR payments, net {}); \
         resident {:.0} → {:.0} MiB, peak {:.0} → {:.0} MiB",
        to_z.as_secs_f64() * 1000.0,
        z.receipt_count,
        z.qr_payment_count,
        z.total_sum,
        before.0,
        after.0,
        before.1,
        after.1
    );

    let started = Instant::now();
    let rendered = shifts
        .get_z_report(pb::GetZReportRequest {
            terminal: Some(terminal()),
            report: Some(pb::get_z_report_request::Report::ShiftId(shift.shift_id)),
            format: pb::DocumentFormat::Pdf.into(),
            full: true,
        })
        .await?
        .into_inner();
    let rendering = started.elapsed();
    let after_pdf = memory_mib();
    let report = rendered.report.unwrap_or_default();
    println!(
        "full Z-report as PDF: {:.1} s, {} lines, {:.1} MiB of PDF; resident {:.0} MiB, peak {:.0} MiB",
        rendering.as_secs_f64(),
        report.transactions.len(),
        rendered.document.map_or(0, |d| d.content.len()) as f64 / (1024.0 * 1024.0),
        after_pdf.0,
        after_pdf.1
    );
    Ok(())
}

/// `receipts` sales of 1100 (100.00 VAT) in cash on the bench terminal, in `shift_id`, with
/// their shift lines; and a tenth as many QR payments of 12.50 in the same shift.
async fn fill(
    args: &BenchArgs,
    receipts_schema: &str,
    payments_schema: &str,
    shift_id: &str,
    settings: &ConnectSettings,
) -> anyhow::Result<()> {
    let count = i64::try_from(args.shift_receipts)?;
    let t = terminal();
    let journal = Database::connect(&args.database_url, receipts_schema, settings).await?;
    let Database::Postgres(pool) = &journal else {
        anyhow::bail!("the shift benchmark runs on Postgres");
    };
    sqlx::query(
        "INSERT INTO receipts (id, merchant_tin, branch_no, pos_no, number, kind, receipt_type, \
           reference, shift_id, total_minor, vat_minor, city_tax_minor, currency, fiscal_state, \
           document, previous_hash, hash, signature, key_id, created_at_us) \
         SELECT 'bench-' || n, $1, $2, $3, n, 'SALE', 'B2C_RECEIPT', 'r' || n, $4, 110000, \
           10000, 0, 'MNT', 'LOCAL_SIGNED', '{}', '\\x00', '\\x00', '\\x00', 'bench', \
           1700000000000000 + n \
         FROM generate_series(1, $5) AS n",
    )
    .bind(&t.merchant_tin)
    .bind(&t.branch_no)
    .bind(&t.pos_no)
    .bind(shift_id)
    .bind(count)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO receipt_lines (receipt_id, line, code, rate, count, base_minor, vat_minor, \
           city_tax_minor, gross_minor) \
         SELECT 'bench-' || n, 'TAX', 'VAT_ABLE', 1000, 0, 100000, 10000, 0, 110000 \
           FROM generate_series(1, $1) AS n \
         UNION ALL \
         SELECT 'bench-' || n, 'PAY', 'CASH', 0, 1, 0, 0, 0, 110000 \
           FROM generate_series(1, $1) AS n",
    )
    .bind(count)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE receipts").execute(pool).await?;
    sqlx::query("ANALYZE receipt_lines").execute(pool).await?;
    journal.close().await;

    let payments = Database::connect(&args.database_url, payments_schema, settings).await?;
    let Database::Postgres(pool) = &payments else {
        anyhow::bail!("the shift benchmark runs on Postgres");
    };
    sqlx::query(
        "INSERT INTO transactions (transaction_id, merchant_tin, branch_no, pos_no, amount_minor, \
           currency, paid_at_us, tx_type, shift_id, recorded_at_us) \
         SELECT 'bench-' || n, $1, $2, $3, 1250, 'MDL', 1700000000000000 + 10 * n, 'PAYMENT', \
           $4, 1700000000000000 + 10 * n \
         FROM generate_series(1, $5) AS n",
    )
    .bind(&t.merchant_tin)
    .bind(&t.branch_no)
    .bind(&t.pos_no)
    .bind(shift_id)
    .bind(count / 10)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE transactions").execute(pool).await?;
    payments.close().await;
    Ok(())
}
