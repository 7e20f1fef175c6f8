-- Session revocations, signing-key metadata and audit chains, SQLite (kept in step with
-- migrations/postgres/0005_tokens_audit.sql). Times are INTEGER microseconds.

-- Revoked login sessions (the refresh-token family id an access token carries as `sid`),
-- kept until the last access token that can carry the id has expired, then pruned.
CREATE TABLE session_revocations (
    sid   TEXT PRIMARY KEY,
    until INTEGER NOT NULL
) STRICT;
CREATE INDEX session_revocations_until ON session_revocations (until);

-- The signing keyring's generation: one row, moved by compare-and-swap.
CREATE TABLE signing_keyring (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL CHECK (generation >= 0)
) STRICT;
INSERT INTO signing_keyring (id, generation) VALUES (1, 0);

-- The keyring's keys as of that generation, in ring order: metadata only (the private
-- keys stay with the key provider).
CREATE TABLE signing_keys (
    position      INTEGER PRIMARY KEY CHECK (position >= 0),
    kid           TEXT NOT NULL,
    algorithm     TEXT NOT NULL CHECK (algorithm IN ('RS256', 'ES256', 'EdDSA')),
    state         TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    retired_until INTEGER,
    CHECK ((state = 'retired') = (retired_until IS NOT NULL))
) STRICT;

-- Audit chains: one per writing instance, one row per record, each row the record's
-- canonical JSON line. `signed` marks checkpoints and unverified-tail seals, where a
-- reopen starts checking.
CREATE TABLE audit_records (
    instance TEXT NOT NULL,
    seq      INTEGER NOT NULL CHECK (seq >= 1),
    signed   INTEGER NOT NULL CHECK (signed IN (0, 1)),
    line     TEXT NOT NULL,
    PRIMARY KEY (instance, seq)
) STRICT;
CREATE INDEX audit_records_signed ON audit_records (instance, seq) WHERE signed;
