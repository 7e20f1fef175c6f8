-- Passkeys (kept in step with migrations/postgres/0004_passkeys.sql): registered
-- credentials, which are public keys (no secret) but carry user_id for row-level
-- security, and the ceremonies in progress.

-- One row per user who started a ceremony or registered a passkey: the row a write
-- transaction upserts first, so one user's ceremony starts and registrations run one
-- after the other, and the counter that orders the user's ceremonies (oldest dropped
-- first past the per-user cap).
CREATE TABLE passkey_users (
    user_id      TEXT PRIMARY KEY,
    ceremony_seq INTEGER NOT NULL
) STRICT;

CREATE TABLE passkey_credentials (
    -- Chosen by the authenticator; unique across all users (WebAuthn: at most 1023 bytes).
    credential_id BLOB PRIMARY KEY CHECK (length(credential_id) BETWEEN 1 AND 1023),
    user_id       TEXT NOT NULL,
    -- The last signature counter seen (a u32).
    counter       INTEGER NOT NULL CHECK (counter BETWEEN 0 AND 4294967295),
    -- webauthn-rs's serialised Passkey: public key and flags.
    passkey       BLOB NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX passkey_credentials_user ON passkey_credentials (user_id);

CREATE TABLE passkey_ceremonies (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('registration', 'authentication')),
    -- webauthn-rs's serialised ceremony state, with the challenge (server-side only).
    state      BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    -- passkey_users.ceremony_seq when it was stored: the user's ceremonies in order.
    seq        INTEGER NOT NULL
) STRICT;
CREATE INDEX passkey_ceremonies_user ON passkey_ceremonies (user_id, seq);
CREATE INDEX passkey_ceremonies_expiry ON passkey_ceremonies (expires_at);
