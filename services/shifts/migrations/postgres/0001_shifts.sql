-- A terminal's counters. OpenShift and CloseShift lock its row first, so a terminal's shifts
-- open and close one at a time, whichever replica is asked.
CREATE TABLE shift_terminals (
    merchant_tin       TEXT   NOT NULL,
    branch_no          TEXT   NOT NULL,
    pos_no             TEXT   NOT NULL,
    last_shift_number  BIGINT NOT NULL,
    last_z_number      BIGINT NOT NULL,
    PRIMARY KEY (merchant_tin, branch_no, pos_no)
);

-- Shifts, numbered per terminal from 1 without gaps. `z_report` is the Z-report as encoded at
-- closing (fiscus.v1.Report, the summary): computed once and never changed. Times are
-- microseconds since the Unix epoch.
CREATE TABLE shifts (
    id                 TEXT    PRIMARY KEY,
    merchant_tin       TEXT    NOT NULL,
    branch_no          TEXT    NOT NULL,
    pos_no             TEXT    NOT NULL,
    number             BIGINT  NOT NULL,
    state              TEXT    NOT NULL,
    opened_at_us       BIGINT  NOT NULL,
    opened_by          TEXT    NOT NULL,
    closed_at_us       BIGINT,
    closed_by          TEXT    NOT NULL DEFAULT '',
    z_number           BIGINT  NOT NULL DEFAULT 0,
    upstream_shift_id  TEXT    NOT NULL DEFAULT '',
    merchant_name      TEXT    NOT NULL DEFAULT '',
    z_report           BYTEA,
    UNIQUE (merchant_tin, branch_no, pos_no, number)
);
-- At most one open shift per terminal, whatever else goes wrong.
CREATE UNIQUE INDEX shifts_one_open ON shifts (merchant_tin, branch_no, pos_no) WHERE state = 'OPEN';
CREATE UNIQUE INDEX shifts_by_z_number ON shifts (merchant_tin, branch_no, pos_no, z_number)
    WHERE z_number > 0;
