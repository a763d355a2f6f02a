//! PNG output of a [`Layout`]: rasterized for an 80 mm thermal printer at 203 dpi.

use std::collections::HashMap;

use ab_glyph::{Font, OutlinedGlyph, PxScale, ScaleFont, point};

use crate::RenderError;
use crate::fonts::Face;
use crate::layout::{self, Block, Layout};
use crate::qr::{QUIET_ZONE, QrMatrix};

/// Printable width of an 80 mm thermal printer at 203 dpi.
const WIDTH: u32 = 576;
/// Left and right margin; the body grid fills the rest (48 columns: 11 px apart).
const MARGIN: u32 = 24;
/// Top and bottom margin.
const V_MARGIN: u32 = 24;
/// Em sizes of the headings in pixels.
const MAJOR_HEADING_EM_PX: f32 = 30.0;
const MINOR_HEADING_EM_PX: f32 = 24.0;
/// Space above and below a heading.
const HEADING_GAP: u32 = 6;
/// QR module size bounds in pixels (integer modules keep the matrix crisp).
const MIN_MODULE_PX: usize = 4;
const MAX_MODULE_PX: usize = 8;
/// 203 dpi in pixels per metre, recorded in the PNG's pHYs chunk.
const PIXELS_PER_METRE: u32 = 7992;
/// Upper bound on the image size (~64 MB of pixels, some 2500 items).
const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// A line of text to draw.
struct TextRun {
    mono: bool,
    scale: PxScale,
    x: f32,
    baseline: f32,
    text: String,
}

/// A QR symbol to draw.
struct QrPlacement {
    matrix: QrMatrix,
    module: usize,
    x: usize,
    y: usize,
}

pub(crate) fn render(layout: &Layout) -> Result<Vec<u8>, RenderError> {
    let mono = Face::mono()?;
    let sans = Face::sans()?;

    // Encoded first: the widest QR code sets the image width.
    let mut qrs = Vec::new();
    for block in layout.blocks() {
        if let Block::Qr(payload) = block
            && let Some(matrix) = QrMatrix::encode(payload)?
        {
            let usable = (WIDTH - 2 * MARGIN) as usize;
            let module =
                (usable / matrix.size_with_quiet_zone()).clamp(MIN_MODULE_PX, MAX_MODULE_PX);
            qrs.push((matrix, module));
        }
    }
    let widest_qr = qrs
        .iter()
        .map(|(matrix, module)| matrix.size_with_quiet_zone() * module)
        .max()
        .unwrap_or(0);
    let width = WIDTH.max(u32::try_from(widest_qr).unwrap_or(u32::MAX));

    // Body metrics: the mono face scaled so the grid fills the line between the margins.
    let column_px = (WIDTH - 2 * MARGIN) as f32 / layout.columns() as f32;
    let column_em = mono.advance_units(mono.glyph(' ').0) / mono.units_per_em();
    let body_em_px = column_px / column_em;
    let body_scale = px_scale(&mono, body_em_px);
    let (body_ascent, body_line) = line_metrics(&mono, body_em_px);

    let mut runs = Vec::new();
    let mut placements = Vec::new();
    let mut qrs = qrs.into_iter();
    let mut y = V_MARGIN as f32;
    for block in layout.blocks() {
        match block {
            Block::Heading { text, major } => {
                let em_px = if *major {
                    MAJOR_HEADING_EM_PX
                } else {
                    MINOR_HEADING_EM_PX
                };
                let (ascent, line) = line_metrics(&sans, em_px);
                let max = (width - 2 * MARGIN) as f32;
                let measure = |s: &str| sans.text_width_em(s) * em_px;
                y += HEADING_GAP as f32;
                for text in layout::wrap_by(text, max, &measure) {
                    let x = ((width as f32 - measure(&text)) / 2.0).max(0.0).round();
                    runs.push(TextRun {
                        mono: false,
                        scale: px_scale(&sans, em_px),
                        x,
                        baseline: y + ascent,
                        text,
                    });
                    y += line;
                }
                y += HEADING_GAP as f32;
            }
            Block::Line(text) => {
                runs.push(TextRun {
                    mono: true,
                    scale: body_scale,
                    x: MARGIN as f32,
                    baseline: y + body_ascent,
                    text: text.clone(),
                });
                y += body_line;
            }
            Block::Qr(_) => {
                // Empty payloads were never encoded, so they take no place either.
                if let Some((matrix, module)) = qrs.next() {
                    let side = matrix.size_with_quiet_zone() * module;
                    let top = y.ceil() as u64;
                    placements.push(QrPlacement {
                        x: (width as usize - side) / 2,
                        y: usize::try_from(top).map_err(|_| too_large(width, top))?,
                        matrix,
                        module,
                    });
                    y = (top + side as u64) as f32;
                }
            }
        }
    }

    let height = y.ceil() as u64 + u64::from(V_MARGIN);
    if u64::from(width) * height > MAX_PIXELS {
        return Err(too_large(width, height));
    }
    let height = u32::try_from(height).map_err(|_| too_large(width, height))?;

    let mut canvas = Canvas::new(width, height);
    let mut cache = GlyphCache::new();
    for run in &runs {
        let face = if run.mono { &mono } else { &sans };
        canvas.draw_text(face, run, &mut cache);
    }
    for p in &placements {
        for (row, col, len) in p.matrix.dark_runs() {
            canvas.fill(
                p.x + (QUIET_ZONE + col) * p.module,
                p.y + (QUIET_ZONE + row) * p.module,
                len * p.module,
                p.module,
            );
        }
    }
    canvas.encode()
}

fn too_large(width: u32, height: u64) -> RenderError {
    RenderError::TooLarge {
        width,
        height: u32::try_from(height).unwrap_or(u32::MAX),
    }
}

/// ab_glyph scales by font height (ascent − descent); convert from an em size.
fn px_scale(face: &Face, em_px: f32) -> PxScale {
    PxScale::from(em_px * face.font.height_unscaled() / face.units_per_em())
}

/// Ascent and line height in pixels for a face at `em_px`.
fn line_metrics(face: &Face, em_px: f32) -> (f32, f32) {
    let (ascent, descent) = face.ascent_descent_em();
    (
        (ascent * em_px).round(),
        ((ascent - descent) * em_px).ceil(),
    )
}

/// Rasterized glyphs by (mono face, scale, glyph id, quarter-pixel phase).
type GlyphCache = HashMap<(bool, u32, u16, u8), Option<GlyphBitmap>>;

/// A glyph's coverage, positioned relative to its pen position on the baseline.
struct GlyphBitmap {
    left: i64,
    top: i64,
    width: usize,
    coverage: Vec<u8>,
}

impl GlyphBitmap {
    fn rasterize(outlined: OutlinedGlyph) -> Self {
        let bounds = outlined.px_bounds();
        let width = bounds.width().max(0.0) as usize;
        let height = bounds.height().max(0.0) as usize;
        let mut coverage = vec![0u8; width * height];
        outlined.draw(|x, y, c| {
            let index = y as usize * width + x as usize;
            if let Some(cell) = coverage.get_mut(index) {
                *cell = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        });
        Self {
            left: bounds.min.x as i64,
            top: bounds.min.y as i64,
            width: width.max(1),
            coverage,
        }
    }
}

/// 8-bit grayscale pixels, 255 = white paper.
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; width as usize * height as usize],
        }
    }

    /// Darkens a pixel by `coverage` (0 = none, 255 = black).
    fn darken(&mut self, x: i64, y: i64, coverage: u8) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return;
        }
        let index = y as usize * self.width as usize + x as usize;
        let ink = 255 - coverage;
        if let Some(pixel) = self.pixels.get_mut(index) {
            *pixel = (*pixel).min(ink);
        }
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize) {
        let stride = self.width as usize;
        for row in y..(y + h).min(self.height as usize) {
            let start = row * stride + x.min(stride);
            let end = row * stride + (x + w).min(stride);
            if let Some(span) = self.pixels.get_mut(start..end) {
                span.fill(0);
            }
        }
    }

    fn draw_text(&mut self, face: &Face, run: &TextRun, cache: &mut GlyphCache) {
        let scaled = face.font.as_scaled(run.scale);
        let baseline = run.baseline.round() as i64;
        let mut pen = run.x;
        for c in run.text.chars() {
            let (id, _) = face.glyph(c);
            // Quarter-pixel pen positions: glyphs rasterize once per phase.
            let quarters = (pen * 4.0).round() as i64;
            let phase = quarters.rem_euclid(4) as u8;
            let key = (run.mono, run.scale.x.to_bits(), id.0, phase);
            let bitmap = cache.entry(key).or_insert_with(|| {
                let glyph =
                    id.with_scale_and_position(run.scale, point(f32::from(phase) / 4.0, 0.0));
                face.font.outline_glyph(glyph).map(GlyphBitmap::rasterize)
            });
            if let Some(bitmap) = bitmap {
                let left = quarters.div_euclid(4) + bitmap.left;
                let top = baseline + bitmap.top;
                for (i, &coverage) in bitmap.coverage.iter().enumerate() {
                    if coverage > 0 {
                        let (dx, dy) = (i % bitmap.width, i / bitmap.width);
                        self.darken(left + dx as i64, top + dy as i64, coverage);
                    }
                }
            }
            pen += scaled.h_advance(id);
        }
    }

    fn encode(&self) -> Result<Vec<u8>, RenderError> {
        let png_error = |e: png::EncodingError| RenderError::Png(e.to_string());
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Balanced);
        encoder.set_pixel_dims(Some(png::PixelDimensions {
            xppu: PIXELS_PER_METRE,
            yppu: PIXELS_PER_METRE,
            unit: png::Unit::Meter,
        }));
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&self.pixels).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
        Ok(out)
    }
}
