//! QR code module matrix.

use qrcode::{Color, QrCode};

use crate::RenderError;

/// Modules of quiet zone around the symbol (ISO/IEC 18004 minimum).
pub(crate) const QUIET_ZONE: usize = 4;

/// A square QR symbol, row-major, `true` for dark modules.
pub(crate) struct QrMatrix {
    pub(crate) size: usize,
    dark: Vec<bool>,
}

impl QrMatrix {
    /// Encodes `payload`; `None` when the payload is empty (no QR code is drawn).
    pub(crate) fn encode(payload: &str) -> Result<Option<Self>, RenderError> {
        if payload.is_empty() {
            return Ok(None);
        }
        let code = QrCode::new(payload.as_bytes()).map_err(|e| RenderError::Qr(e.to_string()))?;
        let size = code.width();
        let dark: Vec<bool> = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        if dark.len() != size * size {
            return Err(RenderError::Qr(format!(
                "module matrix has {} modules, expected {size}x{size}",
                dark.len()
            )));
        }
        Ok(Some(Self { size, dark }))
    }

    /// Side of the symbol including the quiet zone on both sides, in modules.
    pub(crate) fn size_with_quiet_zone(&self) -> usize {
        self.size + 2 * QUIET_ZONE
    }

    /// Horizontal runs of dark modules: `(row, first column, length)`.
    pub(crate) fn dark_runs(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.dark
            .chunks(self.size)
            .enumerate()
            .flat_map(|(row, cells)| {
                let mut runs = Vec::new();
                let mut start = None;
                for (col, &dark) in cells.iter().chain(std::iter::once(&false)).enumerate() {
                    match (dark, start) {
                        (true, None) => start = Some(col),
                        (false, Some(s)) => {
                            runs.push((row, s, col - s));
                            start = None;
                        }
                        _ => {}
                    }
                }
                runs
            })
    }
}
