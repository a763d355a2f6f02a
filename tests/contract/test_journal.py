"""6–8. VerifyJournal ranges, qr_data, and the JSON Lines export."""

import grpc
import pytest
from google.protobuf import json_format

from harness import (bread_sale, export, get_receipt, journal_of_every_kind, refused, sign,
                     verify)

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _two_receipts(client, till):
    sign(client, bread_sale(till))
    sign(client, bread_sale(till))


@pytest.mark.parametrize("field,number", [("from_number", 5), ("to_number", 9)])
def test_verify_journal_refuses_a_range_past_the_head(fiscus, till, field, number):
    client = fiscus.receipts
    _two_receipts(client, till)
    refusal = refused(lambda: verify(client, till, **{field: number}))
    assert refusal.code == INVALID, refusal
    assert field in refusal.fields, refusal


def test_verify_journal_from_the_last_receipt_checks_one(fiscus, till):
    client = fiscus.receipts
    _two_receipts(client, till)
    answer = verify(client, till, from_number=2)
    assert (answer.ok, answer.count_checked, answer.head_number) == (True, 1, 2), answer


def test_verify_journal_of_a_terminal_without_receipts_checks_none(fiscus, till):
    answer = verify(fiscus.receipts, till)
    assert (answer.ok, answer.count_checked, answer.head_number) == (True, 0, 0), answer


def test_a_signed_receipt_has_qr_data_and_get_receipt_gives_the_same(fiscus, till):
    client = fiscus.receipts
    signed = sign(client, bread_sale(till))
    assert signed.qr_data, "SignReceipt's receipt has no qr_data"
    assert get_receipt(client, signed.id).qr_data == signed.qr_data


def test_export_journal_json_lines_are_receipts_as_get_receipt_gives_them(fiscus, till):
    client = fiscus.receipts
    ids = journal_of_every_kind(client, till)
    text = export(client, till, "JOURNAL_EXPORT_FORMAT_JSON_LINES").decode("utf-8")
    lines = [line for line in text.split("\n") if line]
    assert len(lines) == len(ids), text
    receipt_class = client.cls("fiscus.v1.Receipt")
    for number, (line, receipt_id) in enumerate(zip(lines, ids), start=1):
        try:
            exported = json_format.Parse(line, receipt_class())
        except json_format.ParseError as error:
            pytest.fail(f"line {number} is not a Receipt in the proto JSON mapping: {error}")
        assert exported.receipt_number == number, "lines are in receipt-number order"
        assert exported == get_receipt(client, receipt_id), f"line {number}"
