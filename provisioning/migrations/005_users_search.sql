-- SPDX-License-Identifier: AGPL-3.0-or-later
-- The admin user list (GET /api/v1/users) at a million users per organisation.
--
-- user_search holds, per user, exactly what the list filters and sorts on,
-- with lower(email) and lower(name) as real columns. That allows what an
-- expression index on users cannot: an index-only walk in the list's order
-- (org_id, lower(email), id) that evaluates every filter on the index tuple,
-- and a narrow heap for the trigram search when the matches are too far
-- into that order for a walk. Triggers on users keep it in step within the
-- same transaction; a hard delete (or an organisation's) cascades.
CREATE TABLE user_search (
    user_id       uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    org_id        uuid NOT NULL,
    email_lc      text NOT NULL,
    name_lc       text NOT NULL,
    status        user_status NOT NULL,
    role          user_role NOT NULL,
    last_login_at timestamptz
);
CREATE INDEX user_search_order_idx ON user_search (org_id, email_lc, user_id)
    INCLUDE (name_lc, status, role, last_login_at);
-- One trigram index over both texts (one scan instead of a BitmapOr). A
-- match of the joined text is necessary for a match of either part; the
-- list rechecks each part, so nothing matches across the line break.
CREATE INDEX user_search_text_trgm_idx ON user_search
    USING gin ((email_lc || E'\n' || name_lc) gin_trgm_ops);

INSERT INTO user_search (user_id, org_id, email_lc, name_lc, status, role, last_login_at)
SELECT id, org_id, lower(email), lower(name), status, role, last_login_at FROM users;

-- Inserts per statement: a bulk import or seed is one INSERT … SELECT here.
CREATE FUNCTION idb_user_search_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_search (user_id, org_id, email_lc, name_lc, status, role, last_login_at)
    SELECT id, org_id, lower(email), lower(name), status, role, last_login_at FROM new_users;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_search_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_users FOR EACH STATEMENT EXECUTE FUNCTION idb_user_search_insert();

-- Updates per row, and only when a listed column changes (a failed login or
-- a last_active_at touch does not write here).
CREATE FUNCTION idb_user_search_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_search SET org_id = NEW.org_id, email_lc = lower(NEW.email), name_lc = lower(NEW.name),
           status = NEW.status, role = NEW.role, last_login_at = NEW.last_login_at
     WHERE user_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_search_update AFTER UPDATE OF org_id, email, name, status, role, last_login_at ON users
    FOR EACH ROW WHEN ((OLD.org_id, OLD.email, OLD.name, OLD.status, OLD.role, OLD.last_login_at)
                       IS DISTINCT FROM (NEW.org_id, NEW.email, NEW.name, NEW.status, NEW.role, NEW.last_login_at))
    EXECUTE FUNCTION idb_user_search_update();

-- The list no longer reads these; every last-login write updated them.
DROP INDEX users_email_trgm_idx;
DROP INDEX users_name_trgm_idx;

ANALYZE user_search;
