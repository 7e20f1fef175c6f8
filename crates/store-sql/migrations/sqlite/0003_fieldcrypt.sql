-- Field encryption (kept in step with migrations/postgres/0003_fieldcrypt.sql): the keyset
-- document, the nonce ledger, per-subject data keys and re-encryption checkpoints.

-- The signed keyset document (its keys wrapped by the key provider), one row per keyset,
-- written by compare-and-swap on `generation`.
CREATE TABLE fieldcrypt_keysets (
    name       TEXT PRIMARY KEY,
    generation INTEGER NOT NULL CHECK (generation >= 0),
    document   BLOB NOT NULL
) STRICT;

-- Encryptions reserved per key version (the nonce budget shared by every instance);
-- `last_grant` is what the last reservation added, returned with the new total.
CREATE TABLE fieldcrypt_usage (
    category   TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 0),
    reserved   INTEGER NOT NULL CHECK (reserved >= 0),
    last_grant INTEGER NOT NULL CHECK (last_grant >= 0),
    PRIMARY KEY (category, version)
) STRICT;

-- Per-subject data keys, wrapped by the category keyring. A NULL `wrapped` is the
-- tombstone of a shredded key: `generation` is the last one that existed.
CREATE TABLE fieldcrypt_subject_keys (
    category   TEXT NOT NULL,
    -- `user:<id>` or `org:<id>`; listed in byte order (SQLite's BINARY collation).
    subject    TEXT NOT NULL,
    generation INTEGER NOT NULL CHECK (generation >= 1),
    wrapped    BLOB,
    PRIMARY KEY (category, subject)
) STRICT;

-- Where each re-encryption job stands.
CREATE TABLE fieldcrypt_rewrap_checkpoints (
    job             TEXT PRIMARY KEY,
    last_cursor     TEXT,
    scanned         INTEGER NOT NULL CHECK (scanned >= 0),
    rewrapped       INTEGER NOT NULL CHECK (rewrapped >= 0),
    already_current INTEGER NOT NULL CHECK (already_current >= 0),
    conflicts       INTEGER NOT NULL CHECK (conflicts >= 0),
    failed          INTEGER NOT NULL CHECK (failed >= 0),
    done            INTEGER NOT NULL CHECK (done IN (0, 1))
) STRICT;
