//! Character-grid layout shared by every output format.

use crate::ReceiptView;

/// One element of the laid-out receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Block {
    /// A centered heading; each format wraps it to its own measure.
    /// `major` is the merchant name, the others are document titles.
    Heading { text: String, major: bool },
    /// A finished body line of at most `width` characters (monospace grid).
    Line(String),
}

/// Lays the receipt out for a monospace grid `width` characters wide.
pub(crate) fn layout(view: &ReceiptView, width: usize) -> Vec<Block> {
    let mut b = Builder {
        width,
        blocks: Vec::new(),
    };

    b.heading(&view.merchant_name, true);
    let tin = clean(&view.merchant_tin);
    if !tin.is_empty() {
        b.centered(&format!("TIN {tin}"));
    }
    let branch = clean(&view.branch_no);
    let pos = clean(&view.pos_no);
    match (branch.is_empty(), pos.is_empty()) {
        (false, false) => b.centered(&format!("Branch {branch}  POS {pos}")),
        (false, true) => b.centered(&format!("Branch {branch}")),
        (true, false) => b.centered(&format!("POS {pos}")),
        (true, true) => {}
    }
    let title = clean(&view.title);
    b.heading(&format!("{title} No. {}", view.receipt_number), false);
    b.left_right("Date", &view.moment);
    if let Some(cashier) = &view.cashier {
        b.left_right("Cashier", cashier);
    }
    if let Some(customer) = &view.customer {
        b.wrapped(customer);
    }

    b.separator();
    for item in &view.items {
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
    let currency = clean(&view.currency);
    let with_currency = |amount: &str| {
        let amount = clean(amount);
        if currency.is_empty() {
            amount
        } else {
            format!("{amount} {currency}")
        }
    };
    b.left_right("VAT", &with_currency(&view.total_vat));
    b.left_right("City tax", &with_currency(&view.total_city_tax));
    b.left_right("TOTAL", &with_currency(&view.total_amount));
    for payment in &view.payments {
        b.left_right(&payment.label, &payment.amount);
    }

    b.separator();
    b.wrapped(&view.signature_reference);
    let id = clean(&view.receipt_id);
    if !id.is_empty() {
        b.wrapped(&format!("ID {id}"));
    }
    for line in &view.footer {
        b.centered(line);
    }
    if !view.qr_payload.is_empty() {
        // Chunked by characters, not words, and not normalized, so the
        // payload reads back exactly (control characters aside).
        let payload: String = view
            .qr_payload
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let qr = format!("QR: {payload}");
        let chars: Vec<char> = qr.chars().collect();
        for chunk in chars.chunks(width) {
            b.blocks.push(Block::Line(chunk.iter().collect()));
        }
    }
    b.blocks
}

struct Builder {
    width: usize,
    blocks: Vec<Block>,
}

impl Builder {
    fn heading(&mut self, text: &str, major: bool) {
        let text = clean(text);
        if !text.is_empty() {
            self.blocks.push(Block::Heading { text, major });
        }
    }

    fn line(&mut self, line: String) {
        self.blocks.push(Block::Line(line));
    }

    fn separator(&mut self) {
        self.line("-".repeat(self.width));
    }

    fn wrapped(&mut self, text: &str) {
        for line in wrap_chars(&clean(text), self.width) {
            self.line(line);
        }
    }

    fn centered(&mut self, text: &str) {
        for line in wrap_chars(&clean(text), self.width) {
            let centered = center(&line, self.width);
            self.line(centered);
        }
    }

    /// `left` at the left margin and `right` flush right on the same line when
    /// both fit; otherwise `left` wraps and `right` goes flush right below it.
    fn left_right(&mut self, left: &str, right: &str) {
        let width = self.width;
        // Keep a leading indent of `left` (used for the quantity line).
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
        self.blocks.extend(lines.into_iter().map(Block::Line));
    }
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
        let mut b = Builder {
            width: 32,
            blocks: Vec::new(),
        };
        b.left_right("  2 ш x 2800.00", "5600.00");
        assert_eq!(
            b.blocks,
            vec![Block::Line(format!(
                "  2 ш x 2800.00{}5600.00",
                " ".repeat(10)
            ))]
        );
    }
}
