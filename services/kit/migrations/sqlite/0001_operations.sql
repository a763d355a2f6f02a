-- Idempotency: one row per (tenant, operation id), written in the same transaction as the
-- journal row it protects. The response is stored so that a replay answers byte for byte.
CREATE TABLE operations (
    tenant        TEXT    NOT NULL,
    operation_id  TEXT    NOT NULL,
    rpc           TEXT    NOT NULL,
    fingerprint   BLOB    NOT NULL,
    response      BLOB,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    completed_at  TEXT,
    PRIMARY KEY (tenant, operation_id)
) WITHOUT ROWID;
