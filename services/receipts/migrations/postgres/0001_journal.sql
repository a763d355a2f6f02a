-- The receipt journal. One chain per terminal: chain_heads holds its last number and hash and is
-- the row every append locks, so concurrent appends from any number of replicas serialize.
CREATE TABLE chain_heads (
    merchant_tin  TEXT   NOT NULL,
    branch_no     TEXT   NOT NULL,
    pos_no        TEXT   NOT NULL,
    last_number   BIGINT NOT NULL,
    last_hash     BYTEA  NOT NULL,
    PRIMARY KEY (merchant_tin, branch_no, pos_no)
);

-- `document` is the canonical JSON that was hashed and signed: the receipt's content. The other
-- columns index it or track its fiscal state, which changes after signing (e.g. CANCELLED).
-- Money columns are minor units; times are microseconds since the Unix epoch.
CREATE TABLE receipts (
    id                   TEXT    PRIMARY KEY,
    merchant_tin         TEXT    NOT NULL,
    branch_no            TEXT    NOT NULL,
    pos_no               TEXT    NOT NULL,
    number               BIGINT  NOT NULL,
    kind                 TEXT    NOT NULL,
    receipt_type         TEXT    NOT NULL,
    reference            TEXT    NOT NULL,
    shift_id             TEXT    NOT NULL DEFAULT '',
    total_minor          BIGINT  NOT NULL,
    vat_minor            BIGINT  NOT NULL,
    city_tax_minor       BIGINT  NOT NULL,
    currency             TEXT    NOT NULL,
    original_receipt_id  TEXT,
    fiscal_state         TEXT    NOT NULL,
    state_message        TEXT    NOT NULL DEFAULT '',
    cancelled_by         TEXT,
    cancelled_at_us      BIGINT,
    cancellation_reason  TEXT,
    document             TEXT    NOT NULL,
    previous_hash        BYTEA   NOT NULL,
    hash                 BYTEA   NOT NULL,
    signature            BYTEA   NOT NULL,
    key_id               TEXT    NOT NULL,
    created_at_us        BIGINT  NOT NULL,
    UNIQUE (merchant_tin, branch_no, pos_no, number)
);
CREATE INDEX receipts_by_reference ON receipts (merchant_tin, branch_no, pos_no, reference);
CREATE INDEX receipts_by_original ON receipts (original_receipt_id) WHERE original_receipt_id IS NOT NULL;
CREATE INDEX receipts_by_created ON receipts (merchant_tin, branch_no, pos_no, created_at_us);

-- Merchants' signing keys; the secret half sealed under the master key, bound to its key id.
CREATE TABLE signing_keys (
    key_id         TEXT    PRIMARY KEY,
    merchant_tin   TEXT    NOT NULL,
    algorithm      TEXT    NOT NULL,
    public_key     BYTEA   NOT NULL,
    sealed_secret  BYTEA   NOT NULL,
    active         BOOLEAN NOT NULL,
    created_at_us  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (merchant_tin) WHERE active;
