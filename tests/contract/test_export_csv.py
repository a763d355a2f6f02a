"""9. ExportJournal as CSV: RFC 4180, a header, one row per item, receipts' columns repeated."""

import csv
import io
import re

from google.protobuf import timestamp_pb2

from harness import enum_label, export, get_receipt, journal_of_every_kind

COLUMNS = (
    "receipt_number,receipt_id,created_at,kind,type,receipt_reference,receipt_moment,currency,"
    "total_amount,total_vat,total_city_tax,fiscal_state,original_receipt_id,key_id,"
    "previous_hash,hash,signature,item_position,item_name,item_quantity,item_unit_price,"
    "item_tax_type,item_vat_rate,item_city_tax_rate,item_total_amount,item_total_vat,"
    "item_total_city_tax").split(",")
ITEM_COLUMNS = [c for c in COLUMNS if c.startswith("item_")]
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|\+00:00)")


def _time(message, field, value, where):
    """The column holds the receipt's instant, RFC 3339 in UTC (empty when unset)."""
    if not message.HasField(field):
        assert value == "", f"{where}: {field} is unset, the column says {value!r}"
        return
    assert RFC3339_UTC.fullmatch(value), f"{where}: {value!r} is not RFC 3339 UTC"
    parsed = timestamp_pb2.Timestamp()
    parsed.FromJsonString(value)
    expected = getattr(message, field)
    assert (parsed.seconds, parsed.nanos) == (expected.seconds, expected.nanos), \
        f"{where}: {value!r} is not {expected.ToJsonString()}"


def _check_row(row, receipt, item, where):
    _time(receipt, "created_at", row["created_at"], where)
    _time(receipt, "receipt_moment", row["receipt_moment"], where)
    expected = {
        "receipt_number": str(receipt.receipt_number),
        "receipt_id": receipt.id,
        "kind": enum_label(receipt, "kind"),
        "type": enum_label(receipt, "type"),
        "receipt_reference": receipt.receipt_reference,
        "currency": receipt.currency,
        "total_amount": receipt.total_amount,
        "total_vat": receipt.total_vat,
        "total_city_tax": receipt.total_city_tax,
        "fiscal_state": enum_label(receipt, "fiscal_state"),
        "original_receipt_id": receipt.original_receipt_id,
        "key_id": receipt.key_id,
        "previous_hash": receipt.previous_hash.hex(),
        "hash": receipt.hash.hex(),
        "signature": receipt.signature.hex(),
    }
    if item is None:
        expected.update({column: "" for column in ITEM_COLUMNS})
    else:
        expected.update({
            "item_position": str(item.position),
            "item_name": item.name,
            "item_quantity": item.quantity,
            "item_unit_price": item.unit_price,
            "item_tax_type": enum_label(item, "tax_type"),
            "item_vat_rate": item.vat_rate,
            "item_city_tax_rate": item.city_tax_rate,
            "item_total_amount": item.total_amount,
            "item_total_vat": item.total_vat,
            "item_total_city_tax": item.total_city_tax,
        })
    found = {column: row[column] for column in expected}
    assert found == expected, f"{where}: " + ", ".join(
        f"{c} is {found[c]!r}, not {expected[c]!r}" for c in expected if found[c] != expected[c])


def test_export_journal_csv_has_a_row_per_item_as_get_receipt_gives_them(fiscus, till):
    client = fiscus.receipts
    ids = journal_of_every_kind(client, till)
    text = export(client, till, "JOURNAL_EXPORT_FORMAT_CSV").decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert rows, "the export is empty"
    assert rows[0] == COLUMNS, f"the header is {rows[0]}"
    body = rows[1:]
    receipts = [get_receipt(client, receipt_id) for receipt_id in ids]
    expected_rows = sum(max(1, len(r.items)) for r in receipts)
    assert len(body) == expected_rows, \
        f"{len(body)} rows, not one per item and one per receipt without items " \
        f"({expected_rows}):\n{text}"
    at = 0
    for receipt in receipts:
        for item in list(receipt.items) or [None]:
            row = body[at]
            assert len(row) == len(COLUMNS), f"row {at + 1} has {len(row)} columns: {row}"
            where = f"row {at + 1} (receipt {receipt.receipt_number}, " \
                    f"{enum_label(receipt, 'kind')}, item {item.position if item else '-'})"
            _check_row(dict(zip(COLUMNS, row)), receipt, item, where)
            at += 1
