"""2–4. operation_id: its one spelling, field or metadata, and retries that are recognised."""

import grpc
import pytest

from harness import (Refusal, bread_sale, cash, item, journal_state, length_delimited,
                     map_entry, new_id, refused, sale, sign)

INVALID = grpc.StatusCode.INVALID_ARGUMENT

# The same UUID, written in the forms the contract does not accept (canonical: 36 characters).
OTHER_SPELLINGS = {
    "without-dashes": lambda u: u.replace("-", ""),
    "in-braces": lambda u: "{" + u + "}",
    "as-urn": lambda u: "urn:uuid:" + u,
}


def _same(first, again):
    assert (again.id, again.receipt_number) == (first.id, first.receipt_number), \
        f"a different receipt: {again.id} number {again.receipt_number}, " \
        f"not {first.id} number {first.receipt_number}"


@pytest.mark.parametrize("spelling", OTHER_SPELLINGS)
def test_operation_id_spelled_otherwise_is_refused(fiscus, till, spelling):
    client = fiscus.receipts
    request = bread_sale(till)
    sign(client, request)
    before = journal_state(client, till)
    again = dict(request, operation_id=OTHER_SPELLINGS[spelling](request["operation_id"]))
    refusal = refused(lambda: sign(client, again))
    assert refusal.code == INVALID, refusal
    assert "operation_id" in refusal.fields, refusal
    assert journal_state(client, till) == before == ([1], 1), "no receipt is made"


def test_operation_id_in_uppercase_is_the_same_operation(fiscus, till):
    client = fiscus.receipts
    request = bread_sale(till)
    first = sign(client, request)
    again = sign(client, dict(request, operation_id=request["operation_id"].upper()))
    _same(first, again)
    assert journal_state(client, till) == ([1], 1)


def test_operation_id_field_and_metadata_that_differ_are_refused(fiscus, till):
    client = fiscus.receipts
    request = bread_sale(till)
    refusal = refused(lambda: sign(client, request, [("x-operation-id", new_id())]))
    assert refusal.code == INVALID, refusal
    assert {"operation_id", "x-operation-id"} <= set(refusal.fields), refusal
    assert journal_state(client, till) == ([], 0), "no receipt is made"


def test_operation_id_in_metadata_alone_works_like_the_field(fiscus, till):
    client = fiscus.receipts
    request = bread_sale(till)
    op = request.pop("operation_id")
    first = sign(client, request, [("x-operation-id", op)])
    assert first.receipt_number == 1
    _same(first, sign(client, request, [("x-operation-id", op)]))
    other = sale(till, [item("Талх", "1", "5700")], "5700")
    del other["operation_id"]
    refusal = refused(lambda: sign(client, other, [("x-operation-id", op)]))
    assert refusal.code == grpc.StatusCode.ALREADY_EXISTS, refusal
    assert journal_state(client, till) == ([1], 1)


def test_operation_id_in_field_and_metadata_alike_is_one_operation(fiscus, till):
    client = fiscus.receipts
    request = bread_sale(till)
    op = request["operation_id"]
    first = sign(client, request, [("x-operation-id", op)])
    _same(first, sign(client, request, [("x-operation-id", op)]))
    assert journal_state(client, till) == ([1], 1)


def test_a_retry_with_the_id_moved_to_metadata_gets_the_same_receipt(fiscus, till):
    client = fiscus.receipts
    request = bread_sale(till)
    first = sign(client, request)
    retry = dict(request, operation_id="")
    _same(first, sign(client, retry, [("x-operation-id", request["operation_id"])]))
    assert journal_state(client, till) == ([1], 1)


def _with_payment_data(client, request: dict, entries: list[tuple[str, str]]) -> bytes:
    """The request's bytes with one payment whose data map has `entries` in that order on the
    wire: the PayItem without data, then its map entries (field 11), then the request without
    payments followed by that PayItem (field 8)."""
    request = dict(request)
    [payment] = request.pop("payments")
    pay_item = client.msg("fiscus.v1.PayItem", payment).SerializeToString()
    pay_item += b"".join(map_entry(11, key, value) for key, value in entries)
    body = client.msg("fiscus.v1.SignReceiptRequest", request).SerializeToString()
    return body + length_delimited(8, pay_item)


def test_a_retry_with_map_entries_in_another_wire_order_gets_the_same_receipt(fiscus, till):
    client = fiscus.receipts
    request = bread_sale(till)
    request["payments"] = [dict(cash("5600"), method="PAYMENT_METHOD_PAYMENT_CARD")]
    entries = [("cardBrand", "Visa"), ("approvalCode", "123456"), ("batchNo", "42"),
               ("acquirer", "Хаан банк")]
    first = sign(client, _with_payment_data(client, request, entries))
    assert dict(first.payments[0].data) == dict(entries), "the data map is passed through"
    for order in (entries[::-1], entries[1:] + entries[:1]):
        try:
            again = sign(client, _with_payment_data(client, request, order))
        except Refusal as refusal:
            pytest.fail(f"the same request with its map in another order is refused: {refusal}")
        _same(first, again)
    assert journal_state(client, till) == ([1], 1)


def test_the_same_id_with_another_request_is_already_exists_naming_the_id(fiscus, till):
    client = fiscus.receipts
    request = bread_sale(till)
    sign(client, request)
    other = sale(till, [item("Талх", "1", "5700")], "5700")
    other["operation_id"] = request["operation_id"]
    other["receipt_reference"] = request["receipt_reference"]
    refusal = refused(lambda: sign(client, other))
    assert refusal.code == grpc.StatusCode.ALREADY_EXISTS, refusal
    assert request["operation_id"] in refusal.message, refusal
    assert journal_state(client, till) == ([1], 1)
