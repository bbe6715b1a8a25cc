-- SPDX-License-Identifier: AGPL-3.0-or-later
-- Every instance keeps its IdP connections in memory (provisioning/conncache.c)
-- and drops them when PostgreSQL says a row changed. A trigger, not the
-- writers, says so: the API, idbridgectl and a hand-written UPDATE are all
-- heard. The payload is the slug (informational; listeners drop everything).
-- The per-login "last login attributes" write is not a change of the
-- connection and stays silent.
CREATE FUNCTION idb_connection_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(OLD) - 'last_login_attributes' - 'last_login_at')
           = (to_jsonb(NEW) - 'last_login_attributes' - 'last_login_at') THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('idb_connections', CASE WHEN TG_OP = 'DELETE' THEN OLD.slug ELSE NEW.slug END);
    RETURN NULL;
END
$$;
CREATE TRIGGER idp_connections_notify AFTER INSERT OR UPDATE OR DELETE ON idp_connections
    FOR EACH ROW EXECUTE FUNCTION idb_connection_notify();
