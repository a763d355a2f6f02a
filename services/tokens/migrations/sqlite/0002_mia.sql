-- MIA POS terminal activations (binding a MIA terminal to this installation) and seller
-- sessions. Upstream refresh tokens never leave the server: they are sealed under the master
-- key; clients hold only the opaque session id.
CREATE TABLE mia_activations (
    activation_id    TEXT    PRIMARY KEY,
    terminal_id      TEXT    NOT NULL,
    merchant_idno    TEXT    NOT NULL,
    merchant_tin     TEXT    NOT NULL DEFAULT '',
    branch_no        TEXT    NOT NULL DEFAULT '',
    pos_no           TEXT    NOT NULL DEFAULT '',
    state            TEXT    NOT NULL,
    created_at_us    INTEGER  NOT NULL
);

CREATE TABLE mia_sessions (
    session_id       TEXT    PRIMARY KEY,
    activation_id    TEXT    NOT NULL REFERENCES mia_activations (activation_id),
    username         TEXT    NOT NULL,
    sealed_refresh   BLOB    NOT NULL,
    active           INTEGER NOT NULL,
    created_at_us    INTEGER  NOT NULL
);
