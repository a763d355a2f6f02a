-- The MIA shift each fiscus shift of a MIA terminal opened (or adopted) and closed, and the
-- seller session it was closed for: a shift's totals read MIA's own Z-report of it with that
-- session. closed_at_us is set once MIA's shift is closed.
CREATE TABLE shift_mia (
    shift_id           TEXT    NOT NULL PRIMARY KEY,
    merchant_tin       TEXT    NOT NULL,
    branch_no          TEXT    NOT NULL,
    pos_no             TEXT    NOT NULL,
    mia_shift_id       TEXT    NOT NULL,
    seller_session_id  TEXT    NOT NULL,
    closed_at_us       BIGINT
);
