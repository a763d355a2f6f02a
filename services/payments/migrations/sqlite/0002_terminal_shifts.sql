-- The shift (ShiftService's) each terminal's QR payments and refunds are recorded in now, as
-- ShiftService last said. Recording a payment or refund reads its terminal's row under a share
-- lock, and a change takes the row's write lock: each falls wholly on one side of a change.
CREATE TABLE terminal_shifts (
    merchant_tin  TEXT  NOT NULL,
    branch_no     TEXT  NOT NULL,
    pos_no        TEXT  NOT NULL,
    shift_id      TEXT  NOT NULL,
    PRIMARY KEY (merchant_tin, branch_no, pos_no)
);

CREATE INDEX refunds_by_shift ON refunds (shift_id);
