"""10. Bad input is INVALID_ARGUMENT with a google.rpc.BadRequest naming the field."""

import grpc
import pytest

from harness import bread_sale, item, journal_state, refused, sign


def _second_item_priced_in_tenths_of_a_cent(r):
    r["items"] = [item("Талх", "1", "5600"), item("Сүү", "1", "2500.001")]
    r["payments"][0]["amount"] = "8100.00"


# (the field BadRequest must name, how a good request (bread_sale) is spoilt)
CASES = [
    pytest.param("terminal", lambda r: r.pop("terminal"), id="no-terminal"),
    pytest.param("operation_id", lambda r: r.update(operation_id="not-a-uuid"),
                 id="operation-id-not-a-uuid"),
    pytest.param("items[0].quantity", lambda r: r["items"][0].update(quantity="1e3"),
                 id="quantity-with-exponent"),
    pytest.param("items[0].unit_price", lambda r: r["items"][0].update(unit_price="-1"),
                 id="negative-unit-price"),
    pytest.param("items[0].unit_price", lambda r: r["items"][0].update(unit_price="5600.001"),
                 id="unit-price-with-3-fraction-digits"),
    pytest.param("items[1].unit_price", _second_item_priced_in_tenths_of_a_cent,
                 id="second-item-unit-price-with-3-fraction-digits"),
    pytest.param("payments[0].amount", lambda r: r["payments"][0].update(amount="5600.001"),
                 id="payment-with-3-fraction-digits"),
]


@pytest.mark.parametrize("field,spoil", CASES)
def test_a_bad_sign_receipt_request_names_the_field(fiscus, till, field, spoil):
    client = fiscus.receipts
    request = bread_sale(till)
    spoil(request)
    refusal = refused(lambda: sign(client, request))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, refusal
    assert field in refusal.fields, refusal
    assert journal_state(client, till) == ([], 0), "nothing is journaled"
