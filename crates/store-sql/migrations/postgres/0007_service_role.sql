-- The pre-authentication lookups on API keys and refresh tokens as narrow SECURITY
-- DEFINER functions, and a service role for the pool's login (issue 14, PostgreSQL only).
--
-- An API key is looked up by its id and a refresh token by its hash before anyone is
-- authenticated: there is no principal to run them as under row-level security. Each
-- such statement is a function below, owned by this schema's owner (the role running
-- this migration, which keeps the `owner_service` policy of 0006), with `search_path`
-- pinned to this schema and EXECUTE revoked from PUBLIC. Each one reaches only the row
-- its key names (a primary key: an id, a hash) and answers with no more than the store
-- method needs; none lists. Family-wide writes take the id of one family or one subject.
--
-- A deployment's pool then logs in as a role that does not own the schema, set up with
-- `mcpsec_grant_service_role(role)` (`mcpsec_store_sql::postgres::grant_service_role`,
-- run once as the owner): membership of `mcpsec_app` for the tenant-scoped statements,
-- EXECUTE on these functions, and direct rights on the tables without row-level security
-- only (attempt counters, TOTP replay, email challenges, ceremonies, ...). It holds no
-- right at all on `api_keys`, `refresh_families` and `refresh_tokens`. The other tables
-- under row-level security (TOTP enrollments, passkeys, recovery codes, memberships, MCP
-- services) are still read before authentication by direct statements: the role gets
-- them through a policy of its own (`service_<role>`), like the owner's.
--
-- Nothing here is shared by other schemas: no role is created, every object is this
-- schema's, and the roles it grants to are named by the operator.

-- API keys: the record a presented key is verified against, by its id.
CREATE FUNCTION api_key_lookup(key_id text)
    RETURNS TABLE (id text, hash text, user_id text, org_id text, scopes text, env text,
                   name text, created_at bigint, expires_at bigint, last_used_at bigint,
                   status text, hint text, created_by text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
    #variable_conflict use_column
    BEGIN
        RETURN QUERY
            SELECT k.id, k.hash, k.user_id, k.org_id, k.scopes, k.env, k.name, k.created_at,
                   k.expires_at, k.last_used_at, k.status, k.hint, k.created_by
              FROM api_keys k WHERE k.id = key_id;
    END
    $$;

-- A hash upgrade, compare-and-set: written only while the stored hash is `expected`.
CREATE FUNCTION api_key_replace_hash(key_id text, expected text, new_hash text)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    BEGIN
        UPDATE api_keys k SET hash = new_hash WHERE k.id = key_id AND k.hash = expected;
        RETURN FOUND;
    END
    $$;

-- A key's last use, written only when the one stored is older than `min_interval`.
CREATE FUNCTION api_key_touch_last_used(key_id text, used_at bigint, min_interval bigint)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    BEGIN
        UPDATE api_keys k SET last_used_at = used_at
         WHERE k.id = key_id
           AND (k.last_used_at IS NULL OR used_at - k.last_used_at >= min_interval);
        RETURN FOUND;
    END
    $$;

-- The holder of a key revokes it: the status replaced, or NULL when no such key.
CREATE FUNCTION api_key_revoke_by_holder(key_id text) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    DECLARE
        previous text;
    BEGIN
        UPDATE api_keys k SET previous_status = k.status, status = 'revoked'
         WHERE k.id = key_id RETURNING k.previous_status INTO previous;
        RETURN previous;
    END
    $$;

-- Refresh families: one family by its id (the state a consume or a check reports).
CREATE FUNCTION refresh_family_get(family_id text)
    RETURNS TABLE (id text, user_id text, org_id text, role text, scopes text,
                   auth_time bigint, amr text, acr text, created_at bigint,
                   last_used_at bigint, expires_at bigint, revoked boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
    #variable_conflict use_column
    BEGIN
        RETURN QUERY
            SELECT f.id, f.user_id, f.org_id, f.role, f.scopes, f.auth_time, f.amr, f.acr,
                   f.created_at, f.last_used_at, f.expires_at, f.revoked
              FROM refresh_families f WHERE f.id = family_id;
    END
    $$;

-- A refresh token's family and consumption, by its hash (why a consume changed nothing).
CREATE FUNCTION refresh_token_state(token_hash bytea)
    RETURNS TABLE (family_id text, consumed_at bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
    #variable_conflict use_column
    BEGIN
        RETURN QUERY SELECT t.family_id, t.consumed_at FROM refresh_tokens t
                      WHERE t.hash = token_hash;
    END
    $$;

-- A login's new family and its first token, together.
CREATE FUNCTION refresh_create_family(
        f_id text, f_user_id text, f_org_id text, f_role text, f_scopes text,
        f_auth_time bigint, f_amr text, f_acr text, f_created_at bigint,
        f_last_used_at bigint, f_expires_at bigint, f_revoked boolean,
        t_hash bytea, t_family_id text, t_issued_at bigint, t_consumed_at bigint,
        t_expires_at bigint)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    BEGIN
        INSERT INTO refresh_families (id, user_id, org_id, role, scopes, auth_time, amr, acr,
                                      created_at, last_used_at, expires_at, revoked)
            VALUES (f_id, f_user_id, f_org_id, f_role, f_scopes, f_auth_time, f_amr, f_acr,
                    f_created_at, f_last_used_at, f_expires_at, f_revoked);
        INSERT INTO refresh_tokens (hash, family_id, user_id, issued_at, consumed_at,
                                    expires_at)
            VALUES (t_hash, t_family_id, f_user_id, t_issued_at, t_consumed_at, t_expires_at);
    END
    $$;

-- The consume, one statement as before (see `CONSUME_PG` in src/refresh.rs for its lock
-- order): the family locked first (FOR NO KEY UPDATE), the token's conditional update,
-- the successor and the family's last use, and the family as it was before this use.
CREATE FUNCTION refresh_consume(token_hash bytea, used_at bigint, successor_hash bytea)
    RETURNS TABLE (id text, user_id text, org_id text, role text, scopes text,
                   auth_time bigint, amr text, acr text, created_at bigint,
                   last_used_at bigint, expires_at bigint, revoked boolean)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    #variable_conflict use_column
    BEGIN
        RETURN QUERY
            WITH used AS (
                UPDATE refresh_tokens SET consumed_at = used_at
                WHERE refresh_tokens.hash = token_hash AND refresh_tokens.consumed_at IS NULL
                  AND EXISTS (SELECT 1 FROM refresh_families f
                              WHERE f.id = refresh_tokens.family_id AND NOT f.revoked
                              FOR NO KEY UPDATE)
                RETURNING refresh_tokens.family_id
            ),
            successor AS (
                INSERT INTO refresh_tokens (hash, family_id, user_id, issued_at, consumed_at,
                                            expires_at)
                SELECT successor_hash, f.id, f.user_id, used_at, NULL, f.expires_at
                FROM used JOIN refresh_families f ON f.id = used.family_id
            )
            UPDATE refresh_families fam SET last_used_at = used_at
            FROM used, refresh_families prior
            WHERE fam.id = used.family_id AND prior.id = used.family_id
            RETURNING prior.id, prior.user_id, prior.org_id, prior.role, prior.scopes,
                      prior.auth_time, prior.amr, prior.acr, prior.created_at,
                      prior.last_used_at, prior.expires_at, prior.revoked;
    END
    $$;

-- A family revoked by its id (reuse detected, a logout).
CREATE FUNCTION refresh_revoke_family(family_id text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    BEGIN
        UPDATE refresh_families f SET revoked = TRUE WHERE f.id = family_id;
    END
    $$;

-- Every live family of one subject revoked; their ids (a password change, an admin's
-- sign-out of a user). Bounded by the subject, the argument.
CREATE FUNCTION refresh_revoke_all(subject text) RETURNS SETOF text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    BEGIN
        RETURN QUERY UPDATE refresh_families f SET revoked = TRUE
                      WHERE f.user_id = subject AND NOT f.revoked RETURNING f.id;
    END
    $$;

-- Maintenance: expired families (with their tokens) and expired tokens deleted; the
-- number of families.
CREATE FUNCTION refresh_prune(prune_at bigint) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    AS $$
    DECLARE
        families bigint;
    BEGIN
        DELETE FROM refresh_families f WHERE f.expires_at <= prune_at;
        GET DIAGNOSTICS families = ROW_COUNT;
        DELETE FROM refresh_tokens t WHERE t.expires_at <= prune_at;
        RETURN families;
    END
    $$;

-- Pinned `search_path`, no EXECUTE for PUBLIC (only the owner and the roles granted by
-- `mcpsec_grant_service_role`).
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['api_key_lookup(text)', 'api_key_replace_hash(text, text, text)',
                             'api_key_touch_last_used(text, bigint, bigint)',
                             'api_key_revoke_by_holder(text)', 'refresh_family_get(text)',
                             'refresh_token_state(bytea)',
                             'refresh_create_family(text, text, text, text, text, bigint, text, text, bigint, bigint, bigint, boolean, bytea, text, bigint, bigint, bigint)',
                             'refresh_consume(bytea, bigint, bytea)',
                             'refresh_revoke_family(text)', 'refresh_revoke_all(text)',
                             'refresh_prune(bigint)']
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
-- - USAGE on this schema and EXECUTE on the pre-authentication functions above;
-- - SELECT, INSERT, UPDATE, DELETE on every table of this schema without row-level
--   security, except the migrations' ledger;
-- - the same on the tables under row-level security other than `api_keys`,
--   `refresh_families` and `refresh_tokens`, with a policy `service_<login>` for it;
-- and revokes whatever it may hold on those three.
CREATE FUNCTION mcpsec_grant_service_role(login name) RETURNS void
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
        FOREACH f IN ARRAY ARRAY['api_key_lookup(text)', 'api_key_replace_hash(text, text, text)',
                                 'api_key_touch_last_used(text, bigint, bigint)',
                                 'api_key_revoke_by_holder(text)', 'refresh_family_get(text)',
                                 'refresh_token_state(bytea)',
                                 'refresh_create_family(text, text, text, text, text, bigint, text, text, bigint, bigint, bigint, boolean, bytea, text, bigint, bigint, bigint)',
                                 'refresh_consume(bytea, bigint, bytea)',
                                 'refresh_revoke_family(text)', 'refresh_revoke_all(text)',
                                 'refresh_prune(bigint)']
        LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, login);
        END LOOP;
        FOR t IN SELECT c.relname, c.relrowsecurity FROM pg_class c
                  WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
                    AND c.relname <> '_sqlx_migrations'
        LOOP
            IF t.relname IN ('api_keys', 'refresh_families', 'refresh_tokens') THEN
                EXECUTE format('REVOKE ALL ON %I FROM %I', t.relname, login);
                CONTINUE;
            END IF;
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t.relname, login);
            IF t.relrowsecurity AND NOT EXISTS (
                    SELECT 1 FROM pg_policies p
                     WHERE p.schemaname = current_schema() AND p.tablename = t.relname
                       AND p.policyname = policy) THEN
                EXECUTE format('CREATE POLICY %I ON %I TO %I USING (true) WITH CHECK (true)',
                               policy, t.relname, login);
            END IF;
        END LOOP;
    END
    $$;
REVOKE EXECUTE ON FUNCTION mcpsec_grant_service_role(name) FROM PUBLIC;
