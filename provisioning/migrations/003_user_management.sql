-- SPDX-License-Identifier: AGPL-3.0-or-later
-- User management (issue 6): indexes for the admin user list, its text
-- search and the audit log filters, plus the JSON shape of a user that the
-- API, the audit log (before/after) and the list share.

-- Substring search on e-mail and name (GET /api/v1/users?q=). pg_trgm is a
-- trusted extension shipped with PostgreSQL's contrib.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_email_trgm_idx ON users USING gin (lower(email) gin_trgm_ops);
CREATE INDEX users_name_trgm_idx ON users USING gin (lower(name) gin_trgm_ops);
-- The list's stable order and its cursor: (lower(email), id) within an org.
CREATE INDEX users_org_email_order_idx ON users (org_id, lower(email), id);
-- The same order per status: status=deleted / pending pages without a scan.
CREATE INDEX users_org_status_email_idx ON users (org_id, status, lower(email), id);
-- Activation restores exactly the keys a deactivation disabled.
CREATE INDEX api_keys_user_disabled_idx ON api_keys (user_id) WHERE disabled_at IS NOT NULL;

CREATE INDEX audit_log_org_action_idx ON audit_log (org_id, action, at DESC, id DESC);
CREATE INDEX audit_log_org_actor_idx ON audit_log (org_id, actor_id, at DESC, id DESC);
CREATE INDEX audit_log_org_target_idx ON audit_log (org_id, target_id, at DESC, id DESC);

-- RFC 3339 UTC text for API output (NULL stays NULL).
CREATE FUNCTION idb_ts(t timestamptz) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

-- The user object of the admin API. Never contains the password hash.
CREATE FUNCTION idb_user_json(u users) RETURNS json LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object(
        'id', u.id, 'email', u.email, 'name', u.name, 'role', u.role, 'status', u.status,
        'groups', coalesce((
            SELECT json_agg(json_strip_nulls(json_build_object(
                       'id', g.id, 'name', g.name, 'source', m.source,
                       'connection_id', m.connection_id, 'suspended', m.suspended))
                   ORDER BY lower(g.name), m.source)
              FROM memberships m JOIN groups g ON g.id = m.group_id
             WHERE m.user_id = u.id), '[]'::json),
        'created_at', idb_ts(u.created_at), 'created_via', u.created_via,
        'last_login_at', idb_ts(u.last_login_at), 'last_active_at', idb_ts(u.last_active_at),
        'failed_logins', u.failed_logins, 'locked_at', idb_ts(u.locked_at),
        'deactivated_at', idb_ts(u.deactivated_at), 'deleted_at', idb_ts(u.deleted_at),
        'has_password', u.password_hash IS NOT NULL)
$$;

-- The group object of the admin API.
CREATE FUNCTION idb_group_json(g groups) RETURNS json LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object(
        'id', g.id, 'name', g.name, 'description', g.description,
        'permissions', to_json(g.permissions), 'created_via', g.created_via,
        'created_at', idb_ts(g.created_at), 'updated_at', idb_ts(g.updated_at),
        'member_count', (SELECT count(DISTINCT m.user_id) FROM memberships m WHERE m.group_id = g.id))
$$;

-- The API key object of the admin API: metadata only, never the hash.
CREATE FUNCTION idb_apikey_json(k api_keys) RETURNS json LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object(
        'id', k.id, 'user_id', k.user_id, 'name', k.name, 'prefix', k.prefix,
        'scopes', to_json(k.scopes), 'created_at', idb_ts(k.created_at),
        'last_used_at', idb_ts(k.last_used_at), 'expires_at', idb_ts(k.expires_at),
        'revoked_at', idb_ts(k.revoked_at), 'disabled_at', idb_ts(k.disabled_at))
$$;
