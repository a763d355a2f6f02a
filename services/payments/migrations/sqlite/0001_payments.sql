-- QR payments through MIA POS. Money columns are minor units; times are microseconds since the
-- Unix epoch. MIA is the truth about a payment; these tables are what fiscus issued, saw and
-- refunded, so that ids of other terminals are refused and rules are checked before MIA is
-- called, and so that watchers on every replica hear the state polls find.

-- QR codes fiscus created (or adopted after their creation's answer was lost).
CREATE TABLE qrs (
    qr_id             TEXT    PRIMARY KEY,
    merchant_tin      TEXT    NOT NULL,
    branch_no         TEXT    NOT NULL,
    pos_no            TEXT    NOT NULL,
    qr_type           TEXT    NOT NULL,
    amount_type       TEXT    NOT NULL,
    qr_text           TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    currency          TEXT    NOT NULL,
    client_reference  TEXT    NOT NULL,
    operation_id      TEXT    NOT NULL,
    created_at_us     INTEGER  NOT NULL,
    updated_at_us     INTEGER  NOT NULL
);
CREATE INDEX qrs_by_terminal ON qrs (merchant_tin, branch_no, pos_no, state);

-- Payment requests (MIA extensions): their last known state, and who waits on them. `version`
-- grows with every change, so that an event heard twice, or late, is told from a new one.
-- Watchers mark a request watched until `watched_until_us`; any replica may then poll it, one
-- at a time: the one that moves `next_poll_at_us` forward first.
CREATE TABLE payment_requests (
    extension_id         TEXT    PRIMARY KEY,
    qr_id                TEXT    NOT NULL REFERENCES qrs (qr_id),
    merchant_tin         TEXT    NOT NULL,
    branch_no            TEXT    NOT NULL,
    pos_no               TEXT    NOT NULL,
    qr_type              TEXT    NOT NULL,
    amount_type          TEXT    NOT NULL,
    amount_minor         INTEGER,
    min_amount_minor     INTEGER,
    max_amount_minor     INTEGER,
    client_reference     TEXT    NOT NULL,
    expires_at_us        INTEGER  NOT NULL,
    state                TEXT    NOT NULL,
    error_description    TEXT    NOT NULL DEFAULT '',
    total_payments       INTEGER  NOT NULL DEFAULT 0,
    last_transaction_id  TEXT,
    version              INTEGER  NOT NULL DEFAULT 0,
    seller_session_id    TEXT    NOT NULL,
    watched_until_us     INTEGER  NOT NULL DEFAULT 0,
    next_poll_at_us      INTEGER  NOT NULL DEFAULT 0,
    operation_id         TEXT    NOT NULL,
    created_at_us        INTEGER  NOT NULL,
    updated_at_us        INTEGER  NOT NULL
);
CREATE INDEX payment_requests_by_qr ON payment_requests (qr_id);
CREATE INDEX payment_requests_watched ON payment_requests (watched_until_us);

-- Money received. `mia_shift_id` is MIA's shift the payment landed in; `shift_id` is kept for
-- fiscus's own shift (ShiftService) once it exists, so that X and Z reports can count QR
-- payments and refunds.
CREATE TABLE transactions (
    transaction_id      TEXT    PRIMARY KEY,
    merchant_tin        TEXT    NOT NULL,
    branch_no           TEXT    NOT NULL,
    pos_no              TEXT    NOT NULL,
    qr_id               TEXT,
    extension_id        TEXT,
    amount_minor        INTEGER  NOT NULL,
    currency            TEXT    NOT NULL,
    paid_at_us          INTEGER  NOT NULL,
    tx_type             TEXT    NOT NULL,
    rrn                 TEXT    NOT NULL DEFAULT '',
    approval_code       TEXT    NOT NULL DEFAULT '',
    mcc                 TEXT    NOT NULL DEFAULT '',
    swift_message_type  TEXT    NOT NULL DEFAULT '',
    swift_message_id    TEXT    NOT NULL DEFAULT '',
    swift_payer_bank    TEXT    NOT NULL DEFAULT '',
    refunded_minor      INTEGER  NOT NULL DEFAULT 0,
    mia_shift_id        TEXT    NOT NULL DEFAULT '',
    shift_id            TEXT    NOT NULL DEFAULT '',
    recorded_at_us      INTEGER  NOT NULL
);
CREATE INDEX transactions_by_mia_shift ON transactions (mia_shift_id);
CREATE INDEX transactions_by_shift ON transactions (shift_id);

-- One row per RefundTransaction operation. SENT: posted to MIA, outcome not known yet (the
-- answer may have been lost: it is looked up among the transaction's returns before anything is
-- posted again); DONE: MIA's requestId is known. One SENT refund per transaction at a time.
CREATE TABLE refunds (
    operation_id        TEXT    PRIMARY KEY,
    transaction_id      TEXT    NOT NULL REFERENCES transactions (transaction_id),
    amount_minor        INTEGER  NOT NULL,
    full_refund         INTEGER NOT NULL,
    reason_code         TEXT    NOT NULL,
    reason_message      TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    refund_request_id   TEXT,
    mia_shift_id        TEXT    NOT NULL DEFAULT '',
    shift_id            TEXT    NOT NULL DEFAULT '',
    created_at_us       INTEGER  NOT NULL,
    completed_at_us     INTEGER
);
CREATE UNIQUE INDEX refunds_one_in_flight ON refunds (transaction_id) WHERE state = 'SENT';
CREATE UNIQUE INDEX refunds_by_request ON refunds (transaction_id, refund_request_id);

-- Creations posted to MIA whose answer never came: before posting again, the retry looks for
-- what the first attempt made (an active QR, a QR's request) that fiscus does not know yet.
CREATE TABLE upstream_attempts (
    operation_id   TEXT    PRIMARY KEY,
    rpc            TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    sent_at_us     INTEGER  NOT NULL
);
