-- Keys that sign the internal service tokens (JWT, EdDSA). The secret half is sealed under the
-- master key; the newest key signs, older ones stay published in the JWKS for an overlap.
CREATE TABLE jwt_keys (
    kid            TEXT    PRIMARY KEY,
    public_key     BYTEA   NOT NULL,
    sealed_secret  BYTEA   NOT NULL,
    created_at_us  BIGINT  NOT NULL
);
CREATE INDEX jwt_keys_newest ON jwt_keys (created_at_us);
