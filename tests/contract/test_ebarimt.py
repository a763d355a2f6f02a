"""11. e-barimt as a client in another language sees it: a receipt of an e-barimt merchant,
accepted by the POSAPI within the call, its retry, its states, the outbox's RPCs and the
reference data — through reflection alone.

Only `fiscus dev` has a POSAPI: it starts the sandbox and wires its dev e-barimt merchant to it.
The cluster backend (fiscus-tokens and fiscus-receipts on Postgres and Redis) has no POSAPI to
point a merchant at, so there these tests are skipped; tests/e2e/ebarimt.rs covers that
backend through the same RPCs.
"""

import re

import grpc
import pytest

import harness
from harness import bread_sale, get_receipt, journal_state, new_id, refused, sign

# The merchant `fiscus dev` serves on e-barimt (services/fiscus/src/sandboxes.rs).
EBARIMT_TIN = "61001234567"

WATCH = "fiscus.v1.ReceiptService/WatchReceipt"
LIST_PENDING = "fiscus.v1.ReceiptService/ListPending"
RESEND = "fiscus.v1.ReceiptService/ResendPending"
SERVICE_INFO = "fiscus.v1.ReceiptService/GetServiceInfo"
TAXPAYER = "fiscus.v1.ReceiptService/GetTaxpayerInfo"
BRANCHES = "fiscus.v1.ReceiptService/GetBranchInfo"
TAX_TYPES = "fiscus.v1.ReceiptService/ListTaxTypes"


@pytest.fixture
def shop(fiscus) -> dict:
    """A fresh terminal of the dev e-barimt merchant."""
    if fiscus.name != "dev":
        pytest.skip("only fiscus dev wires a merchant to a POSAPI (sandbox)")
    return harness.terminal(EBARIMT_TIN)


def _label(message, field: str) -> str:
    return harness.enum_label(message, field)


def test_a_receipt_is_accepted_by_the_posapi_within_the_call(fiscus, shop):
    client = fiscus.receipts
    receipt = sign(client, bread_sale(shop))
    assert _label(receipt, "fiscal_state") == "FISCAL_STATE_ACCEPTED", harness.summary(receipt)
    assert _label(receipt, "provider") == "PROVIDER_EBARIMT"
    assert re.fullmatch(r"\d{33}", receipt.ebarimt_id), receipt.ebarimt_id
    assert receipt.lottery and receipt.qr_data, "printed-only data comes back to the caller"
    stored = get_receipt(client, receipt.id)
    assert stored.ebarimt_id == receipt.ebarimt_id
    assert _label(stored, "fiscal_state") == "FISCAL_STATE_ACCEPTED"


def test_a_retry_in_uppercase_answers_the_same_accepted_receipt(fiscus, shop):
    client = fiscus.receipts
    request = bread_sale(shop)
    first = sign(client, request)
    again = sign(client, dict(request, operation_id=request["operation_id"].upper()))
    assert (again.id, again.receipt_number, again.ebarimt_id) == \
        (first.id, first.receipt_number, first.ebarimt_id)
    assert journal_state(client, shop) == ([1], 1), "one receipt, one document"


def test_watch_receipt_ends_at_the_accepted_state(fiscus, shop):
    client = fiscus.receipts
    receipt = sign(client, bread_sale(shop))
    events = [answer.event for answer in client.stream(WATCH, {"receipt_id": receipt.id})]
    assert events, "at least the current state"
    assert _label(events[-1], "state") == "FISCAL_STATE_ACCEPTED", events
    assert all(e.receipt_id == receipt.id for e in events)


def test_nothing_is_pending_once_accepted_and_a_bad_page_token_is_named(fiscus, shop):
    client = fiscus.receipts
    sign(client, bread_sale(shop))
    page = client.call(LIST_PENDING, {"terminal": shop, "include_dead_letters": True})
    assert list(page.pending) == [] and page.next_page_token == ""
    refusal = refused(lambda: client.call(LIST_PENDING, {"terminal": shop,
                                                         "page_token": "not a token"}))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, refusal
    assert "page_token" in refusal.fields, refusal


def test_resending_an_unknown_receipt_is_not_found_naming_it_and_changes_nothing(fiscus, shop):
    client = fiscus.receipts
    sign(client, bread_sale(shop))
    refusal = refused(lambda: client.call(RESEND, {
        "operation_id": new_id(), "terminal": shop, "receipt_ids": [new_id()]}))
    assert refusal.code == grpc.StatusCode.NOT_FOUND, refusal
    assert "receipt_ids[0]" in refusal.message, refusal
    refusal = refused(lambda: client.call(RESEND, {
        "operation_id": new_id(), "terminal": shop, "receipt_ids": ["not-a-uuid"]}))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, refusal
    assert "receipt_ids[0]" in refusal.fields, refusal
    assert journal_state(client, shop) == ([1], 1)


def test_reference_data_comes_from_the_posapi(fiscus, shop):
    client = fiscus.receipts
    info = client.call(SERVICE_INFO, {"terminal": shop})
    assert _label(info, "provider") == "PROVIDER_EBARIMT"
    assert EBARIMT_TIN in [m.tin for m in info.merchants], info
    me = client.call(TAXPAYER, {"terminal": shop, "tin": EBARIMT_TIN}).taxpayer
    assert me.found and me.tin == EBARIMT_TIN and me.name, me
    districts = client.call(BRANCHES, {"terminal": shop}).districts
    assert districts and all(
        d.district_code == d.branch_code + d.sub_branch_code and len(d.district_code) == 4
        for d in districts)
    taxes = client.call(TAX_TYPES, {"terminal": shop, "tax_type": "TAX_TYPE_VAT_FREE"})
    assert [_label(t, "tax_type") for t in taxes.tax_types] == ["TAX_TYPE_VAT_FREE"]
    assert taxes.tax_product_codes and all(
        _label(c, "tax_type") == "TAX_TYPE_VAT_FREE" for c in taxes.tax_product_codes)


def test_taxpayer_lookups_name_a_malformed_tin_and_an_unknown_one_is_not_found(fiscus, shop):
    client = fiscus.receipts
    refusal = refused(lambda: client.call(TAXPAYER, {"terminal": shop, "tin": "12ab"}))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, refusal
    assert "tin" in refusal.fields, refusal
    refusal = refused(lambda: client.call(TAXPAYER, {"terminal": shop, "tin": "99999999999"}))
    assert refusal.code == grpc.StatusCode.NOT_FOUND, refusal


def test_a_merchant_on_the_built_in_signer_has_no_reference_data(fiscus, shop):
    client = fiscus.receipts
    refusal = refused(lambda: client.call(BRANCHES, {"terminal": harness.terminal()}))
    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION, refusal
