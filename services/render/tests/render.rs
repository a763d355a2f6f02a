//! Behaviour of the receipt and shift report renderers and of the layout they share.

use std::io::Cursor;

use fiscus_render::{
    Block, ItemLine, Layout, PaymentLine, ReceiptView, ReportPaymentLine, ReportTransactionLine,
    ReportVatLine, ReportView, Transactions, render_pdf, render_png, render_report_pdf,
    render_report_pdf_of, render_report_png, render_report_text, render_report_text_of,
    render_text,
};
use pdf_extract::content::Content;

const QR_PAYLOAD: &str = "fiscus:1:37900846788:001:001:42:9f86d081884c7d65";

fn item(name: &str, quantity: &str, unit: &str, price: &str, total: &str) -> ItemLine {
    ItemLine {
        name: name.to_string(),
        quantity: quantity.to_string(),
        measure_unit: unit.to_string(),
        unit_price: price.to_string(),
        total_amount: total.to_string(),
        vat: "0.00".to_string(),
        city_tax: "0.00".to_string(),
    }
}

fn receipt() -> ReceiptView {
    ReceiptView {
        title: "SALE RECEIPT".to_string(),
        merchant_name: "Дээж Дэлгүүр ХХК".to_string(),
        merchant_tin: "37900846788".to_string(),
        branch_no: "001".to_string(),
        pos_no: "001".to_string(),
        receipt_number: 42,
        receipt_id: "037900846788001001230000000042".to_string(),
        moment: "2026-11-23 10:15:00".to_string(),
        cashier: Some("Болормаа".to_string()),
        customer: Some("Buyer TIN 37900846788".to_string()),
        items: vec![
            item("Талх", "2", "ш", "2800.00", "5600.00"),
            item("Өндөг", "10", "ш", "450.00", "4500.00"),
            item("Pâine de casă", "1", "buc", "12.50", "12.50"),
            item("Brânză și înghețată", "1", "kg", "1238.00", "1238.00"),
        ],
        total_amount: "11350.50".to_string(),
        total_vat: "1031.86".to_string(),
        total_city_tax: "103.19".to_string(),
        currency: "MNT".to_string(),
        payments: vec![
            PaymentLine {
                label: "Бэлэн мөнгө".to_string(),
                amount: "12000.00".to_string(),
            },
            PaymentLine {
                label: "Хариулт".to_string(),
                amount: "-649.50".to_string(),
            },
        ],
        signature_reference: "key ed25519:ab12cd34 · hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08…".to_string(),
        qr_payload: QR_PAYLOAD.to_string(),
        footer: vec!["Lottery: AB 12345678".to_string(), "COPY".to_string()],
    }
}

fn long_names_receipt() -> ReceiptView {
    let mut view = receipt();
    view.merchant_name =
        "Улаанбаатар хотын Эмийн сан Нэгдсэн Худалдааны Төв Хязгаарлагдмал Хариуцлагатай Компани"
            .to_string();
    view.items.push(item(
        "Үнэ цэнэтэй органик цөцгийн тос, Монгол улсын Төв аймгийн малчдын үйлдвэрлэсэн, 500 грамм",
        "3",
        "ш",
        "12500.00",
        "37500.00",
    ));
    view.items.push(item(
        &"Өндөгнийшар".repeat(9),
        "1234567.890",
        "кг",
        "99999999.99",
        "123456789012345.67",
    ));
    view.items.push(item(
        "Brânză de vaci proaspătă și smântână grasă din Țara Moților, ambalată în pungă",
        "1",
        "buc",
        "42.90",
        "42.90",
    ));
    view
}

#[test]
fn text_lines_never_exceed_the_width_in_chars() {
    let view = long_names_receipt();
    for width in [32, 48, 64] {
        let lines = render_text(&view, width);
        assert!(lines.len() > 20);
        for line in &lines {
            assert!(
                line.chars().count() <= width,
                "width {width}: {line:?} has {} chars",
                line.chars().count()
            );
        }
    }
}

#[test]
fn text_width_is_clamped_into_32_to_64() {
    let view = long_names_receipt();
    let narrow = render_text(&view, 0);
    assert!(narrow.iter().all(|l| l.chars().count() <= 32));
    assert_eq!(narrow, render_text(&view, 32));
    let wide = render_text(&view, 500);
    assert!(wide.iter().all(|l| l.chars().count() <= 64));
    assert_eq!(wide, render_text(&view, 64));
}

#[test]
fn text_total_line_contains_the_total_right_aligned() {
    let view = receipt();
    for width in [32, 48, 64] {
        let lines = render_text(&view, width);
        let total = lines
            .iter()
            .find(|l| l.starts_with("TOTAL"))
            .expect("a TOTAL line");
        assert!(total.ends_with("11350.50 MNT"), "{total:?}");
        assert_eq!(total.chars().count(), width, "{total:?}");
    }
}

#[test]
fn text_right_aligns_cyrillic_item_totals_by_chars() {
    let lines = render_text(&receipt(), 48);
    let name = lines
        .iter()
        .position(|l| l == "Талх")
        .expect("item name line");
    let amounts = &lines[name + 1];
    assert!(amounts.starts_with("  2 ш x 2800.00"), "{amounts:?}");
    assert!(amounts.ends_with("5600.00"), "{amounts:?}");
    assert_eq!(amounts.chars().count(), 48);
    let payment = lines
        .iter()
        .find(|l| l.starts_with("Бэлэн мөнгө"))
        .expect("payment line");
    assert_eq!(payment.chars().count(), 48);
    assert!(payment.ends_with("12000.00"));
}

#[test]
fn text_has_header_footer_and_qr_payload() {
    let lines = render_text(&receipt(), 48);
    assert_eq!(lines[0].trim(), "Дээж Дэлгүүр ХХК");
    assert!(lines[0].starts_with("  "), "merchant name is centered");
    assert!(lines.iter().any(|l| l.contains("TIN 37900846788")));
    assert!(lines.iter().any(|l| l.contains("SALE RECEIPT No. 42")));
    assert!(lines.iter().any(|l| l.contains("2026-11-23 10:15:00")));
    assert!(lines.iter().any(|l| l.contains("Болормаа")));
    assert!(lines.iter().any(|l| l == "Buyer TIN 37900846788"));
    assert!(lines.iter().any(|l| l.trim() == "COPY"));
    assert!(lines.iter().any(|l| l.trim() == "Lottery: AB 12345678"));
    // The QR payload may wrap; joined back it is exact.
    let start = lines
        .iter()
        .position(|l| l.starts_with("QR: "))
        .expect("QR line");
    let joined: String = lines[start..].concat();
    assert_eq!(joined, format!("QR: {QR_PAYLOAD}"));
    let narrow = render_text(&receipt(), 32);
    let start = narrow
        .iter()
        .position(|l| l.starts_with("QR: "))
        .expect("QR line");
    assert_eq!(narrow[start..].concat(), format!("QR: {QR_PAYLOAD}"));
}

#[test]
fn text_omits_absent_cashier_and_customer_and_tolerates_control_chars() {
    let mut view = receipt();
    view.cashier = None;
    view.customer = None;
    view.items[0].name = "Талх\nцагаан\t".to_string();
    let lines = render_text(&view, 48);
    assert!(!lines.iter().any(|l| l.contains("Cashier")));
    assert!(!lines.iter().any(|l| l.contains("Buyer")));
    assert!(lines.iter().all(|l| !l.chars().any(char::is_control)));
    assert!(lines.iter().any(|l| l == "Талх цагаан"));
}

struct Gray {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

fn decode_png(bytes: &[u8]) -> Gray {
    let decoder = png::Decoder::new(Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut pixels).expect("PNG frame");
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    pixels.truncate(info.buffer_size());
    Gray {
        width: info.width as usize,
        height: info.height as usize,
        pixels,
    }
}

#[test]
fn png_is_576_wide_and_its_qr_code_decodes_to_the_payload() {
    let view = receipt();
    let bytes = render_png(&view).expect("render PNG");
    let image = decode_png(&bytes);
    assert_eq!(image.width, 576);
    assert!(image.height > 600, "height {}", image.height);

    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(image.width, image.height, |x, y| {
            image.pixels[y * image.width + x]
        });
    let grids = prepared.detect_grids();
    let decoded: Vec<String> = grids
        .iter()
        .filter_map(|g| g.decode().ok().map(|(_, text)| text))
        .collect();
    assert_eq!(decoded, vec![QR_PAYLOAD.to_string()]);

    // Text was drawn: the upper part of the image has gray and black pixels.
    let text_area = &image.pixels[..image.width * 300];
    assert!(text_area.iter().filter(|&&p| p < 128).count() > 1000);
    std::fs::write(
        std::env::temp_dir().join("fiscus-render-sample.png"),
        &bytes,
    )
    .ok();
}

#[test]
fn png_of_a_receipt_with_200_items_grows_in_height() {
    let small = decode_png(&render_png(&receipt()).expect("render PNG"));
    let mut view = long_names_receipt();
    view.items = (0..200)
        .map(|i| item(&format!("Бараа №{i} — Pâine"), "1", "ш", "100.00", "100.00"))
        .collect();
    let big = decode_png(&render_png(&view).expect("render PNG with 200 items"));
    assert_eq!(big.width, 576);
    assert!(
        big.height > small.height + 200 * 2 * 20,
        "{} vs {}",
        big.height,
        small.height
    );
    let pdf = render_pdf(&view).expect("render PDF with 200 items");
    assert!(pdf.starts_with(b"%PDF-"));
}

#[test]
fn png_without_qr_payload_has_no_qr_code() {
    let mut view = receipt();
    view.qr_payload.clear();
    let image = decode_png(&render_png(&view).expect("render PNG"));
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(image.width, image.height, |x, y| {
            image.pixels[y * image.width + x]
        });
    assert!(prepared.detect_grids().iter().all(|g| g.decode().is_err()));
    assert!(!render_text(&view, 48).iter().any(|l| l.starts_with("QR:")));
}

#[test]
fn over_long_qr_payload_is_an_error_not_a_panic() {
    let mut view = receipt();
    view.qr_payload = "x".repeat(5000);
    assert!(render_png(&view).is_err());
    assert!(render_pdf(&view).is_err());
}

/// The text of `pdf` as a reader finds it: through each font's ToUnicode map, since the
/// embedded subsets number their glyphs anew.
fn pdf_text(pdf: &[u8]) -> String {
    pdf_extract::extract_text_from_mem(pdf).expect("PDF text extracts")
}

/// Receipt text that a PDF must give back intact: Mongolian Cyrillic, Romanian, amounts and
/// the receipt number.
const PDF_TEXT: [&str; 11] = [
    "Дээж Дэлгүүр ХХК",
    "SALE RECEIPT No. 42",
    "Талх",
    "Өндөг",
    "Болормаа",
    "Pâine de casă",
    "Brânză și înghețată",
    "2 ш x 2800.00",
    "11350.50 MNT",
    "Бэлэн мөнгө",
    "Lottery: AB 12345678",
];

#[test]
fn pdf_text_extracts_with_cyrillic_romanian_amounts_and_number() {
    let pdf = render_pdf(&receipt()).expect("render PDF");
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"));
    assert!(
        pdf.len() < 60_000,
        "subset fonts keep it small: {} bytes",
        pdf.len()
    );
    std::fs::write(std::env::temp_dir().join("fiscus-render-sample.pdf"), &pdf).ok();

    let text = pdf_text(&pdf);
    for expected in PDF_TEXT {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn pdf_text_check_fails_when_the_unicode_maps_are_lost() {
    // Without its ToUnicode maps the PDF still shows every glyph, but its text is gone;
    // the check above must see that rather than guess the text from the fonts.
    let pdf = render_pdf(&receipt()).expect("render PDF");
    let key = b"/ToUnicode";
    let mut broken = pdf.clone();
    let mut found = 0;
    for at in 0..broken.len() - key.len() {
        if broken[at..].starts_with(key) {
            broken[at + key.len() - 1] = b'X';
            found += 1;
        }
    }
    assert_eq!(found, 2, "one map for each font");
    let text = pdf_extract::extract_text_from_mem(&broken).unwrap_or_default();
    for expected in ["Дээж Дэлгүүр ХХК", "Талх", "Pâine de casă"] {
        assert!(!text.contains(expected), "{expected:?} still extracts");
    }
}

#[test]
fn pdf_longer_than_200_inches_continues_on_a_second_page() {
    let mut view = receipt();
    view.items = (0..1000)
        .map(|i| item(&format!("Талх №{i}"), "1", "ш", "1.00", "1.00"))
        .collect();
    let pdf = render_pdf(&view).expect("render a long PDF");
    let pages = pdf_extract::extract_text_from_mem_by_pages(&pdf).expect("PDF text extracts");
    assert_eq!(pages.len(), 2);
    assert!(pages[0].contains("Дээж Дэлгүүр ХХК") && pages[0].contains("Талх №0"));
    assert!(pages[1].contains("Талх №999") && pages[1].contains("TOTAL"));
}

/// Filled rectangles drawn on the first page of `pdf`, as (left, bottom, right, top) in
/// points: the bounds of each closed subpath filled.
fn filled_rectangles(pdf: &[u8]) -> Vec<[f32; 4]> {
    let doc = pdf_extract::Document::load_mem(pdf).expect("PDF parses");
    let page = *doc.get_pages().values().next().expect("a page");
    let content = Content::decode(&doc.get_page_content(page).expect("page content"))
        .expect("content stream decodes");
    let number = |o: &pdf_extract::Object| o.as_float().expect("a number");
    let identity = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    let (mut ctm, mut saved) = (identity, Vec::new());
    let (mut points, mut subpaths, mut rectangles) = (Vec::new(), Vec::new(), Vec::new());
    for op in &content.operations {
        let n: Vec<f32> = op
            .operands
            .iter()
            .filter_map(|o| o.as_float().ok())
            .collect();
        match op.operator.as_str() {
            "q" => saved.push(ctm),
            "Q" => ctm = saved.pop().unwrap_or(identity),
            "cm" => {
                let [a, b, c, d, e, f] = ctm;
                let m: Vec<f32> = op.operands.iter().map(number).collect();
                ctm = [
                    m[0] * a + m[1] * c,
                    m[0] * b + m[1] * d,
                    m[2] * a + m[3] * c,
                    m[2] * b + m[3] * d,
                    m[4] * a + m[5] * c + e,
                    m[4] * b + m[5] * d + f,
                ];
            }
            "m" | "l" => {
                let [a, b, c, d, e, f] = ctm;
                points.push((a * n[0] + c * n[1] + e, b * n[0] + d * n[1] + f));
            }
            "h" => subpaths.push(std::mem::take(&mut points)),
            "f" | "f*" => {
                for subpath in subpaths.drain(..) {
                    let xs = subpath.iter().map(|p| p.0);
                    let ys = subpath.iter().map(|p| p.1);
                    rectangles.push([
                        xs.clone().fold(f32::MAX, f32::min),
                        ys.clone().fold(f32::MAX, f32::min),
                        xs.fold(f32::MIN, f32::max),
                        ys.fold(f32::MIN, f32::max),
                    ]);
                }
            }
            "n" | "S" | "B" | "B*" | "b" | "b*" => subpaths.clear(),
            _ => {}
        }
    }
    rectangles
}

/// The QR codes that `rectangles` draw, rasterized at 4 px per point and decoded.
fn decode_rectangles(rectangles: &[[f32; 4]]) -> Vec<String> {
    const SCALE: f32 = 4.0;
    const MARGIN: f32 = 10.0;
    let left = rectangles.iter().map(|r| r[0]).fold(f32::MAX, f32::min) - MARGIN;
    let bottom = rectangles.iter().map(|r| r[1]).fold(f32::MAX, f32::min) - MARGIN;
    let right = rectangles.iter().map(|r| r[2]).fold(f32::MIN, f32::max) + MARGIN;
    let top = rectangles.iter().map(|r| r[3]).fold(f32::MIN, f32::max) + MARGIN;
    let width = ((right - left) * SCALE) as usize;
    let height = ((top - bottom) * SCALE) as usize;
    let mut pixels = vec![255u8; width * height];
    for r in rectangles {
        let px = |v: f32, origin: f32| ((v - origin) * SCALE).round() as usize;
        // Image rows run down from the top of the page.
        for y in px(top, r[3])..px(top, r[1]) {
            pixels[y * width + px(r[0], left)..y * width + px(r[2], left)].fill(0);
        }
    }
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    prepared
        .detect_grids()
        .iter()
        .filter_map(|g| g.decode().ok().map(|(_, text)| text))
        .collect()
}

#[test]
fn pdf_qr_code_is_drawn_in_rectangles_that_decode_to_the_payload() {
    let pdf = render_pdf(&receipt()).expect("render PDF");
    let rectangles = filled_rectangles(&pdf);
    assert!(rectangles.len() > 100, "{} rectangles", rectangles.len());
    assert_eq!(decode_rectangles(&rectangles), vec![QR_PAYLOAD.to_string()]);

    let mut view = receipt();
    view.qr_payload.clear();
    let pdf = render_pdf(&view).expect("render PDF without QR");
    assert!(filled_rectangles(&pdf).is_empty());
}

#[test]
fn a_layout_other_than_a_receipt_renders_in_every_format() {
    // The shape of a shift report: title, lines, a totals table.
    let mut report = Layout::new(48, "Z REPORT No. 7", "Дээж Дэлгүүр ХХК");
    report.heading("Дээж Дэлгүүр ХХК", true);
    report.heading("Z REPORT No. 7", false);
    report.wrapped("Ээлж 2026-11-23 08:00 – 20:00, касс 001");
    report.separator();
    report.left_right("Борлуулалт (12)", "11350.50 MNT");
    report.left_right("Буцаалт (1)", "-649.50 MNT");
    report.line("Vânzări în numerar și card");

    let lines = report.text_lines();
    assert_eq!(lines.len(), 7);
    assert!(lines.iter().all(|l| l.chars().count() <= 48));
    assert!(lines[4].starts_with("Борлуулалт (12)") && lines[4].ends_with("11350.50 MNT"));
    assert!(!report.blocks().iter().any(|b| matches!(b, Block::Qr(_))));

    let text = pdf_text(&report.to_pdf().expect("render report PDF"));
    for expected in [
        "Z REPORT No. 7",
        "Борлуулалт (12)",
        "-649.50 MNT",
        "Vânzări în numerar și card",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let image = decode_png(&report.to_png().expect("render report PNG"));
    assert_eq!(image.width, 576);
}

const CYRILLIC_MERCHANT: &str = "ХХК Номин Тал";
const ROMANIAN_MERCHANT: &str = "Magazinul Științific SRL";

fn vat_line(label: &str, base: &str, vat: &str, gross: &str) -> ReportVatLine {
    ReportVatLine {
        label: label.to_string(),
        taxable_base: base.to_string(),
        vat: vat.to_string(),
        gross: gross.to_string(),
    }
}

fn payment_method(label: &str, count: u64, sum: &str) -> ReportPaymentLine {
    ReportPaymentLine {
        label: label.to_string(),
        count,
        sum: sum.to_string(),
    }
}

fn transaction(
    label: &str,
    receipt_number: u64,
    time: &str,
    amount: &str,
) -> ReportTransactionLine {
    ReportTransactionLine {
        label: label.to_string(),
        id: format!("0379008467880010012300000{receipt_number:05}"),
        receipt_number,
        time: time.to_string(),
        amount: amount.to_string(),
    }
}

/// A Z-report of a closed shift, without transactions.
fn report() -> ReportView {
    ReportView {
        title: "Z-REPORT No 3".to_string(),
        merchant_name: CYRILLIC_MERCHANT.to_string(),
        merchant_tin: "37900846788".to_string(),
        branch_no: "001".to_string(),
        pos_no: "002".to_string(),
        shift_number: 3,
        opened_at: "2026-11-23 08:00:00".to_string(),
        closed_at: Some("2026-11-23 20:00:00".to_string()),
        opened_by: "Болормаа".to_string(),
        closed_by: Some("Ștefan Țurcanu".to_string()),
        generated_at: "2026-11-23 20:00:05".to_string(),
        currency: "MNT".to_string(),
        receipt_count: 14,
        first_receipt_number: 29,
        last_receipt_number: 42,
        sale_count: 12,
        sale_sum: "11350.50".to_string(),
        refund_count: 1,
        refund_sum: "649.50".to_string(),
        cancellation_count: 0,
        cancellation_sum: "0.00".to_string(),
        zero_receipt_count: 1,
        total_sum: "10701.00".to_string(),
        vat_lines: vec![
            vat_line("VAT 10.00%", "8821.82", "882.18", "9704.00"),
            vat_line("VAT 0.00%", "997.00", "0.00", "997.00"),
        ],
        total_vat: "882.18".to_string(),
        total_city_tax: "88.22".to_string(),
        payment_methods: vec![
            payment_method("Бэлэн мөнгө", 9, "6701.00"),
            payment_method("Card", 3, "3000.00"),
            payment_method("Numerar și transfer", 1, "1000.00"),
        ],
        qr_payment_count: 2,
        qr_payment_sum: "1500.00".to_string(),
        qr_refund_count: 1,
        qr_refund_sum: "500.00".to_string(),
        warnings: vec![
            "Reconciliation mismatch: payments 10701.00 differ from the receipts' total 10700.00 by 1.00"
                .to_string(),
        ],
        transactions: Vec::new(),
    }
}

/// The same report in full: one transaction for every receipt.
fn full_report() -> ReportView {
    let mut view = report();
    view.transactions = vec![
        transaction("SALE", 29, "08:05:12", "5600.00"),
        transaction("REFUND", 30, "09:41:00", "-649.50"),
        ReportTransactionLine {
            label: "QR PAYMENT".to_string(),
            id: "mia-7f3c2a91-44b0".to_string(),
            receipt_number: 0,
            time: "10:02:33".to_string(),
            amount: "1500.00".to_string(),
        },
    ];
    view
}

fn assert_within(lines: &[String], width: usize) {
    for line in lines {
        assert!(
            line.chars().count() <= width,
            "width {width}: {line:?} has {} chars",
            line.chars().count()
        );
    }
}

#[test]
fn report_text_lines_never_exceed_the_width_with_cyrillic_and_romanian_merchants() {
    for merchant in [CYRILLIC_MERCHANT, ROMANIAN_MERCHANT] {
        let mut view = full_report();
        view.merchant_name = merchant.to_string();
        let lines = render_report_text(&view, 48);
        assert!(lines.len() > 30, "{} lines", lines.len());
        assert_within(&lines, 48);
        assert_eq!(lines[0].trim(), merchant);
        for width in [32, 64] {
            assert_within(&render_report_text(&view, width), width);
        }
    }
}

#[test]
fn report_text_has_identification_net_turnover_vat_lines_and_payment_methods() {
    let lines = render_report_text(&report(), 48);
    let row = |left: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(left))
            .unwrap_or_else(|| panic!("a {left:?} line in {lines:#?}"))
            .clone()
    };
    assert!(lines.iter().any(|l| l.trim() == "Z-REPORT No 3"));
    assert!(lines.iter().any(|l| l.trim() == "TIN 37900846788"));
    assert!(lines.iter().any(|l| l.trim() == "Branch 001 POS 002"));
    assert!(row("Shift No").ends_with(" 3"));
    assert!(row("Opened by").ends_with("Болормаа"));
    assert!(row("Closed by").ends_with("Ștefan Țurcanu"));
    assert!(row("Closed ").ends_with("2026-11-23 20:00:00"));
    assert!(row("Generated").ends_with("2026-11-23 20:00:05"));
    assert!(row("First receipt No").ends_with("29"));
    assert!(row("Last receipt No").ends_with("42"));
    assert!(row("Sales (12)").ends_with("11350.50"));
    assert!(row("Refunds (1)").ends_with("649.50"));

    let turnover = row("NET TURNOVER");
    assert!(turnover.ends_with("10701.00 MNT"), "{turnover:?}");
    assert_eq!(turnover.chars().count(), 48);
    assert!(row("Total VAT").ends_with("882.18 MNT"));
    assert!(row("City tax").ends_with("88.22 MNT"));

    for (label, base, gross) in [
        ("VAT 10.00%", "8821.82", "9704.00"),
        ("VAT 0.00%", "997.00", "997.00"),
    ] {
        let at = lines
            .iter()
            .position(|l| l == label)
            .unwrap_or_else(|| panic!("{label:?} line"));
        assert!(lines[at + 1].ends_with(base), "{:?}", lines[at + 1]);
        assert!(lines[at + 3].ends_with(gross), "{:?}", lines[at + 3]);
    }
    for (label, sum) in [
        ("Бэлэн мөнгө (9)", "6701.00"),
        ("Card (3)", "3000.00"),
        ("Numerar și transfer (1)", "1000.00"),
    ] {
        let payment = row(label);
        assert!(payment.ends_with(sum), "{payment:?}");
        assert_eq!(payment.chars().count(), 48, "{payment:?}");
    }
    assert!(row("Payments (2)").ends_with("1500.00"));
    // The warning wraps; joined back it reads as given.
    let at = lines
        .iter()
        .position(|l| l == "WARNINGS")
        .expect("warnings");
    assert!(lines[at + 1].starts_with("! Reconciliation mismatch"));
    assert!(lines[at + 1..].join(" ").contains("by 1.00"));
}

#[test]
fn report_text_lists_transactions_only_when_given() {
    let summary = render_report_text(&report(), 48);
    assert!(!summary.iter().any(|l| l.starts_with("TRANSACTIONS")));
    assert!(!summary.iter().any(|l| l.contains("08:05:12")));

    let full = render_report_text(&full_report(), 48);
    assert_eq!(
        full.len(),
        summary.len() + 2 + 3,
        "separator, heading, three lines"
    );
    assert!(
        full.iter()
            .any(|l| l.starts_with("TRANSACTIONS") && l.ends_with(" 3"))
    );
    for (left, amount) in [
        ("08:05:12 SALE No 29", "5600.00"),
        ("09:41:00 REFUND No 30", "-649.50"),
        ("10:02:33 QR PAYMENT mia-7f3c2a91-44b0", "1500.00"),
    ] {
        let line = full
            .iter()
            .find(|l| l.starts_with(left))
            .unwrap_or_else(|| panic!("{left:?} in {full:#?}"));
        assert!(line.ends_with(amount), "{line:?}");
    }
    // At 32 columns the id no longer fits on the first line: it wraps, the amount beside it.
    let narrow = render_report_text(&full_report(), 32);
    assert_within(&narrow, 32);
    let at = narrow
        .iter()
        .position(|l| l.starts_with("10:02:33 QR PAYMENT"))
        .expect("QR payment transaction");
    let next = &narrow[at + 1];
    assert!(
        next.starts_with("mia-7f3c2a91-44b0") && next.ends_with("1500.00"),
        "{next:?}"
    );
}

#[test]
fn report_text_of_an_empty_open_shift_says_no_receipts_and_has_no_qr_section() {
    let view = ReportView {
        title: "X-REPORT".to_string(),
        merchant_name: ROMANIAN_MERCHANT.to_string(),
        shift_number: 4,
        opened_at: "2026-11-24 08:00:00".to_string(),
        generated_at: "2026-11-24 08:30:00".to_string(),
        currency: "MDL".to_string(),
        total_sum: "0.00".to_string(),
        total_vat: "0.00".to_string(),
        total_city_tax: "0.00".to_string(),
        ..ReportView::default()
    };
    let lines = render_report_text(&view, 48);
    assert_within(&lines, 48);
    assert!(lines.iter().any(|l| l == "No receipts"));
    assert!(!lines.iter().any(|l| l.starts_with("Sales")));
    assert!(!lines.iter().any(|l| l.starts_with("Closed")));
    assert!(!lines.iter().any(|l| l.starts_with("Opened by")));
    assert!(!lines.iter().any(|l| l.contains("QR PAYMENTS")));
    assert!(!lines.iter().any(|l| l.contains("WARNINGS")));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("NET TURNOVER") && l.ends_with("0.00 MDL"))
    );
}

#[test]
fn report_pdf_text_extracts_with_cyrillic_romanian_names_and_amounts() {
    for merchant in [CYRILLIC_MERCHANT, ROMANIAN_MERCHANT] {
        let mut view = full_report();
        view.merchant_name = merchant.to_string();
        let pdf = render_report_pdf(&view).expect("render report PDF");
        assert!(pdf.starts_with(b"%PDF-"));
        let text = pdf_text(&pdf);
        for expected in [
            merchant,
            "Z-REPORT No 3",
            "Болормаа",
            "Ștefan Țurcanu",
            "Бэлэн мөнгө (9)",
            "Numerar și transfer (1)",
            "VAT 10.00%",
            "8821.82",
            "10701.00 MNT",
            "09:41:00 REFUND No 30",
            "-649.50",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
    }
}

#[test]
fn report_png_decodes_and_is_576_wide() {
    let image = decode_png(&render_report_png(&full_report()).expect("render report PNG"));
    assert_eq!(image.width, 576);
    assert!(image.height > 600, "height {}", image.height);
    assert!(image.pixels.iter().filter(|&&p| p < 128).count() > 1000);
}

#[test]
fn full_report_of_2000_transactions_renders_to_over_2000_text_lines() {
    let mut view = report();
    view.transactions = (1..=2000)
        .map(|n| transaction("SALE", n, "12:00:00", &format!("{n}.00")))
        .collect();
    let lines = render_report_text(&view, 48);
    assert!(lines.len() > 2000, "{} lines", lines.len());
    assert_within(&lines, 48);
    let last = lines
        .iter()
        .find(|l| l.starts_with("12:00:00 SALE No 2000 "))
        .expect("the last transaction");
    assert!(last.ends_with("2000.00"));
}

/// Transactions made one at a time, as ShiftService reads them from its protobuf report.
struct Made(usize);

impl Transactions for Made {
    fn count(&self) -> usize {
        self.0
    }

    fn line(&self, index: usize) -> ReportTransactionLine {
        let n = index as u64 + 1;
        transaction("SALE", n, "12:00:00", &format!("{n}.00"))
    }
}

#[test]
fn a_report_whose_transactions_are_read_one_at_a_time_prints_as_one_that_holds_them() {
    let source = Made(2500);
    let mut holding = report();
    holding.transactions = (0..source.count()).map(|i| source.line(i)).collect();
    let view = report();
    assert_eq!(
        render_report_text_of(&view, &source, 48),
        render_report_text(&holding, 48)
    );
    // 2,500 lines pass one page: the rows continue on the second, in order.
    let pdf = render_report_pdf_of(&view, &source).expect("render report PDF");
    let pages = pdf_extract::extract_text_from_mem_by_pages(&pdf).expect("PDF text extracts");
    assert_eq!(pages.len(), 2);
    assert!(pages[0].contains("TRANSACTIONS") && pages[0].contains("SALE No 1 "));
    assert!(pages[1].contains("SALE No 2500"));
    let held = pdf_extract::extract_text_from_mem_by_pages(
        &render_report_pdf(&holding).expect("render report PDF"),
    )
    .expect("PDF text extracts");
    assert_eq!(pages, held);
}
