-- The remaining statements the service role ran directly on tables under row-level
-- security, as narrow SECURITY DEFINER functions; the service role then holds no right
-- on any table under row-level security (issue 14, PostgreSQL only).
--
-- 0007 moved the API-key and refresh-token lookups into functions and gave the service
-- role a see-all policy of its own (`service_<role>`) on the other tables under
-- row-level security: TOTP enrollments, passkey credentials and the per-user passkey
-- row, recovery codes, memberships, MCP services. That policy let the login read every
-- sealed TOTP secret, every passkey and every membership in one statement. Here each of
-- those statements becomes a function like 0007's: owned by this schema's owner (whose
-- `owner_service` policy of 0006 is what lets it see rows under `FORCE`), `search_path`
-- pinned, EXECUTE revoked from PUBLIC, reaching only the rows its arguments name (one
-- user's, or one user's in one organization), never listing across users. The statement
-- inside is the one the store ran before, so each stays one statement (or, where the
-- store holds a transaction around it, runs inside the caller's transaction and keeps its
-- locks to the caller's commit).
--
-- `mcpsec_grant_service_role` is replaced: it grants EXECUTE on every pre-authentication
-- function (0007's and these), direct rights on the tables without row-level security
-- only, and on every table under row-level security revokes what the login holds and
-- drops its `service_<login>` policy. This migration does the same for every login an
-- earlier `mcpsec_grant_service_role` set up, so an upgrade closes the see-all policies
-- without an operator's step. MCP services have no pre-authentication statement: the
-- login reaches them only as the tenant, through `begin_as`.

-- TOTP enrollments (`SqlTotpEnrollments`).

-- A pending enrollment, unless one with this id exists: its `created_at`, or NULL.
CREATE FUNCTION totp_enrollment_save(p_user text, p_enrollment bytea, p_sealed bytea,
                                     p_config text, p_created_at bigint)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    DECLARE
        saved bigint;
    BEGIN
        INSERT INTO totp_enrollments (user_id, enrollment, sealed_secret, config, created_at)
            VALUES (p_user, p_enrollment, p_sealed, p_config, p_created_at)
            ON CONFLICT (user_id, enrollment) DO NOTHING
            RETURNING created_at INTO saved;
        RETURN saved;
    END
    $$;

-- The confirmation, once: `confirmed_at` when this call confirmed it, else NULL.
CREATE FUNCTION totp_enrollment_confirm(p_user text, p_enrollment bytea, p_at bigint)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    DECLARE
        confirmed bigint;
    BEGIN
        UPDATE totp_enrollments e SET confirmed_at = p_at
         WHERE e.user_id = p_user AND e.enrollment = p_enrollment AND e.confirmed_at IS NULL
        RETURNING e.confirmed_at INTO confirmed;
        RETURN confirmed;
    END
    $$;

-- Whether one enrollment exists (why a confirmation changed nothing).
CREATE FUNCTION totp_enrollment_exists(p_user text, p_enrollment bytea) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
    BEGIN
        RETURN EXISTS (SELECT 1 FROM totp_enrollments e
                        WHERE e.user_id = p_user AND e.enrollment = p_enrollment);
    END
    $$;

-- One enrollment with its sealed secret (opened by the application's sealer only).
CREATE FUNCTION totp_enrollment_load(p_user text, p_enrollment bytea)
    RETURNS TABLE (sealed_secret bytea, config text, created_at bigint, confirmed_at bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
    BEGIN
        RETURN QUERY
            SELECT e.sealed_secret, e.config, e.created_at, e.confirmed_at
              FROM totp_enrollments e
             WHERE e.user_id = p_user AND e.enrollment = p_enrollment;
    END
    $$;

-- One user's enrollments: ids and state, no secret. Bounded by the user, the argument.
CREATE FUNCTION totp_enrollment_list(p_user text)
    RETURNS TABLE (enrollment bytea, created_at bigint, confirmed_at bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
    BEGIN
        RETURN QUERY
            SELECT e.enrollment, e.created_at, e.confirmed_at FROM totp_enrollments e
             WHERE e.user_id = p_user ORDER BY e.created_at, e.enrollment;
    END
    $$;

-- One enrollment removed; whether there was one.
CREATE FUNCTION totp_enrollment_remove(p_user text, p_enrollment bytea) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    BEGIN
        DELETE FROM totp_enrollments e
         WHERE e.user_id = p_user AND e.enrollment = p_enrollment;
        RETURN FOUND;
    END
    $$;

-- Passkeys (`SqlPasskeyStore`). Registration and removal run as the tenant (0006).

-- A ceremony's start: the user's row upserted and locked (to the caller's commit), its
-- next sequence number.
CREATE FUNCTION passkey_ceremony_seq(p_user text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    DECLARE
        seq bigint;
    BEGIN
        INSERT INTO passkey_users AS u (user_id, ceremony_seq) VALUES (p_user, 1)
            ON CONFLICT (user_id) DO UPDATE SET ceremony_seq = u.ceremony_seq + 1
            RETURNING u.ceremony_seq INTO seq;
        RETURN seq;
    END
    $$;

-- One user's passkeys (public keys and counters), for an authentication.
CREATE FUNCTION passkey_credentials_of(p_user text)
    RETURNS TABLE (credential_id bytea, counter bigint, passkey bytea, created_at bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
    BEGIN
        RETURN QUERY
            SELECT c.credential_id, c.counter, c.passkey, c.created_at
              FROM passkey_credentials c
             WHERE c.user_id = p_user ORDER BY c.created_at, c.credential_id;
    END
    $$;

-- A used passkey's counter, compare-and-set (as `UPDATE_CREDENTIAL` in src/passkeys.rs).
CREATE FUNCTION passkey_update_credential(p_user text, p_credential bytea, p_counter bigint,
                                          p_passkey bytea)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    BEGIN
        UPDATE passkey_credentials c SET counter = p_counter, passkey = p_passkey
         WHERE c.user_id = p_user AND c.credential_id = p_credential
           AND (c.counter < p_counter OR (c.counter = 0 AND p_counter = 0));
        RETURN FOUND;
    END
    $$;

-- Recovery codes (`SqlRecoveryStore`). A new set is written as the tenant (0006).

-- One code used, once: whether this call removed it.
CREATE FUNCTION recovery_code_consume(p_user text, p_hash bytea) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    BEGIN
        DELETE FROM recovery_codes r WHERE r.user_id = p_user AND r.hash = p_hash;
        RETURN FOUND;
    END
    $$;

-- How many codes one user has left.
CREATE FUNCTION recovery_codes_remaining(p_user text) RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
    BEGIN
        RETURN (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = p_user);
    END
    $$;

-- Memberships (`SqlMemberships`).

-- One user's role in one organization, or NULL.
CREATE FUNCTION membership_role(p_user text, p_org text) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
    BEGIN
        RETURN (SELECT m.role FROM memberships m
                 WHERE m.user_id = p_user AND m.org_id = p_org);
    END
    $$;

-- The operator's bootstrap: one membership set (the organization and the user are
-- upserted by the caller, in the same transaction).
CREATE FUNCTION membership_set(p_user text, p_org text, p_role text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    BEGIN
        INSERT INTO memberships AS m (user_id, org_id, role) VALUES (p_user, p_org, p_role)
            ON CONFLICT (user_id, org_id) DO UPDATE SET role = excluded.role;
    END
    $$;

-- One membership removed: the role it had, or NULL.
CREATE FUNCTION membership_remove(p_user text, p_org text) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    DECLARE
        had text;
    BEGIN
        DELETE FROM memberships m WHERE m.user_id = p_user AND m.org_id = p_org
            RETURNING m.role INTO had;
        RETURN had;
    END
    $$;

-- Every function a service login may execute: 0007's and the ones above.
CREATE FUNCTION mcpsec_service_functions() RETURNS text[]
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT ARRAY['api_key_lookup(text)', 'api_key_replace_hash(text, text, text)',
                 'api_key_touch_last_used(text, bigint, bigint)',
                 'api_key_revoke_by_holder(text)', 'refresh_family_get(text)',
                 'refresh_token_state(bytea)',
                 'refresh_create_family(text, text, text, text, text, bigint, text, text, bigint, bigint, bigint, boolean, bytea, text, bigint, bigint, bigint)',
                 'refresh_consume(bytea, bigint, bytea)',
                 'refresh_revoke_family(text)', 'refresh_revoke_all(text)',
                 'refresh_prune(bigint)',
                 'totp_enrollment_save(text, bytea, bytea, text, bigint)',
                 'totp_enrollment_confirm(text, bytea, bigint)',
                 'totp_enrollment_exists(text, bytea)', 'totp_enrollment_load(text, bytea)',
                 'totp_enrollment_list(text)', 'totp_enrollment_remove(text, bytea)',
                 'passkey_ceremony_seq(text)', 'passkey_credentials_of(text)',
                 'passkey_update_credential(text, bytea, bigint, bytea)',
                 'recovery_code_consume(text, bytea)', 'recovery_codes_remaining(text)',
                 'membership_role(text, text)', 'membership_set(text, text, text)',
                 'membership_remove(text, text)']
    $$;

-- Pinned `search_path`, no EXECUTE for PUBLIC (0007 did its own already; again is
-- harmless).
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY mcpsec_service_functions()
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

-- Sets up `login` (an existing role that is not the owner, not a superuser and does not
-- bypass row-level security) as the pool's login for this schema; run by the owner, again
-- after a migration that adds a table. Grants exactly:
-- - membership of `mcpsec_app` (`begin_as` switches to it for tenant-scoped statements);
-- - USAGE on this schema and EXECUTE on `mcpsec_service_functions()`;
-- - SELECT, INSERT, UPDATE, DELETE on every table of this schema without row-level
--   security, except the migrations' ledger;
-- and on every table under row-level security revokes whatever the login holds and drops
-- a `service_<login>` policy left by 0007's version of this function.
CREATE OR REPLACE FUNCTION mcpsec_grant_service_role(login name) RETURNS void
    LANGUAGE plpgsql VOLATILE
    AS $$
    DECLARE
        target record;
        t record;
        f text;
        policy name := left('service_' || login, 63);
    BEGIN
        -- `mcpsec_app` is shared by the cluster: its grants are made under 0006's lock.
        PERFORM pg_advisory_xact_lock(7236286015443250006);
        SELECT rolsuper, rolbypassrls INTO target FROM pg_roles WHERE rolname = login;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no role %', login USING ERRCODE = '22023';
        END IF;
        IF target.rolsuper OR target.rolbypassrls THEN
            RAISE EXCEPTION 'role % bypasses row-level security', login USING ERRCODE = '42501';
        END IF;
        IF login = current_user OR pg_has_role(login, current_user, 'MEMBER') THEN
            RAISE EXCEPTION 'role % is (a member of) the schema owner', login
                USING ERRCODE = '42501';
        END IF;
        -- NOINHERIT: `mcpsec_app`'s grants (SELECT on `api_keys`, ...) are the login's only
        -- after `SET ROLE mcpsec_app`, i.e. inside `begin_as` with a principal set.
        EXECUTE format('ALTER ROLE %I NOINHERIT', login);
        EXECUTE format('GRANT mcpsec_app TO %I', login);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), login);
        FOREACH f IN ARRAY mcpsec_service_functions()
        LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, login);
        END LOOP;
        FOR t IN SELECT c.relname, c.relrowsecurity FROM pg_class c
                  WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
                    AND c.relname <> '_sqlx_migrations'
        LOOP
            IF t.relrowsecurity THEN
                EXECUTE format('REVOKE ALL ON %I FROM %I', t.relname, login);
                EXECUTE format('DROP POLICY IF EXISTS %I ON %I', policy, t.relname);
            ELSE
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I',
                               t.relname, login);
            END IF;
        END LOOP;
    END
    $$;
REVOKE EXECUTE ON FUNCTION mcpsec_grant_service_role(name) FROM PUBLIC;

-- Logins set up by 0007's version: their see-all policies dropped, their table rights
-- under row-level security revoked, the new functions granted. A login is recognised by
-- the policy 0007 made for it (`service_<login>`, `TO <login>` alone).
DO $$
DECLARE
    p record;
    login name;
    f text;
BEGIN
    FOR p IN SELECT pol.tablename, pol.policyname, pol.roles FROM pg_policies pol
              WHERE pol.schemaname = current_schema() AND pol.policyname LIKE 'service\_%'
    LOOP
        EXECUTE format('DROP POLICY %I ON %I', p.policyname, p.tablename);
        FOREACH login IN ARRAY p.roles
        LOOP
            CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = login);
            EXECUTE format('REVOKE ALL ON %I FROM %I', p.tablename, login);
            FOREACH f IN ARRAY mcpsec_service_functions()
            LOOP
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, login);
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;
