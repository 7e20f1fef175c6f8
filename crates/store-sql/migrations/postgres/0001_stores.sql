-- mcpsec stores, PostgreSQL. Times are BIGINT microseconds since the Unix epoch (the same
-- representation as on SQLite). Every table that holds a user's or an organization's
-- resource carries user_id and/or org_id, so row-level security policies can be keyed on
-- them (issue 14; policies come in a later migration).

CREATE TABLE attempt_counters (
    subject      TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL CHECK (failures >= 0),
    window_start BIGINT NOT NULL,
    last_failure BIGINT NOT NULL
);

CREATE TABLE orgs (
    id TEXT PRIMARY KEY
);

CREATE TABLE users (
    id TEXT PRIMARY KEY
);

CREATE TABLE memberships (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id  TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    role    TEXT NOT NULL CHECK (role IN ('org_admin', 'developer', 'viewer')),
    PRIMARY KEY (user_id, org_id)
);
CREATE INDEX memberships_org ON memberships (org_id);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    hash            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    env             TEXT NOT NULL CHECK (env IN ('live', 'test')),
    name            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    last_used_at    BIGINT,
    status          TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
    -- The status the last status change replaced: lets one UPDATE … RETURNING answer
    -- with the old value on both backends (SET reads the old row).
    previous_status TEXT CHECK (previous_status IN ('active', 'disabled', 'revoked')),
    hint            TEXT NOT NULL,
    created_by      TEXT NOT NULL
);
CREATE INDEX api_keys_owner ON api_keys (org_id, user_id);

CREATE TABLE refresh_families (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    org_id       TEXT,
    role         TEXT CHECK (role IN ('org_admin', 'developer', 'viewer')),
    scopes       TEXT NOT NULL,
    auth_time    BIGINT NOT NULL,
    amr          TEXT NOT NULL,
    acr          TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked      BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);
CREATE INDEX refresh_families_org ON refresh_families (org_id);
CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);

CREATE TABLE refresh_tokens (
    hash        BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    family_id   TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    -- The family's user, repeated so a policy needs no join.
    user_id     TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    consumed_at BIGINT,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

CREATE TABLE totp_replay (
    user_id    TEXT NOT NULL,
    enrollment BYTEA NOT NULL CHECK (octet_length(enrollment) = 16),
    last_step  BIGINT NOT NULL CHECK (last_step >= 0),
    PRIMARY KEY (user_id, enrollment)
);

-- One row per user with a recovery set: replacing a set locks it first, so two concurrent
-- replacements cannot interleave their deletes and inserts into a mixed set.
CREATE TABLE recovery_code_sets (
    user_id    TEXT PRIMARY KEY,
    generation BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    hash    BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (user_id, hash)
);

CREATE TABLE email_challenges (
    user_id    TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    flow       TEXT NOT NULL,
    hash       BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    sent_at    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL CHECK (attempts >= 0),
    PRIMARY KEY (user_id, purpose, flow)
);

CREATE TABLE email_cooldowns (
    user_id  TEXT NOT NULL,
    purpose  TEXT NOT NULL,
    until_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, purpose)
);
