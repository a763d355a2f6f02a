//! Behaviour of the three receipt renderers.

use std::io::{Cursor, Write};
use std::process::{Command, Stdio};

use fiscus_render::{ItemLine, PaymentLine, ReceiptView, render_pdf, render_png, render_text};

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
        merchant_name: "Эмийн сан ХХК".to_string(),
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
            item("Pâine și brânză", "1", "kg", "1250.50", "1250.50"),
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
    assert_eq!(lines[0].trim(), "Эмийн сан ХХК");
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

fn pdftotext(pdf: &[u8]) -> Option<String> {
    let mut child = Command::new("pdftotext")
        .args(["-enc", "UTF-8", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pdf)
        .expect("write PDF to pdftotext");
    let output = child.wait_with_output().expect("pdftotext runs");
    assert!(
        output.status.success(),
        "pdftotext failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).expect("UTF-8 text"))
}

#[test]
fn pdf_is_well_formed_and_its_text_extracts_with_cyrillic_and_romanian() {
    let pdf = render_pdf(&receipt()).expect("render PDF");
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"));
    assert!(
        pdf.len() < 120_000,
        "subset fonts keep it small: {} bytes",
        pdf.len()
    );
    std::fs::write(std::env::temp_dir().join("fiscus-render-sample.pdf"), &pdf).ok();

    match pdftotext(&pdf) {
        Some(text) => {
            for expected in [
                "Эмийн сан ХХК",
                "Pâine și brânză",
                "Талх",
                "Өндөг",
                "Болормаа",
                "11350.50 MNT",
                "Lottery: AB 12345678",
            ] {
                assert!(
                    text.contains(expected),
                    "{expected:?} missing from:\n{text}"
                );
            }
        }
        None => eprintln!("note: pdftotext not on PATH; skipped the PDF text extraction check"),
    }
}
