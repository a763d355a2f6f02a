-- Upstream fiscalization. Each receipt names the provider that fiscalizes it; what the provider
-- answered is kept beside the signed document (which never changes): its id for good, and what
-- is printed only (e-barimt's lottery number and QR data) until `printed_until_us`, when it is
-- erased.
ALTER TABLE receipts ADD COLUMN provider        TEXT    NOT NULL DEFAULT 'BUILTIN';
ALTER TABLE receipts ADD COLUMN upstream_id     TEXT;
ALTER TABLE receipts ADD COLUMN upstream_date   TEXT;
ALTER TABLE receipts ADD COLUMN easy_registered BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE receipts ADD COLUMN accepted_at_us  INTEGER;
ALTER TABLE receipts ADD COLUMN lottery         TEXT;
ALTER TABLE receipts ADD COLUMN upstream_qr     TEXT;
ALTER TABLE receipts ADD COLUMN printed_until_us INTEGER;
CREATE INDEX receipts_printed_until ON receipts (printed_until_us) WHERE printed_until_us IS NOT NULL;

-- The transactional outbox: a row per receipt still to be delivered to its provider, written in
-- the transaction that journals the receipt and deleted in the one that records the provider's
-- acceptance. Workers claim rows (`claim`, `claimed_until_us`) in a short transaction with
-- FOR UPDATE SKIP LOCKED, deliver without holding a transaction, and record the outcome only
-- while their claim holds; a worker that dies loses its claim when `claimed_until_us` passes.
-- A row is claimed only when no earlier row of its terminal is still live, so each terminal's
-- receipts reach the provider in their order. `in_doubt`: an attempt (the one made at
-- `doubt_since_us`) may have reached the provider without its answer reaching fiscus — its
-- worker said so, or died holding the claim — and is reconciled, never blindly re-posted. A
-- dead letter (`dead`) is retried no more until ResendPending. `created_at_us`: when it was
-- queued (again, by ResendPending), from which its age as a dead letter counts.
CREATE TABLE outbox (
    receipt_id           TEXT    PRIMARY KEY,
    provider             TEXT    NOT NULL,
    merchant_tin         TEXT    NOT NULL,
    branch_no            TEXT    NOT NULL,
    pos_no               TEXT    NOT NULL,
    number               INTEGER NOT NULL,
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_us   INTEGER NOT NULL,
    claim                TEXT,
    claimed_until_us     INTEGER NOT NULL DEFAULT 0,
    claimed_at_us        INTEGER NOT NULL DEFAULT 0,
    doubt_since_us       INTEGER,
    in_doubt             BOOLEAN NOT NULL DEFAULT false,
    dead                 BOOLEAN NOT NULL DEFAULT false,
    last_error           TEXT    NOT NULL DEFAULT '',
    created_at_us        INTEGER NOT NULL
);
CREATE INDEX outbox_by_terminal ON outbox (merchant_tin, branch_no, pos_no, number);
CREATE INDEX outbox_due ON outbox (next_attempt_at_us) WHERE dead = false;
