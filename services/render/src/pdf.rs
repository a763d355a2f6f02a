//! PDF output of a [`Layout`] through krilla: 80 mm wide pages as long as the content.

use std::borrow::Cow;

use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::text::{Font, GlyphId, KrillaGlyph};
use krilla::{Document, SerializeSettings};

use crate::RenderError;
use crate::fonts::Face;
use crate::layout::{self, Block, Layout};
use crate::qr::{QUIET_ZONE, QrMatrix};

const PT_PER_MM: f32 = 72.0 / 25.4;
const PAGE_WIDTH: f32 = 80.0 * PT_PER_MM;
const MARGIN_X: f32 = 4.0 * PT_PER_MM;
const MARGIN_Y: f32 = 5.0 * PT_PER_MM;
/// Largest page side common readers accept (200 inches); longer documents continue on a new page.
const MAX_PAGE_HEIGHT: f32 = 14_400.0;
const MAJOR_HEADING_PT: f32 = 11.0;
const MINOR_HEADING_PT: f32 = 9.0;
const HEADING_GAP: f32 = 2.0;
const QR_GAP: f32 = 4.0;
const MAX_QR_MODULE_PT: f32 = 2.0;

/// One of the two faces, as measured (ab_glyph) and as embedded (krilla).
struct PdfFace {
    face: Face,
    font: Font,
}

impl PdfFace {
    fn new(face: Face) -> Result<Self, RenderError> {
        let font = face.pdf_font()?;
        Ok(Self { face, font })
    }
}

/// Something drawn, positioned relative to the top of its element; a body line's text is
/// the layout's own, borrowed.
enum Draw<'a> {
    Text {
        mono: bool,
        size: f32,
        x: f32,
        baseline: f32,
        text: Cow<'a, str>,
    },
    Qr {
        matrix: QrMatrix,
        x: f32,
        module: f32,
    },
    Space,
}

struct Element<'a> {
    height: f32,
    draw: Draw<'a>,
}

/// The faces and the grid's measure, which turn blocks into elements.
struct Measure {
    mono: PdfFace,
    sans: PdfFace,
    usable_width: f32,
    body_size: f32,
}

impl Measure {
    /// The elements of one block, top to bottom.
    fn elements<'a>(
        &self,
        block: &'a Block,
        out: &mut Vec<Element<'a>>,
    ) -> Result<(), RenderError> {
        let (sans_ascent, sans_descent) = self.sans.face.ascent_descent_em();
        match block {
            Block::Heading { text, major } => {
                let size = if *major {
                    MAJOR_HEADING_PT
                } else {
                    MINOR_HEADING_PT
                };
                let measure = |s: &str| self.sans.face.text_width_em(s) * size;
                out.push(Element {
                    height: HEADING_GAP,
                    draw: Draw::Space,
                });
                for text in layout::wrap_by(text, self.usable_width, &measure) {
                    out.push(Element {
                        height: (sans_ascent - sans_descent) * size,
                        draw: Draw::Text {
                            mono: false,
                            size,
                            x: ((PAGE_WIDTH - measure(&text)) / 2.0).max(0.0),
                            baseline: sans_ascent * size,
                            text: Cow::Owned(text),
                        },
                    });
                }
                out.push(Element {
                    height: HEADING_GAP,
                    draw: Draw::Space,
                });
            }
            Block::Line(text) => out.push(self.body_line(Cow::Borrowed(text))),
            Block::Qr(payload) => {
                if let Some(matrix) = QrMatrix::encode(payload)? {
                    let modules = matrix.size_with_quiet_zone() as f32;
                    let module = (self.usable_width / modules).min(MAX_QR_MODULE_PT);
                    let side = modules * module;
                    out.push(Element {
                        height: side + QR_GAP,
                        draw: Draw::Qr {
                            matrix,
                            x: (PAGE_WIDTH - side) / 2.0,
                            module,
                        },
                    });
                }
            }
        }
        Ok(())
    }

    /// A line of the monospace body.
    fn body_line<'a>(&self, text: Cow<'a, str>) -> Element<'a> {
        let (ascent, descent) = self.mono.face.ascent_descent_em();
        Element {
            height: (ascent - descent) * self.body_size,
            draw: Draw::Text {
                mono: true,
                size: self.body_size,
                x: MARGIN_X,
                baseline: ascent * self.body_size,
                text,
            },
        }
    }
}

/// The layout as a PDF, then `rows` as body lines, one page unless it is longer than readers
/// allow. Only the page being filled is measured out at a time: a long document (a full shift
/// report) is not held a second time as positioned elements.
pub(crate) fn render(
    layout: &Layout,
    rows: &mut dyn Iterator<Item = String>,
) -> Result<Vec<u8>, RenderError> {
    let mono = PdfFace::new(Face::mono()?)?;
    let sans = PdfFace::new(Face::sans()?)?;
    let usable_width = PAGE_WIDTH - 2.0 * MARGIN_X;
    let column_em = mono.face.advance_units(mono.face.glyph(' ').0) / mono.face.units_per_em();
    let body_size = usable_width / (layout.columns() as f32 * column_em);
    let measure = Measure {
        mono,
        sans,
        usable_width,
        body_size,
    };

    let mut document = Document::new_with(SerializeSettings {
        // Receipts are neither tagged nor archived: the Info dictionary is metadata enough.
        xmp_metadata: false,
        enable_tagging: false,
        ..SerializeSettings::default()
    });
    let mut metadata = Metadata::new().producer("fiscus-render".to_string());
    if !layout.title().is_empty() {
        metadata = metadata.title(layout.title().to_string());
    }
    if !layout.author().is_empty() {
        metadata = metadata.authors(vec![layout.author().to_string()]);
    }
    document.set_metadata(metadata);

    let mut page = Page::default();
    let mut block_elements = Vec::new();
    for block in layout.blocks() {
        measure.elements(block, &mut block_elements)?;
        for element in block_elements.drain(..) {
            page.place(element, &mut document, &measure)?;
        }
    }
    for row in rows {
        page.place(measure.body_line(Cow::Owned(row)), &mut document, &measure)?;
    }
    page.draw(&mut document, &measure)?;
    document
        .finish()
        .map_err(|e| RenderError::Pdf(e.to_string()))
}

/// The page being filled: each element with its top, and the height used.
#[derive(Default)]
struct Page<'a> {
    elements: Vec<(f32, Element<'a>)>,
    used: f32,
}

impl<'a> Page<'a> {
    /// Adds `element` below the others, first drawing the page and starting the next when it
    /// would pass the longest page readers accept.
    fn place(
        &mut self,
        element: Element<'a>,
        document: &mut Document,
        measure: &Measure,
    ) -> Result<(), RenderError> {
        let usable_height = MAX_PAGE_HEIGHT - 2.0 * MARGIN_Y;
        if !self.elements.is_empty() && self.used + element.height > usable_height {
            self.draw(document, measure)?;
        }
        let height = element.height;
        self.elements.push((self.used, element));
        self.used += height;
        Ok(())
    }

    /// Draws the page and empties it.
    fn draw(&mut self, document: &mut Document, measure: &Measure) -> Result<(), RenderError> {
        draw_page(document, measure, self.used, &self.elements)?;
        self.elements.clear();
        self.used = 0.0;
        Ok(())
    }
}

/// One page `used` points of content high (plus margins), its elements at their tops.
fn draw_page(
    document: &mut Document,
    measure: &Measure,
    used: f32,
    elements: &[(f32, Element<'_>)],
) -> Result<(), RenderError> {
    let height = used + 2.0 * MARGIN_Y;
    let settings = PageSettings::from_wh(PAGE_WIDTH, height)
        .ok_or_else(|| RenderError::Pdf(format!("page of {PAGE_WIDTH}x{height} pt")))?;
    let mut page = document.start_page_with(settings);
    let mut surface = page.surface();
    for (top, element) in elements {
        // krilla's origin is the top left corner, y down.
        let y_top = MARGIN_Y + top;
        match &element.draw {
            Draw::Text {
                mono: is_mono,
                size,
                x,
                baseline,
                text,
            } => {
                let face = if *is_mono {
                    &measure.mono
                } else {
                    &measure.sans
                };
                let (text, glyphs) = glyphs(&face.face, text);
                surface.draw_glyphs(
                    Point::from_xy(*x, y_top + baseline),
                    &glyphs,
                    face.font.clone(),
                    &text,
                    *size,
                    false,
                );
            }
            Draw::Qr { matrix, x, module } => {
                let mut path = PathBuilder::new();
                for (row, col, len) in matrix.dark_runs() {
                    let rect = Rect::from_xywh(
                        x + (QUIET_ZONE + col) as f32 * module,
                        y_top + (QUIET_ZONE + row) as f32 * module,
                        len as f32 * module,
                        *module,
                    );
                    if let Some(rect) = rect {
                        path.push_rect(rect);
                    }
                }
                if let Some(path) = path.finish() {
                    surface.set_fill(Some(Fill::default()));
                    surface.draw_path(&path);
                }
            }
            Draw::Space => {}
        }
    }
    surface.finish();
    page.finish();
    Ok(())
}

/// The glyphs drawing `text` left to right (no shaping: the body is a monospace grid and
/// the headings need no ligatures), and the text they show: a character the font lacks
/// is drawn, and so extracts, as the replacement character.
fn glyphs(face: &Face, text: &str) -> (String, Vec<KrillaGlyph>) {
    let shown: String = text.chars().map(|c| face.glyph(c).1).collect();
    let glyphs = shown
        .char_indices()
        .map(|(at, c)| {
            let id = face.glyph(c).0;
            KrillaGlyph::new(
                GlyphId::new(u32::from(id.0)),
                face.advance_units(id) / face.units_per_em(),
                0.0,
                0.0,
                0.0,
                at..at + c.len_utf8(),
                None,
            )
        })
        .collect();
    (shown, glyphs)
}
