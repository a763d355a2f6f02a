-- Idempotency: one row per (tenant, operation id), written in the same transaction as the
-- journal row it protects. The response is stored so that a replay answers byte for byte.
CREATE TABLE operations (
    tenant        TEXT        NOT NULL,
    operation_id  TEXT        NOT NULL,
    rpc           TEXT        NOT NULL,
    fingerprint   BYTEA       NOT NULL,
    response      BYTEA,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at  TIMESTAMPTZ,
    PRIMARY KEY (tenant, operation_id)
);
