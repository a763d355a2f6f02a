//! PDF output, written by hand: one 80 mm wide page as long as the receipt,
//! text in subset-embedded DejaVu fonts (Type0 / CIDFontType2, Identity-H,
//! with a ToUnicode CMap so text extracts), the QR code as vector rectangles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::fonts::Face;
use crate::layout::{self, Block};
use crate::qr::{QUIET_ZONE, QrMatrix};
use crate::subset;
use crate::{DEFAULT_TEXT_WIDTH, ReceiptView, RenderError};

const PT_PER_MM: f32 = 72.0 / 25.4;
const PAGE_WIDTH: f32 = 80.0 * PT_PER_MM;
const MARGIN_X: f32 = 4.0 * PT_PER_MM;
const MARGIN_Y: f32 = 5.0 * PT_PER_MM;
/// Largest page side common readers accept (200 inches); longer receipts continue on a new page.
const MAX_PAGE_HEIGHT: f32 = 14_400.0;
const MAJOR_HEADING_PT: f32 = 11.0;
const MINOR_HEADING_PT: f32 = 9.0;
const HEADING_GAP: f32 = 2.0;
const QR_GAP: f32 = 4.0;
const MAX_QR_MODULE_PT: f32 = 2.0;
/// Deflate level for streams (0–10).
const COMPRESSION: u8 = 6;

#[derive(Clone, Copy, PartialEq, Eq)]
enum FontId {
    Mono,
    Sans,
}

/// A font as used by this document: the glyphs drawn and the characters they show.
struct FontUse {
    face: Face,
    /// Glyph id → character it shows (for ToUnicode).
    glyphs: BTreeMap<u16, char>,
}

impl FontUse {
    fn new(face: Face) -> Self {
        Self {
            face,
            glyphs: BTreeMap::new(),
        }
    }

    /// Hex string of 2-byte glyph ids for `text` (Identity-H).
    fn encode(&mut self, text: &str) -> String {
        let mut hex = String::with_capacity(4 * text.len() + 2);
        hex.push('<');
        for c in text.chars() {
            let (id, shown) = self.face.glyph(c);
            self.glyphs.entry(id.0).or_insert(shown);
            let _ = write!(hex, "{:04X}", id.0);
        }
        hex.push('>');
        hex
    }
}

/// Something drawn, positioned relative to the top of its element.
enum Draw {
    Text {
        font: FontId,
        size: f32,
        x: f32,
        baseline: f32,
        hex: String,
    },
    Qr {
        x: f32,
        module: f32,
    },
    Space,
}

struct Element {
    height: f32,
    draw: Draw,
}

pub(crate) fn render(view: &ReceiptView) -> Result<Vec<u8>, RenderError> {
    let mut mono = FontUse::new(Face::mono()?);
    let mut sans = FontUse::new(Face::sans()?);
    let qr = QrMatrix::encode(&view.qr_payload)?;
    let usable_width = PAGE_WIDTH - 2.0 * MARGIN_X;

    let column_em = mono.face.advance_units(mono.face.glyph(' ').0) / mono.face.units_per_em();
    let body_size = usable_width / (DEFAULT_TEXT_WIDTH as f32 * column_em);
    let (mono_ascent, mono_descent) = mono.face.ascent_descent_em();
    let (sans_ascent, sans_descent) = sans.face.ascent_descent_em();

    let mut elements = Vec::new();
    for block in layout::layout(view, DEFAULT_TEXT_WIDTH) {
        match block {
            Block::Heading { text, major } => {
                let size = if major {
                    MAJOR_HEADING_PT
                } else {
                    MINOR_HEADING_PT
                };
                elements.push(Element {
                    height: HEADING_GAP,
                    draw: Draw::Space,
                });
                let lines = layout::wrap_by(&text, usable_width, &|s: &str| {
                    sans.face.text_width_em(s) * size
                });
                for line in lines {
                    let x = ((PAGE_WIDTH - sans.face.text_width_em(&line) * size) / 2.0).max(0.0);
                    elements.push(Element {
                        height: (sans_ascent - sans_descent) * size,
                        draw: Draw::Text {
                            font: FontId::Sans,
                            size,
                            x,
                            baseline: sans_ascent * size,
                            hex: sans.encode(&line),
                        },
                    });
                }
                elements.push(Element {
                    height: HEADING_GAP,
                    draw: Draw::Space,
                });
            }
            Block::Line(line) => elements.push(Element {
                height: (mono_ascent - mono_descent) * body_size,
                draw: Draw::Text {
                    font: FontId::Mono,
                    size: body_size,
                    x: MARGIN_X,
                    baseline: mono_ascent * body_size,
                    hex: mono.encode(&line),
                },
            }),
        }
    }
    if let Some(matrix) = &qr {
        let modules = matrix.size_with_quiet_zone() as f32;
        let module = (usable_width / modules).min(MAX_QR_MODULE_PT);
        let side = modules * module;
        elements.push(Element {
            height: side + QR_GAP,
            draw: Draw::Qr {
                x: (PAGE_WIDTH - side) / 2.0,
                module,
            },
        });
    }

    // Paginate: one page unless the receipt is longer than readers allow.
    let usable_height = MAX_PAGE_HEIGHT - 2.0 * MARGIN_Y;
    let mut pages: Vec<(f32, Vec<(f32, &Element)>)> = vec![(0.0, Vec::new())];
    for element in &elements {
        let needs_new = pages
            .last()
            .is_some_and(|(used, els)| !els.is_empty() && used + element.height > usable_height);
        if needs_new {
            pages.push((0.0, Vec::new()));
        }
        if let Some((used, els)) = pages.last_mut() {
            els.push((*used, element));
            *used += element.height;
        }
    }

    let mut contents = Vec::with_capacity(pages.len());
    for (used, els) in &pages {
        let height = used + 2.0 * MARGIN_Y;
        let mut ops = String::new();
        let mut text_open = false;
        let mut current_font = None;
        for (top, element) in els {
            let y_top = height - MARGIN_Y - top;
            match &element.draw {
                Draw::Text {
                    font,
                    size,
                    x,
                    baseline,
                    hex,
                } => {
                    if !text_open {
                        ops.push_str("BT\n");
                        text_open = true;
                    }
                    if current_font != Some((*font, size.to_bits())) {
                        let name = match font {
                            FontId::Mono => "F1",
                            FontId::Sans => "F2",
                        };
                        let _ = writeln!(ops, "/{name} {} Tf", num(*size));
                        current_font = Some((*font, size.to_bits()));
                    }
                    let _ = writeln!(ops, "1 0 0 1 {} {} Tm", num(*x), num(y_top - baseline));
                    let _ = writeln!(ops, "{hex} Tj");
                }
                Draw::Qr { x, module } => {
                    if text_open {
                        ops.push_str("ET\n");
                        text_open = false;
                        current_font = None;
                    }
                    if let Some(matrix) = &qr {
                        ops.push_str("0 g\n");
                        for (row, col, len) in matrix.dark_runs() {
                            let left = x + (QUIET_ZONE + col) as f32 * module;
                            let bottom = y_top - (QUIET_ZONE + row + 1) as f32 * module;
                            let _ = writeln!(
                                ops,
                                "{} {} {} {} re",
                                num(left),
                                num(bottom),
                                num(len as f32 * module),
                                num(*module)
                            );
                        }
                        ops.push_str("f\n");
                    }
                }
                Draw::Space => {}
            }
        }
        if text_open {
            ops.push_str("ET\n");
        }
        contents.push((height, ops));
    }

    write_document(view, &mono, &sans, &contents)
}

/// Object numbers: 1 catalog, 2 page tree, 3 info, 4–8 mono font, 9–13 sans
/// font, then a page and its content stream for each page.
fn write_document(
    view: &ReceiptView,
    mono: &FontUse,
    sans: &FontUse,
    pages: &[(f32, String)],
) -> Result<Vec<u8>, RenderError> {
    const FIRST_PAGE: usize = 14;
    let mut w = Writer::new();

    w.object(1, "<< /Type /Catalog /Pages 2 0 R >>");
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", FIRST_PAGE + 2 * i))
        .collect();
    w.object(
        2,
        &format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        ),
    );
    let title = format!("{} No. {}", layout::clean(&view.title), view.receipt_number);
    w.object(
        3,
        &format!(
            "<< /Title {} /Author {} /Producer (fiscus-render) >>",
            text_string(&title),
            text_string(&layout::clean(&view.merchant_name))
        ),
    );
    write_font(&mut w, 4, mono)?;
    write_font(&mut w, 9, sans)?;

    for (i, (height, ops)) in pages.iter().enumerate() {
        let page = FIRST_PAGE + 2 * i;
        w.object(
            page,
            &format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] \
                 /Resources << /Font << /F1 4 0 R /F2 9 0 R >> >> /Contents {} 0 R >>",
                num(PAGE_WIDTH),
                num(*height),
                page + 1
            ),
        );
        w.flate_stream(page + 1, "", ops.as_bytes());
    }
    Ok(w.finish(1, 3))
}

/// Writes the five objects of a Type0 font starting at `first`:
/// Type0, CIDFontType2, FontDescriptor, FontFile2, ToUnicode.
fn write_font(w: &mut Writer, first: usize, font: &FontUse) -> Result<(), RenderError> {
    let (cid_font, descriptor, file, to_unicode) = (first + 1, first + 2, first + 3, first + 4);
    let face = &font.face;
    let glyphs: BTreeSet<u16> = font.glyphs.keys().copied().collect();
    let cmap: BTreeMap<char, u16> = font.glyphs.iter().map(|(&g, &c)| (c, g)).collect();
    let subset = subset::subset(face.data, &glyphs, &cmap)?;
    let metrics = subset::metrics(face.data)?;
    let units = f32::from(metrics.units_per_em.max(1));
    let scale = |v: f32| v * 1000.0 / units;
    let base_font = format!("{}+{}", subset_tag(face.name, &glyphs), face.name);

    w.object(
        first,
        &format!(
            "<< /Type /Font /Subtype /Type0 /BaseFont /{base_font} /Encoding /Identity-H \
             /DescendantFonts [{cid_font} 0 R] /ToUnicode {to_unicode} 0 R >>"
        ),
    );

    // Widths, in runs of consecutive glyph ids.
    let mut widths = String::new();
    let mut previous: Option<u16> = None;
    for &gid in &glyphs {
        let width = num(scale(face.advance_units(ab_glyph::GlyphId(gid))));
        if previous.is_some_and(|p| p.checked_add(1) == Some(gid)) {
            let _ = write!(widths, " {width}");
        } else {
            if previous.is_some() {
                widths.push_str("] ");
            }
            let _ = write!(widths, "{gid} [{width}");
        }
        previous = Some(gid);
    }
    if previous.is_some() {
        widths.push(']');
    }
    w.object(
        cid_font,
        &format!(
            "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{base_font} \
             /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
             /FontDescriptor {descriptor} 0 R /DW 1000 /W [{widths}] /CIDToGIDMap /Identity >>"
        ),
    );

    let (ascent, descent) = face.ascent_descent_em();
    let [x_min, y_min, x_max, y_max] = metrics.bbox.map(|v| num(scale(f32::from(v))));
    // Flags: 1 fixed pitch, 32 nonsymbolic.
    let flags = if face.monospace { 33 } else { 32 };
    w.object(
        descriptor,
        &format!(
            "<< /Type /FontDescriptor /FontName /{base_font} /Flags {flags} \
             /FontBBox [{x_min} {y_min} {x_max} {y_max}] /ItalicAngle 0 /Ascent {} \
             /Descent {} /CapHeight {} /StemV 80 /FontFile2 {file} 0 R >>",
            num(ascent * 1000.0),
            num(descent * 1000.0),
            num(scale(f32::from(metrics.cap_height)))
        ),
    );
    w.flate_stream(file, &format!("/Length1 {}", subset.len()), &subset);
    w.flate_stream(to_unicode, "", to_unicode_cmap(&font.glyphs).as_bytes());
    Ok(())
}

/// The ToUnicode CMap mapping 2-byte glyph ids to UTF-16BE.
fn to_unicode_cmap(glyphs: &BTreeMap<u16, char>) -> String {
    let mut cmap = String::from(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
         /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
         /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
         1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
    );
    let entries: Vec<(&u16, &char)> = glyphs.iter().collect();
    for chunk in entries.chunks(100) {
        let _ = writeln!(cmap, "{} beginbfchar", chunk.len());
        for (gid, c) in chunk {
            let mut utf16 = [0u16; 2];
            let units: String = c
                .encode_utf16(&mut utf16)
                .iter()
                .map(|u| format!("{u:04X}"))
                .collect();
            let _ = writeln!(cmap, "<{gid:04X}> <{units}>");
        }
        cmap.push_str("endbfchar\n");
    }
    cmap.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
    cmap
}

/// Six capital letters naming a subset, derived from its glyphs.
fn subset_tag(name: &str, glyphs: &BTreeSet<u16>) -> String {
    // FNV-1a over the font name and glyph ids.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = name
        .bytes()
        .chain(glyphs.iter().flat_map(|g| g.to_be_bytes()));
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..6)
        .map(|i| char::from(b'A' + ((hash >> (i * 8)) % 26) as u8))
        .collect()
}

/// A PDF text string: literal when plain ASCII, otherwise UTF-16BE with a BOM.
fn text_string(s: &str) -> String {
    let plain = s.chars().all(|c| c.is_ascii() && !c.is_ascii_control());
    if plain {
        let escaped: String = s
            .chars()
            .flat_map(|c| match c {
                '(' | ')' | '\\' => vec!['\\', c],
                _ => vec![c],
            })
            .collect();
        format!("({escaped})")
    } else {
        let hex: String = s.encode_utf16().map(|u| format!("{u:04X}")).collect();
        format!("<FEFF{hex}>")
    }
}

/// A number in PDF syntax: at most three decimals, no exponent.
fn num(v: f32) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Appends numbered objects and writes the cross-reference table.
struct Writer {
    out: Vec<u8>,
    offsets: BTreeMap<usize, usize>,
}

impl Writer {
    fn new() -> Self {
        let mut out = Vec::new();
        out.extend_from_slice(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n");
        Self {
            out,
            offsets: BTreeMap::new(),
        }
    }

    fn object(&mut self, id: usize, body: &str) {
        self.offsets.insert(id, self.out.len());
        self.out
            .extend_from_slice(format!("{id} 0 obj\n{body}\nendobj\n").as_bytes());
    }

    /// A Flate-compressed stream; `extra` goes into its dictionary.
    fn flate_stream(&mut self, id: usize, extra: &str, data: &[u8]) {
        let compressed = miniz_oxide::deflate::compress_to_vec_zlib(data, COMPRESSION);
        self.offsets.insert(id, self.out.len());
        let sep = if extra.is_empty() { "" } else { " " };
        self.out.extend_from_slice(
            format!(
                "{id} 0 obj\n<< /Length {} /Filter /FlateDecode{sep}{extra} >>\nstream\n",
                compressed.len()
            )
            .as_bytes(),
        );
        self.out.extend_from_slice(&compressed);
        self.out.extend_from_slice(b"\nendstream\nendobj\n");
    }

    fn finish(mut self, root: usize, info: usize) -> Vec<u8> {
        let size = self.offsets.keys().last().map_or(1, |last| last + 1);
        let xref = self.out.len();
        let mut table = format!("xref\n0 {size}\n0000000000 65535 f \n");
        for id in 1..size {
            match self.offsets.get(&id) {
                Some(offset) => {
                    let _ = writeln!(table, "{offset:010} 00000 n ");
                }
                None => table.push_str("0000000000 65535 f \n"),
            }
        }
        let _ = write!(
            table,
            "trailer\n<< /Size {size} /Root {root} 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF"
        );
        self.out.extend_from_slice(table.as_bytes());
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings_use_pdf_syntax() {
        assert_eq!(num(7.0), "7");
        assert_eq!(num(226.771_65), "226.772");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(text_string("SALE (copy)"), "(SALE \\(copy\\))");
        assert_eq!(text_string("Ө"), "<FEFF04E8>");
        assert_eq!(subset_tag("X", &BTreeSet::new()).len(), 6);
    }
}
