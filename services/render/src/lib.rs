//! Pure rendering of fiscal receipts, shift reports (and any other [`Layout`]) into thermal-printer text lines, PNG images and PDF documents.
#![forbid(unsafe_code)]

mod fonts;
mod layout;
mod pdf;
mod qr;
mod raster;
mod receipt;
mod report;

pub use layout::{Block, Layout};
pub use receipt::{ItemLine, PaymentLine, ReceiptView};
pub use report::{
    ReportPaymentLine, ReportTransactionLine, ReportVatLine, ReportView, Transactions,
};

/// Width, in characters, of an 80 mm thermal printer line (and of the body of the PNG and PDF).
pub const DEFAULT_TEXT_WIDTH: usize = 48;
/// Narrowest line [`render_text`] produces (58 mm printers); narrower requests are clamped to it.
pub const MIN_TEXT_WIDTH: usize = 32;
/// Widest line [`render_text`] produces; wider requests are clamped to it.
pub const MAX_TEXT_WIDTH: usize = 64;

/// Why a document could not be rendered.
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
    /// PDF writing failed.
    #[error("PDF writing failed: {0}")]
    Pdf(String),
}

/// Lays the receipt out as thermal-printer lines of at most `width` characters.
///
/// `width` is clamped into [`MIN_TEXT_WIDTH`]`..=`[`MAX_TEXT_WIDTH`]; use
/// [`DEFAULT_TEXT_WIDTH`] (48) for 80 mm printers. Widths count `char`s, so
/// Cyrillic and Romanian text aligns. Control characters in the input are
/// printed as spaces. The QR code is not drawn: the last line(s) read
/// `QR: <payload>`, for the printer's own QR command.
pub fn render_text(view: &ReceiptView, width: usize) -> Vec<String> {
    view.layout(width).text_lines()
}

/// Renders the receipt as a PDF document: 80 mm wide and as long as the
/// receipt, with the text drawn in embedded (subset) DejaVu fonts and the QR
/// code drawn as vector rectangles (see [`Layout::to_pdf`]).
///
/// Receipts longer than 200 inches (the page size limit of common readers)
/// continue on further pages.
pub fn render_pdf(view: &ReceiptView) -> Result<Vec<u8>, RenderError> {
    view.layout(DEFAULT_TEXT_WIDTH).to_pdf()
}

/// Renders the receipt as an 8-bit grayscale PNG, 576 px wide (80 mm at
/// 203 dpi), with the QR code below the text (see [`Layout::to_png`]).
pub fn render_png(view: &ReceiptView) -> Result<Vec<u8>, RenderError> {
    view.layout(DEFAULT_TEXT_WIDTH).to_png()
}

/// Lays the shift report out as thermal-printer lines of at most `width`
/// characters, `width` clamped as in [`render_text`]. A full report prints one
/// line per transaction (more when a line wraps), so its length is unbounded.
pub fn render_report_text(view: &ReportView, width: usize) -> Vec<String> {
    render_report_text_of(view, &view.transactions, width)
}

/// Renders the shift report as a PDF document 80 mm wide, continuing on further
/// pages past 200 inches, like [`render_pdf`].
pub fn render_report_pdf(view: &ReportView) -> Result<Vec<u8>, RenderError> {
    render_report_pdf_of(view, &view.transactions)
}

/// Renders the shift report as an 8-bit grayscale PNG 576 px wide, like
/// [`render_png`]. A full report too long for one image is
/// [`RenderError::TooLarge`]; render it as text or PDF instead.
pub fn render_report_png(view: &ReportView) -> Result<Vec<u8>, RenderError> {
    render_report_png_of(view, &view.transactions)
}

/// [`render_report_text`] with the transactions read from `transactions` one at a time
/// (`view.transactions` is not read): a long shift's lines are held once, where they are.
pub fn render_report_text_of(
    view: &ReportView,
    transactions: &dyn Transactions,
    width: usize,
) -> Vec<String> {
    let (head, mut rows) = report_parts(view, transactions, width);
    head.text_lines_followed_by(&mut rows)
}

/// [`render_report_pdf`] with the transactions read from `transactions` one at a time, each
/// line drawn and dropped with its page (`view.transactions` is not read).
pub fn render_report_pdf_of(
    view: &ReportView,
    transactions: &dyn Transactions,
) -> Result<Vec<u8>, RenderError> {
    let (head, mut rows) = report_parts(view, transactions, DEFAULT_TEXT_WIDTH);
    head.to_pdf_followed_by(&mut rows)
}

/// [`render_report_png`] with the transactions read from `transactions` (`view.transactions`
/// is not read). An image is drawn whole, so its lines are laid out first.
pub fn render_report_png_of(
    view: &ReportView,
    transactions: &dyn Transactions,
) -> Result<Vec<u8>, RenderError> {
    let (head, mut rows) = report_parts(view, transactions, DEFAULT_TEXT_WIDTH);
    head.to_png_followed_by(&mut rows)
}

/// A report's layout up to its transactions, and their lines, each made as it is read.
fn report_parts<'a>(
    view: &ReportView,
    transactions: &'a dyn Transactions,
    width: usize,
) -> (Layout, impl Iterator<Item = String> + 'a) {
    let head = view.layout_head(width, transactions.count());
    let rows = ReportView::transaction_rows(transactions, head.columns());
    (head, rows)
}
