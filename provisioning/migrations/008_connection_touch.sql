-- SPDX-License-Identifier: AGPL-3.0-or-later
-- What each instance builds from a connection (its lasso server, OIDC client,
-- compiled attribute map) is keyed on updated_at. idbridge's own writes set
-- it; a change made by hand (psql) that does not must move it too, or the
-- instances would keep the objects built from the old row. The per-login
-- "last login attributes" write is not a change of the connection.
CREATE FUNCTION idb_connection_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at
       AND (to_jsonb(OLD) - 'last_login_attributes' - 'last_login_at' - 'updated_at')
           <> (to_jsonb(NEW) - 'last_login_attributes' - 'last_login_at' - 'updated_at') THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER idp_connections_touch BEFORE UPDATE ON idp_connections
    FOR EACH ROW EXECUTE FUNCTION idb_connection_touch();

-- A TRUNCATE fires no row trigger: say so to the listeners as well.
CREATE FUNCTION idb_connection_notify_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('idb_connections', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER idp_connections_notify_truncate AFTER TRUNCATE ON idp_connections
    FOR EACH STATEMENT EXECUTE FUNCTION idb_connection_notify_all();
