-- mcpsec stores, SQLite (kept in step with migrations/postgres). Times are INTEGER
-- microseconds since the Unix epoch, as on PostgreSQL. Every table that holds a user's or
-- an organization's resource carries user_id and/or org_id (row-level security is a
-- PostgreSQL feature; the columns keep the two schemas alike). Tables are STRICT: a
-- value of the wrong type is refused, not stored under type affinity.

CREATE TABLE attempt_counters (
    subject      TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL CHECK (failures >= 0),
    window_start INTEGER NOT NULL,
    last_failure INTEGER NOT NULL
) STRICT;

CREATE TABLE orgs (
    id TEXT PRIMARY KEY
) STRICT;

CREATE TABLE users (
    id TEXT PRIMARY KEY
) STRICT;

CREATE TABLE memberships (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id  TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    role    TEXT NOT NULL CHECK (role IN ('org_admin', 'developer', 'viewer')),
    PRIMARY KEY (user_id, org_id)
) STRICT;
CREATE INDEX memberships_org ON memberships (org_id);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    hash            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    env             TEXT NOT NULL CHECK (env IN ('live', 'test')),
    name            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    last_used_at    INTEGER,
    status          TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
    -- The status the last status change replaced: lets one UPDATE … RETURNING answer
    -- with the old value on both backends (SET reads the old row).
    previous_status TEXT CHECK (previous_status IN ('active', 'disabled', 'revoked')),
    hint            TEXT NOT NULL,
    created_by      TEXT NOT NULL
) STRICT;
CREATE INDEX api_keys_owner ON api_keys (org_id, user_id);

CREATE TABLE refresh_families (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    org_id       TEXT,
    role         TEXT CHECK (role IN ('org_admin', 'developer', 'viewer')),
    scopes       TEXT NOT NULL,
    auth_time    INTEGER NOT NULL,
    amr          TEXT NOT NULL,
    acr          TEXT,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
) STRICT;
CREATE INDEX refresh_families_user ON refresh_families (user_id);
CREATE INDEX refresh_families_org ON refresh_families (org_id);
CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);

CREATE TABLE refresh_tokens (
    hash        BLOB PRIMARY KEY CHECK (length(hash) = 32),
    family_id   TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    -- The family's user, repeated so a policy needs no join.
    user_id     TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    consumed_at INTEGER,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

CREATE TABLE totp_replay (
    user_id    TEXT NOT NULL,
    enrollment BLOB NOT NULL CHECK (length(enrollment) = 16),
    last_step  INTEGER NOT NULL CHECK (last_step >= 0),
    PRIMARY KEY (user_id, enrollment)
) STRICT;

-- One row per user with a recovery set: replacing a set locks it first, so two concurrent
-- replacements cannot interleave their deletes and inserts into a mixed set.
CREATE TABLE recovery_code_sets (
    user_id    TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
) STRICT;

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    hash    BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (user_id, hash)
) STRICT;

CREATE TABLE email_challenges (
    user_id    TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    flow       TEXT NOT NULL,
    hash       BLOB NOT NULL CHECK (length(hash) = 32),
    sent_at    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL CHECK (attempts >= 0),
    PRIMARY KEY (user_id, purpose, flow)
) STRICT;

CREATE TABLE email_cooldowns (
    user_id  TEXT NOT NULL,
    purpose  TEXT NOT NULL,
    until_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, purpose)
) STRICT;
