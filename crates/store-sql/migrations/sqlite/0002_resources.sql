-- Tenant resources (kept in step with migrations/postgres/0002_resources.sql): TOTP
-- enrollments, whose secret is stored only sealed through the host's Sealer, and the MCP
-- services an organization registers.

CREATE TABLE totp_enrollments (
    user_id       TEXT NOT NULL,
    enrollment    BLOB NOT NULL CHECK (length(enrollment) = 16),
    -- The TOTP secret sealed by the field-encryption Sealer; never the secret itself.
    sealed_secret BLOB NOT NULL,
    -- The code parameters (algorithm, digits, period) as the mfa crate writes them.
    config        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    confirmed_at  INTEGER,
    PRIMARY KEY (user_id, enrollment)
) STRICT;

CREATE TABLE mcp_services (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    -- The member who registered it.
    user_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, name)
) STRICT;
CREATE INDEX mcp_services_org ON mcp_services (org_id);
