-- Row-level security (issue 14, PostgreSQL only: SQLite has no policies).
--
-- Tenant-scoped statements run as the role `mcpsec_app` (`SET LOCAL ROLE`) with the
-- principal in transaction-local settings `mcpsec.user_id`, `mcpsec.org_id` and
-- `mcpsec.role` (see `mcpsec_store_sql::rls`); the policies below bound the rows such a
-- statement can see or change, whatever its WHERE clause says. No principal (a setting
-- unset or empty) matches nothing. Which rows a role may reach follows the access crate's
-- action table (`mcpsec access matrix`); tests/rls.rs walks that table against these
-- policies and fails on any difference.
--
-- The role that runs this migration (the schema's owner, the one the pool connects as)
-- keeps every row through the `owner_service` policy: it runs the pre-authentication
-- lookups (an API key by id, a refresh token by hash), logins and maintenance, which have
-- no principal. `mcpsec_app` is granted nothing else, so tables only those paths use
-- (attempt counters, TOTP replay, email challenges, ceremonies, ...) are out of its reach
-- entirely, and on the tables it is granted it may write only the columns tenant-scoped
-- statements write.
--
-- Where a policy grants an org admin's powers, the admin is confirmed in `memberships`
-- (`is_org_admin` below), never by the principal's role claim alone: a demoted admin's
-- stale claim reaches nothing more than a member's. The SECURITY DEFINER functions here
-- read the principal's settings themselves and call nothing in the shared `mcpsec`
-- schema (whose functions belong to whichever role migrated first).
--
-- Roles and the `mcpsec` schema are shared by every schema of the cluster/database, and
-- instances (or tests, one schema each) migrate concurrently: everything shared is
-- created under one advisory lock, if absent, or replaced.

SELECT pg_advisory_xact_lock(7236286015443250006);

DO $$
DECLARE
    app record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mcpsec_app') THEN
        CREATE ROLE mcpsec_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    -- A role of that name made by someone else must still be one the policies bind.
    SELECT rolsuper, rolbypassrls, rolcanlogin INTO app FROM pg_roles
     WHERE rolname = 'mcpsec_app';
    IF app.rolsuper OR app.rolbypassrls OR app.rolcanlogin THEN
        RAISE EXCEPTION 'role mcpsec_app must be NOLOGIN NOSUPERUSER NOBYPASSRLS';
    END IF;
    -- The pool's role must be allowed to `SET ROLE mcpsec_app`.
    IF NOT pg_has_role(current_user, 'mcpsec_app', 'MEMBER') THEN
        EXECUTE format('GRANT mcpsec_app TO %I', current_user);
    END IF;
END
$$;

-- The principal, mirroring Supabase's auth.uid(): NULL when unset or empty. The schema and
-- its functions belong to whoever migrated first; a later owner (another schema in the
-- same database, migrated by another role) uses them as they are.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'mcpsec') THEN
        CREATE SCHEMA mcpsec;
        GRANT USAGE ON SCHEMA mcpsec TO PUBLIC;
    END IF;
    IF pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'mcpsec'),
                   'USAGE') THEN
        CREATE OR REPLACE FUNCTION mcpsec.uid() RETURNS text
            LANGUAGE sql STABLE PARALLEL SAFE
            AS $f$ SELECT NULLIF(current_setting('mcpsec.user_id', true), '') $f$;
        CREATE OR REPLACE FUNCTION mcpsec.org_id() RETURNS text
            LANGUAGE sql STABLE PARALLEL SAFE
            AS $f$ SELECT NULLIF(current_setting('mcpsec.org_id', true), '') $f$;
        CREATE OR REPLACE FUNCTION mcpsec.role() RETURNS text
            LANGUAGE sql STABLE PARALLEL SAFE
            AS $f$ SELECT NULLIF(current_setting('mcpsec.role', true), '') $f$;
    ELSIF to_regprocedure('mcpsec.uid()') IS NULL OR to_regprocedure('mcpsec.org_id()') IS NULL
          OR to_regprocedure('mcpsec.role()') IS NULL THEN
        RAISE EXCEPTION 'schema mcpsec lacks uid(), org_id() or role(): migrate once as its owner';
    END IF;
END
$$;

-- This schema (a deployment's, or one test's).
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO mcpsec_app', current_schema());
END
$$;

-- Only what tenant-scoped statements need. Updates are column grants: an API key's
-- status and expiry (`ApiKeyStore::{set_status, set_expiry}`; never its owner,
-- organization, scopes or hash) and a session's `revoked` flag
-- (`RefreshTokenStore::revoke_family_as`).
GRANT SELECT, INSERT ON api_keys TO mcpsec_app;
GRANT UPDATE (status, previous_status, expires_at) ON api_keys TO mcpsec_app;
GRANT SELECT ON refresh_families TO mcpsec_app;
GRANT UPDATE (revoked) ON refresh_families TO mcpsec_app;
GRANT SELECT ON refresh_tokens TO mcpsec_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON totp_enrollments TO mcpsec_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON passkey_credentials TO mcpsec_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON mcp_services TO mcpsec_app;
GRANT SELECT ON memberships TO mcpsec_app;
-- A passkey registration locks the user's row first (`PasskeyStore::add_credential`); a
-- new recovery set replaces the user's codes (`RecoveryCodeStore::replace_set`). The
-- codes' hashes are not readable: only `user_id` is, for the DELETE's WHERE clause.
GRANT SELECT, INSERT ON passkey_users TO mcpsec_app;
GRANT UPDATE (ceremony_seq) ON passkey_users TO mcpsec_app;
GRANT SELECT, INSERT ON recovery_code_sets TO mcpsec_app;
GRANT UPDATE (generation) ON recovery_code_sets TO mcpsec_app;
GRANT SELECT (user_id), INSERT, DELETE ON recovery_codes TO mcpsec_app;

-- Whether the caller is, now, an org admin of `org` / whether `member` belongs to `org`,
-- read from `memberships` as this schema's owner (policies on `memberships` itself call
-- them, so they cannot read it under its own policies). They answer only about the
-- caller's organization and take the principal from the settings directly.
CREATE FUNCTION mcpsec_is_org_admin(org text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$
        SELECT EXISTS (SELECT 1 FROM memberships m
                        WHERE m.user_id = NULLIF(current_setting('mcpsec.user_id', true), '')
                          AND m.org_id = org
                          AND m.org_id = NULLIF(current_setting('mcpsec.org_id', true), '')
                          AND m.role = 'org_admin')
    $$;
CREATE FUNCTION mcpsec_is_member(member text, org text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$
        SELECT EXISTS (SELECT 1 FROM memberships m
                        WHERE m.user_id = member AND m.org_id = org
                          AND m.org_id = NULLIF(current_setting('mcpsec.org_id', true), ''))
    $$;

-- Revoked is final, whoever writes: a key's status never leaves 'revoked'.
CREATE FUNCTION api_keys_revoked_is_final() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        RAISE EXCEPTION 'a revoked API key stays revoked' USING ERRCODE = '42501';
    END
    $$;
CREATE TRIGGER revoked_is_final BEFORE UPDATE OF status ON api_keys
    FOR EACH ROW WHEN (OLD.status = 'revoked' AND NEW.status IS DISTINCT FROM 'revoked')
    EXECUTE FUNCTION api_keys_revoked_is_final();

-- Enabled and forced (the owner is bound too), with the owner's service policy.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_keys', 'refresh_families', 'refresh_tokens',
                             'totp_enrollments', 'passkey_credentials', 'mcp_services',
                             'memberships']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY owner_service ON %I TO %I USING (true) WITH CHECK (true)',
                       t, current_user);
    END LOOP;
END
$$;

-- API keys: `user.manage_tokens` (own keys; org_admin, developer). An org admin does not
-- see another member's keys. A key is inserted only into the principal's organization,
-- owned by the principal, or by an org admin (per `memberships`) for a member of it.
CREATE POLICY tenant_select ON api_keys FOR SELECT TO mcpsec_app
    USING (user_id = mcpsec.uid() AND org_id = mcpsec.org_id()
           AND mcpsec.role() IN ('org_admin', 'developer'));
CREATE POLICY tenant_update ON api_keys FOR UPDATE TO mcpsec_app
    USING (user_id = mcpsec.uid() AND org_id = mcpsec.org_id()
           AND mcpsec.role() IN ('org_admin', 'developer'))
    WITH CHECK (user_id = mcpsec.uid() AND org_id = mcpsec.org_id());
CREATE POLICY tenant_insert ON api_keys FOR INSERT TO mcpsec_app
    WITH CHECK (org_id = mcpsec.org_id()
                AND ((user_id = mcpsec.uid() AND mcpsec.role() IN ('org_admin', 'developer'))
                     OR (mcpsec.role() = 'org_admin' AND mcpsec_is_org_admin(org_id)
                         AND mcpsec_is_member(user_id, org_id))));

-- Sessions (refresh families): one's own (`user.manage_tokens`: org_admin, developer; a
-- session without an organization is its user's alone), and an org admin's reach over the
-- organization's sessions (`org.manage_members`, confirmed in `memberships`). Read and
-- revoke only: `revoked` is the one writable column, and the new row must be revoked.
CREATE POLICY tenant_select ON refresh_families FOR SELECT TO mcpsec_app
    USING ((user_id = mcpsec.uid() AND (org_id IS NULL OR org_id = mcpsec.org_id())
            AND mcpsec.role() IN ('org_admin', 'developer'))
           OR (org_id = mcpsec.org_id() AND mcpsec.role() = 'org_admin'
               AND mcpsec_is_org_admin(org_id)));
CREATE POLICY tenant_update ON refresh_families FOR UPDATE TO mcpsec_app
    USING ((user_id = mcpsec.uid() AND (org_id IS NULL OR org_id = mcpsec.org_id())
            AND mcpsec.role() IN ('org_admin', 'developer'))
           OR (org_id = mcpsec.org_id() AND mcpsec.role() = 'org_admin'
               AND mcpsec_is_org_admin(org_id)))
    WITH CHECK (((user_id = mcpsec.uid() AND (org_id IS NULL OR org_id = mcpsec.org_id())
                  AND mcpsec.role() IN ('org_admin', 'developer'))
                 OR (org_id = mcpsec.org_id() AND mcpsec.role() = 'org_admin'
                     AND mcpsec_is_org_admin(org_id)))
                AND revoked);

-- Refresh tokens (hashes): one's own, read only.
CREATE POLICY tenant_select ON refresh_tokens FOR SELECT TO mcpsec_app
    USING (user_id = mcpsec.uid() AND mcpsec.role() IN ('org_admin', 'developer'));

-- TOTP enrollments: one's own (`user.update_profile`: every role).
CREATE POLICY tenant_all ON totp_enrollments FOR ALL TO mcpsec_app
    USING (user_id = mcpsec.uid() AND mcpsec.role() IN ('org_admin', 'developer', 'viewer'))
    WITH CHECK (user_id = mcpsec.uid()
                AND mcpsec.role() IN ('org_admin', 'developer', 'viewer'));

-- Passkeys (public keys): one's own (`user.update_profile`: every role). Ceremonies in
-- progress and the per-user ceremony counter are pre-authentication state: not granted.
CREATE POLICY tenant_all ON passkey_credentials FOR ALL TO mcpsec_app
    USING (user_id = mcpsec.uid() AND mcpsec.role() IN ('org_admin', 'developer', 'viewer'))
    WITH CHECK (user_id = mcpsec.uid()
                AND mcpsec.role() IN ('org_admin', 'developer', 'viewer'));

-- A user's passkey lock row and recovery codes: one's own (`user.update_profile`). The
-- lookups that use them before authentication (ceremonies, a recovery code's use) run as
-- the owner.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['passkey_users', 'recovery_code_sets', 'recovery_codes']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY owner_service ON %I TO %I USING (true) WITH CHECK (true)',
                       t, current_user);
        EXECUTE format('CREATE POLICY tenant_all ON %I FOR ALL TO mcpsec_app
            USING (user_id = mcpsec.uid()
                   AND mcpsec.role() IN (''org_admin'', ''developer'', ''viewer''))
            WITH CHECK (user_id = mcpsec.uid()
                        AND mcpsec.role() IN (''org_admin'', ''developer'', ''viewer''))', t);
    END LOOP;
END
$$;

-- Memberships: one's own rows (what the service policies below read), and an org admin's
-- (per `memberships`, read by the SECURITY DEFINER helper) view of the organization's.
CREATE POLICY tenant_select ON memberships FOR SELECT TO mcpsec_app
    USING (user_id = mcpsec.uid()
           OR (org_id = mcpsec.org_id() AND mcpsec.role() = 'org_admin'
               AND mcpsec_is_org_admin(org_id)));

-- MCP services, the organization's: seen by every member (`mcp.use`), changed by org
-- admins and developers (`mcp.configure`). The role must be the caller's current one in
-- that organization, read from `memberships`, not only the principal's claim.
CREATE POLICY tenant_select ON mcp_services FOR SELECT TO mcpsec_app
    USING (org_id = mcpsec.org_id()
           AND mcpsec.role() IN ('org_admin', 'developer', 'viewer')
           AND EXISTS (SELECT 1 FROM memberships m
                        WHERE m.user_id = mcpsec.uid() AND m.org_id = mcp_services.org_id
                          AND m.role = mcpsec.role()));
CREATE POLICY tenant_insert ON mcp_services FOR INSERT TO mcpsec_app
    WITH CHECK (org_id = mcpsec.org_id() AND user_id = mcpsec.uid()
                AND mcpsec.role() IN ('org_admin', 'developer')
                AND EXISTS (SELECT 1 FROM memberships m
                             WHERE m.user_id = mcpsec.uid() AND m.org_id = mcp_services.org_id
                               AND m.role = mcpsec.role()));
CREATE POLICY tenant_update ON mcp_services FOR UPDATE TO mcpsec_app
    USING (org_id = mcpsec.org_id()
           AND mcpsec.role() IN ('org_admin', 'developer')
           AND EXISTS (SELECT 1 FROM memberships m
                        WHERE m.user_id = mcpsec.uid() AND m.org_id = mcp_services.org_id
                          AND m.role = mcpsec.role()))
    WITH CHECK (org_id = mcpsec.org_id());
CREATE POLICY tenant_delete ON mcp_services FOR DELETE TO mcpsec_app
    USING (org_id = mcpsec.org_id()
           AND mcpsec.role() IN ('org_admin', 'developer')
           AND EXISTS (SELECT 1 FROM memberships m
                        WHERE m.user_id = mcpsec.uid() AND m.org_id = mcp_services.org_id
                          AND m.role = mcpsec.role()));

-- An org admin acting on a member's API key by id (`org.manage_members`: revoking a
-- departed member's keys, expiring the old key of a rotation) without seeing it: two
-- SECURITY DEFINER functions that change one key of the caller's organization, only for a
-- caller who is its org admin now (the principal's role and `memberships` agree), and
-- answer with no more than the store method needs. They run as this migration's role,
-- with `search_path` pinned to this schema; only mcpsec_app may call them. An admin only
-- brings an expiry nearer (or sets one where there was none), never removes or extends
-- it: the answer is false then, as for a key out of reach.
CREATE FUNCTION api_key_admin_set_status(key_id text, new_status text) RETURNS text
    LANGUAGE sql VOLATILE SECURITY DEFINER
    AS $$
        UPDATE api_keys SET previous_status = status,
            status = CASE WHEN status = 'revoked' THEN status ELSE new_status END
         WHERE id = key_id
           AND org_id = NULLIF(current_setting('mcpsec.org_id', true), '')
           AND NULLIF(current_setting('mcpsec.role', true), '') = 'org_admin'
           AND EXISTS (SELECT 1 FROM memberships m
                        WHERE m.user_id = NULLIF(current_setting('mcpsec.user_id', true), '')
                          AND m.org_id = api_keys.org_id AND m.role = 'org_admin')
        RETURNING previous_status
    $$;
CREATE FUNCTION api_key_admin_set_expiry(key_id text, new_expiry bigint) RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    AS $$
        WITH done AS (
            UPDATE api_keys SET expires_at = new_expiry
             WHERE id = key_id
               AND new_expiry IS NOT NULL
               AND (expires_at IS NULL OR new_expiry <= expires_at)
               AND org_id = NULLIF(current_setting('mcpsec.org_id', true), '')
               AND NULLIF(current_setting('mcpsec.role', true), '') = 'org_admin'
               AND EXISTS (SELECT 1 FROM memberships m
                            WHERE m.user_id = NULLIF(current_setting('mcpsec.user_id', true), '')
                              AND m.org_id = api_keys.org_id AND m.role = 'org_admin')
            RETURNING 1)
        SELECT EXISTS (SELECT 1 FROM done)
    $$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION api_key_admin_set_status(text, text) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION api_key_admin_set_expiry(text, bigint) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION mcpsec_is_org_admin(text) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION mcpsec_is_member(text, text) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
REVOKE EXECUTE ON FUNCTION api_key_admin_set_status(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION api_key_admin_set_expiry(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_key_admin_set_status(text, text) TO mcpsec_app;
GRANT EXECUTE ON FUNCTION api_key_admin_set_expiry(text, bigint) TO mcpsec_app;
REVOKE EXECUTE ON FUNCTION mcpsec_is_org_admin(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION mcpsec_is_member(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mcpsec_is_org_admin(text) TO mcpsec_app;
GRANT EXECUTE ON FUNCTION mcpsec_is_member(text, text) TO mcpsec_app;
