-- Field encryption (kept in step with migrations/sqlite/0003_fieldcrypt.sql): the keyset
-- document, the nonce ledger, per-subject data keys and re-encryption checkpoints.

-- The signed keyset document (its keys wrapped by the key provider), one row per keyset,
-- written by compare-and-swap on `generation`.
CREATE TABLE fieldcrypt_keysets (
    name       TEXT PRIMARY KEY,
    generation BIGINT NOT NULL CHECK (generation >= 0),
    document   BYTEA NOT NULL
);

-- Encryptions reserved per key version (the nonce budget shared by every instance);
-- `last_grant` is what the last reservation added, returned with the new total.
CREATE TABLE fieldcrypt_usage (
    category   TEXT NOT NULL,
    version    BIGINT NOT NULL CHECK (version >= 0),
    reserved   BIGINT NOT NULL CHECK (reserved >= 0),
    last_grant BIGINT NOT NULL CHECK (last_grant >= 0),
    PRIMARY KEY (category, version)
);

-- Per-subject data keys, wrapped by the category keyring. A NULL `wrapped` is the
-- tombstone of a shredded key: `generation` is the last one that existed.
CREATE TABLE fieldcrypt_subject_keys (
    category   TEXT NOT NULL,
    -- `user:<id>` or `org:<id>`; listed in byte order (the "C" collation, as SQLite's
    -- BINARY), whatever the database's default collation is.
    subject    TEXT COLLATE "C" NOT NULL,
    generation BIGINT NOT NULL CHECK (generation >= 1),
    wrapped    BYTEA,
    PRIMARY KEY (category, subject)
);

-- Where each re-encryption job stands.
CREATE TABLE fieldcrypt_rewrap_checkpoints (
    job             TEXT PRIMARY KEY,
    last_cursor     TEXT,
    scanned         BIGINT NOT NULL CHECK (scanned >= 0),
    rewrapped       BIGINT NOT NULL CHECK (rewrapped >= 0),
    already_current BIGINT NOT NULL CHECK (already_current >= 0),
    conflicts       BIGINT NOT NULL CHECK (conflicts >= 0),
    failed          BIGINT NOT NULL CHECK (failed >= 0),
    done            BOOLEAN NOT NULL
);
