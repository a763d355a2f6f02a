//! The laid-out document that every output format draws, and the character-grid helpers that build it.

use crate::{MAX_TEXT_WIDTH, MIN_TEXT_WIDTH, RenderError};

/// A document laid out top to bottom on a monospace grid [`columns`](Layout::columns)
/// characters wide: the one input of the text, PDF and PNG writers.
///
/// A producer such as [`ReceiptView::layout`](crate::ReceiptView::layout) builds it with the
/// methods below, which keep every body line within the grid; the writers know nothing of
/// receipts. Any printable document, a shift report say, is built the same way: headings,
/// [`left_right`](Layout::left_right) rows for its tables, [`separator`](Layout::separator)s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    columns: usize,
    title: String,
    author: String,
    blocks: Vec<Block>,
}

/// One element of a [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A centered heading in a proportional face; each format wraps it to its own measure
    /// (text output to the grid). `major` headings (a merchant name) are larger than the
    /// others (a document title).
    Heading {
        /// The heading, without control characters.
        text: String,
        /// Whether this is the larger kind of heading.
        major: bool,
    },
    /// A body line of at most [`Layout::columns`] characters on the monospace grid.
    Line(String),
    /// A QR code of this payload, centered. Text output has no graphics and leaves it out,
    /// so a producer that wants the payload printed adds it as lines as well.
    Qr(String),
}

impl Layout {
    /// An empty document `columns` characters wide (clamped into
    /// [`MIN_TEXT_WIDTH`]`..=`[`MAX_TEXT_WIDTH`]). `title` and `author` are the PDF's
    /// document information, not printed.
    pub fn new(columns: usize, title: &str, author: &str) -> Self {
        Self {
            columns: columns.clamp(MIN_TEXT_WIDTH, MAX_TEXT_WIDTH),
            title: clean(title),
            author: clean(author),
            blocks: Vec::new(),
        }
    }

    /// Width of the grid in characters.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// The document title recorded in the PDF.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The author recorded in the PDF.
    pub fn author(&self) -> &str {
        &self.author
    }

    /// The elements, top to bottom.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The document as lines of at most [`columns`](Self::columns) characters: headings
    /// wrapped and centered, QR codes left out.
    pub fn text_lines(&self) -> Vec<String> {
        self.text_lines_followed_by(&mut std::iter::empty())
    }

    /// [`text_lines`](Self::text_lines), then `rows`: body lines of at most
    /// [`columns`](Self::columns) characters produced as they are written (a full shift
    /// report's transactions), so that a long document is not laid out in memory first.
    pub fn text_lines_followed_by(&self, rows: &mut dyn Iterator<Item = String>) -> Vec<String> {
        let mut out = Vec::new();
        for block in &self.blocks {
            match block {
                Block::Heading { text, .. } => {
                    for line in wrap_chars(text, self.columns) {
                        out.push(center(&line, self.columns));
                    }
                }
                Block::Line(line) => out.push(line.clone()),
                Block::Qr(_) => {}
            }
        }
        out.extend(rows);
        out
    }

    /// The document as a PDF: pages 80 mm wide and as long as the content (up to 200
    /// inches, the page size limit of common readers, then a new page), body in DejaVu Sans
    /// Mono sized so the grid fills the line, headings in DejaVu Sans, both subset-embedded
    /// with a ToUnicode map so the text extracts; QR codes as vector rectangles.
    pub fn to_pdf(&self) -> Result<Vec<u8>, RenderError> {
        crate::pdf::render(self, &mut std::iter::empty())
    }

    /// [`to_pdf`](Self::to_pdf), then `rows` as body lines (see
    /// [`text_lines_followed_by`](Self::text_lines_followed_by)), each drawn and dropped as
    /// its page is written.
    pub fn to_pdf_followed_by(
        &self,
        rows: &mut dyn Iterator<Item = String>,
    ) -> Result<Vec<u8>, RenderError> {
        crate::pdf::render(self, rows)
    }

    /// The document as an 8-bit grayscale PNG 576 px wide (80 mm at 203 dpi), or wider when
    /// a QR code needs it.
    pub fn to_png(&self) -> Result<Vec<u8>, RenderError> {
        crate::raster::render(self)
    }

    /// [`to_png`](Self::to_png), then `rows` as body lines. An image is drawn whole, so the
    /// rows are laid out first.
    pub fn to_png_followed_by(
        &self,
        rows: &mut dyn Iterator<Item = String>,
    ) -> Result<Vec<u8>, RenderError> {
        let mut whole = self.clone();
        whole.blocks.extend(rows.map(Block::Line));
        crate::raster::render(&whole)
    }

    /// The merchant's heading: its name, then its TIN and the branch and POS numbers, each
    /// line left out when empty.
    pub fn merchant(&mut self, name: &str, tin: &str, branch_no: &str, pos_no: &str) {
        self.heading(name, true);
        let tin = clean(tin);
        if !tin.is_empty() {
            self.centered(&format!("TIN {tin}"));
        }
        let (branch, pos) = (clean(branch_no), clean(pos_no));
        match (branch.is_empty(), pos.is_empty()) {
            (false, false) => self.centered(&format!("Branch {branch}  POS {pos}")),
            (false, true) => self.centered(&format!("Branch {branch}")),
            (true, false) => self.centered(&format!("POS {pos}")),
            (true, true) => {}
        }
    }

    /// A centered heading; nothing when `text` is blank.
    pub fn heading(&mut self, text: &str, major: bool) {
        let text = clean(text);
        if !text.is_empty() {
            self.blocks.push(Block::Heading { text, major });
        }
    }

    /// A preformatted line printed as given (control characters become spaces); the
    /// characters past the grid continue on the next line.
    pub fn line(&mut self, text: &str) {
        let chars: Vec<char> = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        for chunk in chars.chunks(self.columns) {
            self.push(chunk.iter().collect());
        }
    }

    /// A full-width line of dashes.
    pub fn separator(&mut self) {
        self.push("-".repeat(self.columns));
    }

    /// `text` word-wrapped to the grid.
    pub fn wrapped(&mut self, text: &str) {
        for line in wrap_chars(&clean(text), self.columns) {
            self.push(line);
        }
    }

    /// `text` word-wrapped and centered in the monospace body (unlike a heading).
    pub fn centered(&mut self, text: &str) {
        for line in wrap_chars(&clean(text), self.columns) {
            let centered = center(&line, self.columns);
            self.push(centered);
        }
    }

    /// `left` at the left margin and `right` flush right on the same line when both fit;
    /// otherwise `left` wraps and `right` goes flush right below it. Leading spaces of
    /// `left` are kept as an indent.
    pub fn left_right(&mut self, left: &str, right: &str) {
        let lines = left_right_lines(left, right, self.columns);
        self.blocks.extend(lines.into_iter().map(Block::Line));
    }

    /// A QR code of `payload`, encoded exactly as given; nothing when it is empty. An
    /// unencodable payload (too long) makes the PDF and PNG writers fail.
    pub fn qr(&mut self, payload: &str) {
        if !payload.is_empty() {
            self.blocks.push(Block::Qr(payload.to_string()));
        }
    }

    fn push(&mut self, line: String) {
        self.blocks.push(Block::Line(line));
    }
}

/// The lines of [`Layout::left_right`] on a grid `width` characters wide.
pub(crate) fn left_right_lines(left: &str, right: &str, width: usize) -> Vec<String> {
    let indent: String = left.chars().take_while(|c| *c == ' ').collect();
    let left = format!("{indent}{}", clean(left));
    let right = clean(right);
    let right_len = char_len(&right);
    let mut lines = wrap_chars(&left, width);
    let fits_on_last = lines
        .last()
        .is_some_and(|last| char_len(last) + 1 + right_len <= width);
    if right_len == 0 {
        // Nothing to place on the right.
    } else if let (true, Some(last)) = (fits_on_last, lines.last_mut()) {
        let last_len = char_len(last);
        last.push_str(&" ".repeat(width - last_len - right_len));
        last.push_str(&right);
    } else {
        for line in wrap_chars(&right, width) {
            lines.push(right_align(&line, width));
        }
    }
    lines
}

/// Number of characters (not bytes) in `s`.
pub(crate) fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Replaces control characters (newlines, tabs, …) with spaces, composes
/// decomposed letters (see [`compose`]) and trims.
pub(crate) fn clean(s: &str) -> String {
    compose_and_strip_controls(s).trim().to_string()
}

fn compose_and_strip_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_control() {
            out.push(' ');
            continue;
        }
        match chars.peek().and_then(|&mark| compose(c, mark)) {
            Some(composed) => {
                out.push(composed);
                chars.next();
            }
            None => out.push(c),
        }
    }
    out
}

/// Composes the decomposed (NFD) letters of Romanian and Mongolian Cyrillic,
/// as some keyboards and systems produce them, so that one letter is one
/// character (and one column) and renders with the font's precomposed glyph.
fn compose(base: char, mark: char) -> Option<char> {
    let composed = match (base, mark) {
        // Romanian: comma below, cedilla, breve, circumflex.
        ('s', '\u{0326}') => 'ș',
        ('S', '\u{0326}') => 'Ș',
        ('t', '\u{0326}') => 'ț',
        ('T', '\u{0326}') => 'Ț',
        ('s', '\u{0327}') => 'ş',
        ('S', '\u{0327}') => 'Ş',
        ('t', '\u{0327}') => 'ţ',
        ('T', '\u{0327}') => 'Ţ',
        ('a', '\u{0306}') => 'ă',
        ('A', '\u{0306}') => 'Ă',
        ('a', '\u{0302}') => 'â',
        ('A', '\u{0302}') => 'Â',
        ('i', '\u{0302}') => 'î',
        ('I', '\u{0302}') => 'Î',
        // Cyrillic: short i, yo, and the Mongolian barred o / straight u have
        // no decomposition, so only these two.
        ('и', '\u{0306}') => 'й',
        ('И', '\u{0306}') => 'Й',
        ('е', '\u{0308}') => 'ё',
        ('Е', '\u{0308}') => 'Ё',
        _ => return None,
    };
    Some(composed)
}

/// Centers `line` in `width` characters (left padding only).
pub(crate) fn center(line: &str, width: usize) -> String {
    let len = char_len(line);
    if len >= width {
        return line.to_string();
    }
    format!("{}{line}", " ".repeat((width - len) / 2))
}

fn right_align(line: &str, width: usize) -> String {
    let len = char_len(line);
    if len >= width {
        return line.to_string();
    }
    format!("{}{line}", " ".repeat(width - len))
}

/// Word-wraps `text` to lines of at most `width` characters.
pub(crate) fn wrap_chars(text: &str, width: usize) -> Vec<String> {
    wrap_by(text, width as f32, &|s: &str| char_len(s) as f32)
}

/// Word-wraps `text` so that `measure` of every line is at most `max`;
/// words longer than a line are broken between characters. A leading indent
/// of spaces is kept on the first line. Every line holds at least one
/// character, so a `max` smaller than one character still terminates.
pub(crate) fn wrap_by(text: &str, max: f32, measure: &dyn Fn(&str) -> f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current: String = text.chars().take_while(|c| *c == ' ').collect();
    if measure(&current) > max / 2.0 {
        current.clear();
    }
    let indent_only = current.len();
    for word in text.split_whitespace() {
        let candidate = if current.len() == indent_only {
            format!("{current}{word}")
        } else {
            format!("{current} {word}")
        };
        if measure(&candidate) <= max {
            current = candidate;
            continue;
        }
        if current.trim().is_empty() {
            current.clear();
        } else {
            lines.push(std::mem::take(&mut current));
        }
        if measure(word) <= max {
            current = word.to_string();
            continue;
        }
        // Hard-break an over-long word.
        for c in word.chars() {
            let mut candidate = current.clone();
            candidate.push(c);
            if current.is_empty() || measure(&candidate) <= max {
                current = candidate;
            } else {
                lines.push(std::mem::replace(&mut current, c.to_string()));
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_long_words_and_keeps_short_lines() {
        assert_eq!(wrap_chars("Талх цагаан", 32), vec!["Талх цагаан"]);
        let lines = wrap_chars(&"Ө".repeat(70), 32);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| char_len(l) <= 32));
        assert!(wrap_chars("   ", 32).is_empty());
    }

    #[test]
    fn composes_decomposed_romanian_and_cyrillic_letters() {
        assert_eq!(
            clean("Pa\u{0302}ine s\u{0326}i bra\u{0302}nza\u{0306}"),
            "Pâine și brânză"
        );
        assert_eq!(clean("Эмии\u{0306}н\tсан"), "Эмийн сан");
    }

    #[test]
    fn left_right_aligns_by_chars() {
        let mut layout = Layout::new(32, "", "");
        layout.left_right("  2 ш x 2800.00", "5600.00");
        assert_eq!(
            layout.blocks(),
            [Block::Line(format!(
                "  2 ш x 2800.00{}5600.00",
                " ".repeat(10)
            ))]
        );
    }

    #[test]
    fn preformatted_lines_stay_on_the_grid_and_qr_codes_are_not_text() {
        let mut layout = Layout::new(0, "", "");
        assert_eq!(layout.columns(), MIN_TEXT_WIDTH);
        layout.line(&format!("{}\tЖ", "Ө".repeat(40)));
        layout.qr("payload");
        layout.qr("");
        assert_eq!(
            layout.text_lines(),
            vec!["Ө".repeat(32), format!("{} Ж", "Ө".repeat(8))]
        );
        assert_eq!(layout.blocks().len(), 3);
    }
}
