//! Pure rendering of fiscal receipts into thermal-printer text lines, PNG images and PDF documents.
#![forbid(unsafe_code)]

mod fonts;
mod layout;
mod pdf;
mod qr;
mod raster;
mod subset;

/// Width, in characters, of an 80 mm thermal printer line (and of the body of the PNG and PDF).
pub const DEFAULT_TEXT_WIDTH: usize = 48;
/// Narrowest line [`render_text`] produces (58 mm printers); narrower requests are clamped to it.
pub const MIN_TEXT_WIDTH: usize = 32;
/// Widest line [`render_text`] produces; wider requests are clamped to it.
pub const MAX_TEXT_WIDTH: usize = 64;

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

/// Why a receipt could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// An embedded font could not be parsed or subset.
    #[error("embedded font is unusable: {0}")]
    Font(String),
    /// The QR payload cannot be encoded (typically too long for a QR code).
    #[error("QR payload cannot be encoded: {0}")]
    Qr(String),
    /// The image would exceed the size limit (a receipt with thousands of lines).
    #[error("receipt image of {width}x{height} pixels exceeds the size limit")]
    TooLarge {
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
    },
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

/// Lays the receipt out as thermal-printer lines of at most `width` characters.
///
/// `width` is clamped into [`MIN_TEXT_WIDTH`]`..=`[`MAX_TEXT_WIDTH`]; use
/// [`DEFAULT_TEXT_WIDTH`] (48) for 80 mm printers. Widths count `char`s, so
/// Cyrillic and Romanian text aligns. Control characters in the input are
/// printed as spaces. The QR code is not drawn: the last line(s) read
/// `QR: <payload>`, for the printer's own QR command.
pub fn render_text(view: &ReceiptView, width: usize) -> Vec<String> {
    let width = width.clamp(MIN_TEXT_WIDTH, MAX_TEXT_WIDTH);
    let mut out = Vec::new();
    for block in layout::layout(view, width) {
        match block {
            layout::Block::Heading { text, .. } => {
                for line in layout::wrap_chars(&text, width) {
                    out.push(layout::center(&line, width));
                }
            }
            layout::Block::Line(line) => out.push(line),
        }
    }
    out
}

/// Renders the receipt as a PDF document: 80 mm wide and as long as the
/// receipt, with the text drawn in embedded (subset) DejaVu fonts and the QR
/// code drawn as vector rectangles.
///
/// Receipts longer than 200 inches (the page size limit of common readers)
/// continue on further pages.
pub fn render_pdf(view: &ReceiptView) -> Result<Vec<u8>, RenderError> {
    pdf::render(view)
}

/// Renders the receipt as an 8-bit grayscale PNG, 576 px wide (80 mm at
/// 203 dpi), with the QR code below the text.
pub fn render_png(view: &ReceiptView) -> Result<Vec<u8>, RenderError> {
    raster::render(view)
}
