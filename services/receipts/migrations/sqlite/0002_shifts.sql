-- Shifts (ShiftService's) in the journal. The shift a terminal's receipts are journaled in is kept
-- on the terminal's chain head, the row every append locks: a shift ends at one point of the
-- chain, and each receipt falls wholly before or after it.
ALTER TABLE chain_heads ADD COLUMN shift_id TEXT NOT NULL DEFAULT '';

-- What each receipt adds to its shift's reports, signed by what it does to turnover (a refund,
-- and the cancellation of a sale, negative): a line per tax type and VAT rate (line 'TAX', code
-- the tax type, rate in hundredths of a percent) and per payment method (line 'PAY', code the
-- method, count its pay items, gross its amount). Money in minor units.
CREATE TABLE receipt_lines (
    receipt_id      TEXT    NOT NULL,
    line            TEXT    NOT NULL,
    code            TEXT    NOT NULL,
    rate            INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    base_minor      INTEGER NOT NULL,
    vat_minor       INTEGER NOT NULL,
    city_tax_minor  INTEGER NOT NULL,
    gross_minor     INTEGER NOT NULL,
    PRIMARY KEY (receipt_id, line, code, rate)
);

CREATE INDEX receipts_by_shift ON receipts (merchant_tin, branch_no, pos_no, shift_id, number);
