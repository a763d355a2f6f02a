//! The receipt as printed: its fields and how they are laid out.

use crate::layout::{Layout, clean};

/// Everything printed on a receipt, already formatted as strings (amounts are decimal strings like "5600.00").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptView {
    /// Document title, e.g. "SALE RECEIPT", "REFUND", "CANCELLATION", "ZERO RECEIPT".
    pub title: String,
    /// Merchant (taxpayer) name; printed centered at the top.
    pub merchant_name: String,
    /// Merchant tax identification number.
    pub merchant_tin: String,
    /// Branch number.
    pub branch_no: String,
    /// Point-of-sale (register) number.
    pub pos_no: String,
    /// Sequential receipt number.
    pub receipt_number: u64,
    /// Fiscal receipt identifier.
    pub receipt_id: String,
    /// Local date and time, e.g. "2026-11-23 10:15:00".
    pub moment: String,
    /// Cashier name, if any.
    pub cashier: Option<String>,
    /// Customer line, e.g. "Buyer TIN 37900846788" — printed as given.
    pub customer: Option<String>,
    /// Goods and services sold.
    pub items: Vec<ItemLine>,
    /// Receipt total.
    pub total_amount: String,
    /// VAT included in the total.
    pub total_vat: String,
    /// City tax included in the total.
    pub total_city_tax: String,
    /// Currency code: "MNT", "MDL", "EUR".
    pub currency: String,
    /// Payments made.
    pub payments: Vec<PaymentLine>,
    /// Human-readable signature reference, e.g. "key ed25519:ab12cd34 · hash 9f86d081…".
    pub signature_reference: String,
    /// The exact text the QR code encodes. When empty, no QR code is drawn.
    pub qr_payload: String,
    /// Extra lines such as "Lottery: AB 12345678", "COPY"; printed centered.
    pub footer: Vec<String>,
}

/// One receipt item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemLine {
    /// Item name (wrapped when long).
    pub name: String,
    /// Quantity, e.g. "2" or "0.350".
    pub quantity: String,
    /// Measure unit, e.g. "pcs", "kg"; may be empty.
    pub measure_unit: String,
    /// Price of one unit.
    pub unit_price: String,
    /// Line total.
    pub total_amount: String,
    /// VAT included in the line total.
    pub vat: String,
    /// City tax included in the line total.
    pub city_tax: String,
}

/// One payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentLine {
    /// Payment method label, e.g. "Cash", "Card".
    pub label: String,
    /// Amount paid.
    pub amount: String,
}

impl ReceiptView {
    /// Lays the receipt out on a grid `width` characters wide (clamped like
    /// [`Layout::new`]): merchant heading, identification, items, totals, payments,
    /// signature, footer, the QR payload as text and then the QR code itself.
    pub fn layout(&self, width: usize) -> Layout {
        let title = format!("{} No. {}", clean(&self.title), self.receipt_number);
        let mut b = Layout::new(width, &title, &self.merchant_name);

        b.merchant(
            &self.merchant_name,
            &self.merchant_tin,
            &self.branch_no,
            &self.pos_no,
        );
        b.heading(&title, false);
        b.left_right("Date", &self.moment);
        if let Some(cashier) = &self.cashier {
            b.left_right("Cashier", cashier);
        }
        if let Some(customer) = &self.customer {
            b.wrapped(customer);
        }

        b.separator();
        for item in &self.items {
            b.wrapped(&item.name);
            let quantity = clean(&item.quantity);
            let unit = clean(&item.measure_unit);
            let price = clean(&item.unit_price);
            let left = if unit.is_empty() {
                format!("  {quantity} x {price}")
            } else {
                format!("  {quantity} {unit} x {price}")
            };
            b.left_right(&left, &item.total_amount);
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
        b.left_right("VAT", &with_currency(&self.total_vat));
        b.left_right("City tax", &with_currency(&self.total_city_tax));
        b.left_right("TOTAL", &with_currency(&self.total_amount));
        for payment in &self.payments {
            b.left_right(&payment.label, &payment.amount);
        }

        b.separator();
        b.wrapped(&self.signature_reference);
        let id = clean(&self.receipt_id);
        if !id.is_empty() {
            b.wrapped(&format!("ID {id}"));
        }
        for line in &self.footer {
            b.centered(line);
        }
        if !self.qr_payload.is_empty() {
            // Printed by characters, not words, and not normalized, so the payload reads
            // back exactly (control characters aside) for a printer's own QR command.
            b.line(&format!("QR: {}", self.qr_payload));
            b.qr(&self.qr_payload);
        }
        b
    }
}
