"""12. fiskaltrust as a client in another language sees it: a receipt of a fiskaltrust merchant,
signed by the middleware within the call, its retry, a daily closing named by its 64-bit case,
the terminal's queue state and the queue's journal — through reflection alone.

Only `fiscus dev` has a fiskaltrust middleware: it starts the sandbox and wires its dev
fiskaltrust merchant (Italy, in euros) to the sandbox's dev cash box. On the cluster backend
these tests are skipped; tests/e2e/fiskaltrust.rs covers it through the same RPCs.
"""

import json

import grpc
import pytest

import harness
from harness import get_receipt, item, journal_state, refused, sale, sign

# The merchant `fiscus dev` serves on fiskaltrust (services/fiscus/src/sandboxes.rs).
FISKALTRUST_TIN = "12345678903"
# A ready Italian queue's ftState, and the case of a daily closing: above 2^53, so a client
# that reads 64-bit numbers through doubles gets them wrong.
READY = 0x4954_2000_0000_0000
DAILY_CLOSING = 0x4954_2000_0000_2011

SERVICE_INFO = "fiscus.v1.ReceiptService/GetServiceInfo"
PROVIDER_JOURNAL = "fiscus.v1.ReceiptService/ExportProviderJournal"


@pytest.fixture
def shop(fiscus) -> dict:
    """A fresh terminal of the dev fiskaltrust merchant."""
    if fiscus.name != "dev":
        pytest.skip("only fiscus dev wires a merchant to a fiskaltrust middleware (sandbox)")
    return harness.terminal(FISKALTRUST_TIN)


def espresso(till: dict) -> dict:
    """Two espressos at 10 % VAT, in euros."""
    goods = dict(item("Espresso", "2", "1.10"), vat_rate="10.00", measure_unit="pcs")
    return sale(till, [goods], "2.20")


def test_a_receipt_is_signed_by_the_middleware_within_the_call(fiscus, shop):
    client = fiscus.receipts
    receipt = sign(client, espresso(shop))
    assert harness.enum_label(receipt, "fiscal_state") == "FISCAL_STATE_ACCEPTED", harness.summary(receipt)
    assert harness.enum_label(receipt, "provider") == "PROVIDER_FISKALTRUST"
    assert receipt.ft_receipt_identification.startswith("ft"), receipt.ft_receipt_identification
    assert receipt.ft_state == READY, hex(receipt.ft_state)
    assert receipt.ft_queue_item_id and len(receipt.signatures) >= 1
    assert receipt.currency == "EUR" and receipt.total_amount == "2.20"
    stored = get_receipt(client, receipt.id)
    assert stored.ft_receipt_identification == receipt.ft_receipt_identification
    assert [s.data for s in stored.signatures] == [s.data for s in receipt.signatures]


def test_a_retry_in_uppercase_answers_the_same_signed_receipt(fiscus, shop):
    client = fiscus.receipts
    request = espresso(shop)
    first = sign(client, request)
    again = sign(client, dict(request, operation_id=request["operation_id"].upper()))
    assert (again.id, again.ft_receipt_identification) == \
        (first.id, first.ft_receipt_identification)
    assert journal_state(client, shop) == ([1], 1), "one receipt"


def test_a_daily_closing_is_a_zero_receipt_naming_its_64_bit_case(fiscus, shop):
    client = fiscus.receipts
    # The proto JSON mapping writes uint64 as a string: exact however large.
    closing = sign(client, dict(harness.zero_receipt(shop), receipt_case=str(DAILY_CLOSING)))
    assert closing.receipt_case == DAILY_CLOSING, hex(closing.receipt_case)
    assert harness.enum_label(closing, "fiscal_state") == "FISCAL_STATE_ACCEPTED"
    info = client.call(SERVICE_INFO, {"terminal": shop})
    assert harness.enum_label(info, "provider") == "PROVIDER_FISKALTRUST"
    assert info.ft_state == READY and not info.failed_mode and not info.late_signing, info
    assert info.ft_queue_id and info.pending_receipts == 0, info


def test_a_vat_rate_italy_does_not_have_is_refused_naming_the_item(fiscus, shop):
    client = fiscus.receipts
    request = espresso(shop)
    request["items"][0]["vat_rate"] = "7.00"
    refusal = refused(lambda: sign(client, request))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, refusal
    assert "items[0].vat_rate" in refusal.fields, refusal
    assert journal_state(client, shop) == ([], 0)


def test_the_queues_receipt_journal_streams_as_one_json_array(fiscus, shop):
    client = fiscus.receipts
    for _ in range(2):
        sign(client, espresso(shop))
    chunks = client.stream(PROVIDER_JOURNAL, {
        "terminal": shop, "type": "PROVIDER_JOURNAL_TYPE_RECEIPT_JOURNAL"})
    entries = json.loads(b"".join(chunk.data for chunk in chunks))
    assert isinstance(entries, list) and len(entries) >= 2, entries
    refusal = refused(lambda: client.stream(PROVIDER_JOURNAL, {"terminal": shop}))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, refusal
    assert "type" in refusal.fields, refusal
