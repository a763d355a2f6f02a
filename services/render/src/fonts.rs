//! The embedded DejaVu fonts and glyph lookup with a fallback for missing characters.

use ab_glyph::{Font, FontRef, GlyphId};

use crate::RenderError;

/// DejaVu Sans: headings (merchant name, document title).
pub(crate) const SANS_DATA: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
/// DejaVu Sans Mono: the body, laid out on a character grid.
pub(crate) const MONO_DATA: &[u8] = include_bytes!("../fonts/DejaVuSansMono.ttf");

/// A parsed embedded font.
pub(crate) struct Face {
    pub(crate) font: FontRef<'static>,
    data: &'static [u8],
    pub(crate) name: &'static str,
    units_per_em: f32,
    /// Glyph drawn for characters the font lacks.
    replacement: (GlyphId, char),
}

impl Face {
    pub(crate) fn sans() -> Result<Self, RenderError> {
        Self::load(SANS_DATA, "DejaVuSans")
    }

    pub(crate) fn mono() -> Result<Self, RenderError> {
        Self::load(MONO_DATA, "DejaVuSansMono")
    }

    fn load(data: &'static [u8], name: &'static str) -> Result<Self, RenderError> {
        let font =
            FontRef::try_from_slice(data).map_err(|e| RenderError::Font(format!("{name}: {e}")))?;
        let units_per_em = font
            .units_per_em()
            .filter(|u| *u > 0.0)
            .ok_or_else(|| RenderError::Font(format!("{name}: no units per em")))?;
        let replacement = ['\u{FFFD}', '?']
            .into_iter()
            .map(|c| (font.glyph_id(c), c))
            .find(|(id, _)| id.0 != 0)
            .unwrap_or((GlyphId(0), '?'));
        Ok(Self {
            font,
            data,
            name,
            units_per_em,
            replacement,
        })
    }

    /// The same font for the PDF writer, which subsets and embeds it.
    pub(crate) fn pdf_font(&self) -> Result<krilla::text::Font, RenderError> {
        krilla::text::Font::new(self.data.into(), 0)
            .ok_or_else(|| RenderError::Font(format!("{}: unreadable for PDF", self.name)))
    }

    /// The glyph for `c`, or the replacement glyph when the font lacks it.
    /// Returns the character the glyph actually shows.
    pub(crate) fn glyph(&self, c: char) -> (GlyphId, char) {
        let id = self.font.glyph_id(c);
        if id.0 != 0 { (id, c) } else { self.replacement }
    }

    /// Advance width of a glyph in font units.
    pub(crate) fn advance_units(&self, id: GlyphId) -> f32 {
        self.font.h_advance_unscaled(id)
    }

    pub(crate) fn units_per_em(&self) -> f32 {
        self.units_per_em
    }

    /// Width of `text` in ems (no kerning).
    pub(crate) fn text_width_em(&self, text: &str) -> f32 {
        text.chars()
            .map(|c| self.advance_units(self.glyph(c).0))
            .sum::<f32>()
            / self.units_per_em
    }

    /// Ascent and descent (negative) in ems.
    pub(crate) fn ascent_descent_em(&self) -> (f32, f32) {
        (
            self.font.ascent_unscaled() / self.units_per_em,
            self.font.descent_unscaled() / self.units_per_em,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fonts_cover_mongolian_and_romanian() {
        for face in [Face::sans(), Face::mono()] {
            let face = face.expect("embedded font parses");
            for c in "ТалхЭмийн санӨндөгҮнэөүПâine și brânză ăâîșțȘȚ·…".chars()
            {
                assert_ne!(face.font.glyph_id(c).0, 0, "{} lacks {c:?}", face.name);
            }
            assert_eq!(face.glyph('\u{10FFFD}').1, '\u{FFFD}', "{}", face.name);
        }
    }
}
