"""5. Refunds: never more than was sold, and only of the terminal's own receipts."""

import re

import grpc

from harness import (CANCEL, enum_label, get_receipt, item, journal_state, new_id, refund,
                     refused, sale, sign, terminal)


def _eggs(client, till):
    """A sale of 3 eggs at 1100: line 1, quantity 3."""
    return sign(client, sale(till, [item("Өндөг", "3", "1100")], "3300"))


def test_a_refund_naming_one_position_twice_is_refused(fiscus, till):
    client = fiscus.receipts
    original = _eggs(client, till)
    request = refund(till, "4400", [(1, "2"), (1, "2")], receipt_id=original.id)
    refusal = refused(lambda: sign(client, request))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, refusal
    assert any(re.fullmatch(r"refund_of\.lines\[\d+\](\..+)?", f) for f in refusal.fields), \
        refusal
    assert journal_state(client, till) == ([1], 1), "nothing is journaled"


def test_refunds_add_up_to_no_more_than_was_sold(fiscus, till):
    client = fiscus.receipts
    original = _eggs(client, till)
    assert sign(client, refund(till, "2200", [(1, "2")], receipt_id=original.id)).total_amount \
        == "2200.00"
    assert sign(client, refund(till, "1100", [(1, "1")], receipt_id=original.id)).total_amount \
        == "1100.00"
    refusal = refused(lambda: sign(client, refund(till, "1100", [(1, "1")],
                                                  receipt_id=original.id)))
    # The proto says FAILED_PRECONDITION for a refund beyond what remains; the Rust tests
    # pin INVALID_ARGUMENT naming the line for a line beyond it. Either refuses it.
    assert refusal.code in (grpc.StatusCode.INVALID_ARGUMENT,
                            grpc.StatusCode.FAILED_PRECONDITION), refusal
    assert journal_state(client, till) == ([3, 2, 1], 3)


def _theirs(client):
    """Terminal Y with a sale on it, and its journal."""
    other = terminal()
    receipt = _eggs(client, other)
    return other, receipt, journal_state(client, other)


def _nothing_happened(client, till, other, receipt, before):
    assert journal_state(client, till) == ([], 0), "nothing is journaled on X"
    assert journal_state(client, other) == before, "nothing is journaled on Y"
    now = get_receipt(client, receipt.id)
    assert (enum_label(now, "fiscal_state"), now.cancelled_by_receipt_id) == \
        (enum_label(receipt, "fiscal_state"), ""), "Y's receipt is neither cancelled nor changed"


def test_a_refund_of_another_terminals_receipt_by_id_is_not_found(fiscus, till):
    client = fiscus.receipts
    other, receipt, before = _theirs(client)
    refusal = refused(lambda: sign(client, refund(till, "3300", receipt_id=receipt.id)))
    assert refusal.code == grpc.StatusCode.NOT_FOUND, refusal
    _nothing_happened(client, till, other, receipt, before)


def test_a_refund_of_another_terminals_receipt_by_reference_is_not_found(fiscus, till):
    client = fiscus.receipts
    other, receipt, before = _theirs(client)
    request = refund(till, "3300", receipt_reference=receipt.receipt_reference)
    refusal = refused(lambda: sign(client, request))
    assert refusal.code == grpc.StatusCode.NOT_FOUND, refusal
    _nothing_happened(client, till, other, receipt, before)


def test_cancelling_another_terminals_receipt_is_not_found(fiscus, till):
    client = fiscus.receipts
    other, receipt, before = _theirs(client)
    request = {"operation_id": new_id(), "terminal": till, "receipt_id": receipt.id,
               "reason": "contract test"}
    refusal = refused(lambda: client.call(CANCEL, request))
    assert refusal.code == grpc.StatusCode.NOT_FOUND, refusal
    _nothing_happened(client, till, other, receipt, before)
