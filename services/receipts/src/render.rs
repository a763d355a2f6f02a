//! Printable receipts: the stored receipt as TXT (thermal printer), PDF or PNG, with its QR code.

use fiscus_domain::chain::hex;
use fiscus_kit::ApiError;
use fiscus_proto::v1 as pb;
use fiscus_render::{ItemLine, PaymentLine, ReceiptView};

use crate::config::Policy;
use crate::proto::{self, SIGNATURE_FORMAT_QR};

fn title(receipt: &pb::Receipt) -> String {
    match receipt.kind() {
        pb::ReceiptKind::Sale => match receipt.r#type() {
            pb::ReceiptType::B2cInvoice | pb::ReceiptType::B2bInvoice => "INVOICE",
            _ => "SALE RECEIPT",
        },
        pb::ReceiptKind::Refund => "REFUND",
        pb::ReceiptKind::Zero => "ZERO RECEIPT",
        pb::ReceiptKind::Cancellation => "CANCELLATION",
        pb::ReceiptKind::Unspecified => "RECEIPT",
    }
    .to_owned()
}

pub fn view(receipt: &pb::Receipt, policy: &Policy, copy: bool) -> ReceiptView {
    let terminal = receipt.terminal.clone().unwrap_or_default();
    let moment = receipt
        .signed_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| {
            t.with_timezone(&policy.business_day)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let mut footer = Vec::new();
    if receipt.fiscal_state() == pb::FiscalState::Cancelled {
        footer.push(format!("CANCELLED by {}", receipt.cancelled_by_receipt_id));
    }
    if !receipt.original_receipt_id.is_empty() {
        footer.push(format!("Original receipt {}", receipt.original_receipt_id));
    }
    if !receipt.ebarimt_id.is_empty() {
        footer.push(format!("ДДТД: {}", receipt.ebarimt_id));
    }
    if !receipt.lottery.is_empty() {
        footer.push(format!("Lottery: {}", receipt.lottery));
    }
    let fiskaltrust = receipt.provider() == pb::Provider::Fiskaltrust;
    if fiskaltrust && !receipt.ft_receipt_identification.is_empty() {
        footer.push(format!(
            "Receipt {} · cash box {}",
            receipt.ft_receipt_identification, receipt.ft_cashbox_identification
        ));
    }
    // fiskaltrust: the signatures and notices the middleware returned, as it asks them printed
    // (its QR code is the receipt's qr_data).
    for signature in &receipt.signatures {
        if signature.format & 0xFF == SIGNATURE_FORMAT_QR {
            footer.extend((!signature.caption.is_empty()).then(|| signature.caption.clone()));
        } else if signature.caption.is_empty() {
            footer.push(signature.data.clone());
        } else {
            footer.push(format!("{}: {}", signature.caption, signature.data));
        }
    }
    if receipt.fiscal_state() == pb::FiscalState::Pending {
        if fiskaltrust {
            // fiskaltrust's failure scenario: the copy a till prints while the middleware cannot
            // be reached, kept until it is signed late.
            footer.push("ELECTRONIC RECORDING SYSTEM FAILED".to_owned());
            footer.push("Receipt copy: to be signed late".to_owned());
        } else {
            // Printed before the tax authority answered: its ДДТД, lottery and QR come later.
            footer.push("Fiscalization pending".to_owned());
        }
    }
    if copy {
        footer.push("COPY".to_owned());
    }
    let customer = if !receipt.customer_tin.is_empty() {
        Some(format!("Buyer TIN {}", receipt.customer_tin))
    } else if !receipt.consumer_no.is_empty() {
        Some(format!("Consumer {}", receipt.consumer_no))
    } else {
        None
    };
    ReceiptView {
        title: title(receipt),
        merchant_name: policy.merchant_name(&terminal.merchant_tin),
        merchant_tin: terminal.merchant_tin.clone(),
        branch_no: terminal.branch_no.clone(),
        pos_no: terminal.pos_no.clone(),
        receipt_number: receipt.receipt_number,
        receipt_id: receipt.id.clone(),
        moment,
        cashier: (!receipt.cashier.is_empty()).then(|| receipt.cashier.clone()),
        customer,
        items: receipt
            .items
            .iter()
            .map(|i| ItemLine {
                name: i.name.clone(),
                quantity: i.quantity.clone(),
                measure_unit: i.measure_unit.clone(),
                unit_price: i.unit_price.clone(),
                total_amount: i.total_amount.clone(),
                vat: i.total_vat.clone(),
                city_tax: i.total_city_tax.clone(),
            })
            .collect(),
        total_amount: receipt.total_amount.clone(),
        total_vat: receipt.total_vat.clone(),
        total_city_tax: receipt.total_city_tax.clone(),
        currency: receipt.currency.clone(),
        payments: receipt
            .payments
            .iter()
            .map(|p| PaymentLine {
                label: if p.description.is_empty() {
                    p.method()
                        .as_str_name()
                        .trim_start_matches("PAYMENT_METHOD_")
                        .replace('_', " ")
                } else {
                    p.description.clone()
                },
                amount: p.amount.clone(),
            })
            .collect(),
        signature_reference: format!(
            "key {} · hash {}",
            receipt.key_id,
            hex(receipt.hash.get(..16).unwrap_or_default())
        ),
        // Byte for byte what the receipt's qr_data says, so a client printing its own receipt
        // prints the same code.
        qr_payload: receipt.qr_data.clone(),
        footer,
    }
}

/// Renders `receipt` in `format`.
pub fn render(
    receipt: &pb::Receipt,
    policy: &Policy,
    format: pb::DocumentFormat,
    line_width: u32,
    copy: bool,
) -> Result<pb::RenderedDocument, ApiError> {
    let view = view(receipt, policy, copy);
    let width = match line_width {
        0 => fiscus_render::DEFAULT_TEXT_WIDTH,
        n => usize::try_from(n).unwrap_or(fiscus_render::DEFAULT_TEXT_WIDTH),
    };
    let text_lines = fiscus_render::render_text(&view, width);
    let failed = |e: fiscus_render::RenderError| {
        ApiError::Internal(anyhow::anyhow!("rendering receipt {}: {e}", receipt.id))
    };
    let (content_type, content) = match format {
        pb::DocumentFormat::Txt => (
            "text/plain; charset=utf-8",
            text_lines.join("\n").into_bytes(),
        ),
        pb::DocumentFormat::Pdf => (
            "application/pdf",
            fiscus_render::render_pdf(&view).map_err(failed)?,
        ),
        pb::DocumentFormat::Png => (
            "image/png",
            fiscus_render::render_png(&view).map_err(failed)?,
        ),
        pb::DocumentFormat::Json => ("application/json", {
            let mut json = Vec::new();
            proto::write_json(receipt, &mut json)?;
            json
        }),
        pb::DocumentFormat::Unspecified => {
            return Err(ApiError::invalid(
                "format",
                "is required: TXT, PDF, PNG or JSON",
            ));
        }
    };
    Ok(pb::RenderedDocument {
        format: format.into(),
        content_type: content_type.to_owned(),
        content,
        text_lines,
    })
}
