-- fiskaltrust. What the middleware answered for a signed receipt, beside upstream_id (its
-- ftReceiptIdentification): the queue and queue item that signed it, the cash box's
-- identification, the queue's state as answered (ftState, a 64-bit value stored as its bits),
-- the signatures and notices to print (ftSignatures, as JSON), and the cbReceiptMoment it was
-- sent with (a terminal's moments sent ascend with its journal: see the delivery).
ALTER TABLE receipts ADD COLUMN ft_queue_id               TEXT;
ALTER TABLE receipts ADD COLUMN ft_queue_item_id          TEXT;
ALTER TABLE receipts ADD COLUMN ft_cashbox_identification TEXT;
ALTER TABLE receipts ADD COLUMN ft_state                  INTEGER;
ALTER TABLE receipts ADD COLUMN ft_signatures             TEXT;
ALTER TABLE receipts ADD COLUMN ft_moment_us              INTEGER;

-- The operation that journaled a receipt, whose id goes upstream as the idempotency key of
-- every delivery attempt (fiskaltrust's x-operation-id): a repeat replays there too.
-- `late_signing`: the provider could not be reached for the receipt before it was first sent
-- (the till was answered PENDING): fiskaltrust signs it with the late-signing flag.
ALTER TABLE outbox ADD COLUMN operation_id TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN late_signing BOOLEAN NOT NULL DEFAULT false;
