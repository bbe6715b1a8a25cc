-- SPDX-License-Identifier: AGPL-3.0-or-later
-- Every sign-in moves users.last_login_at. While that column was indexed
-- (users_org_last_login_idx, and user_search's covering index), each login
-- rewrote the user's row in every index of users and of user_search,
-- trigram index included: write load, vacuum work and a GIN pending list
-- that every text search must scan. The login-time filter of the user list
-- now reads a narrow table of its own, kept by trigger like user_search; the
-- rows of users and user_search no longer change on a login (users updates
-- become HOT, user_search is not touched).
CREATE TABLE user_logins (
    user_id       uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    org_id        uuid NOT NULL,
    last_login_at timestamptz NOT NULL
);
CREATE INDEX user_logins_org_at_idx ON user_logins (org_id, last_login_at, user_id);

INSERT INTO user_logins (user_id, org_id, last_login_at)
SELECT id, org_id, last_login_at FROM users WHERE last_login_at IS NOT NULL;

CREATE FUNCTION idb_user_logins_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_logins (user_id, org_id, last_login_at)
    SELECT id, org_id, last_login_at FROM new_users WHERE last_login_at IS NOT NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_logins_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_users FOR EACH STATEMENT EXECUTE FUNCTION idb_user_logins_insert();

CREATE FUNCTION idb_user_logins_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.last_login_at IS NULL THEN
        DELETE FROM user_logins WHERE user_id = NEW.id;
    ELSE
        INSERT INTO user_logins (user_id, org_id, last_login_at) VALUES (NEW.id, NEW.org_id, NEW.last_login_at)
        ON CONFLICT (user_id) DO UPDATE SET org_id = EXCLUDED.org_id, last_login_at = EXCLUDED.last_login_at;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_logins_update AFTER UPDATE OF org_id, last_login_at ON users
    FOR EACH ROW WHEN ((OLD.org_id, OLD.last_login_at) IS DISTINCT FROM (NEW.org_id, NEW.last_login_at))
    EXECUTE FUNCTION idb_user_logins_update();

-- user_search without the login time: its trigger no longer fires on a login.
DROP TRIGGER users_search_update ON users;
CREATE TRIGGER users_search_update AFTER UPDATE OF org_id, email, name, status, role ON users
    FOR EACH ROW WHEN ((OLD.org_id, OLD.email, OLD.name, OLD.status, OLD.role)
                       IS DISTINCT FROM (NEW.org_id, NEW.email, NEW.name, NEW.status, NEW.role))
    EXECUTE FUNCTION idb_user_search_update();
CREATE OR REPLACE FUNCTION idb_user_search_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_search SET org_id = NEW.org_id, email_lc = lower(NEW.email), name_lc = lower(NEW.name),
           status = NEW.status, role = NEW.role
     WHERE user_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION idb_user_search_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_search (user_id, org_id, email_lc, name_lc, status, role)
    SELECT id, org_id, lower(email), lower(name), status, role FROM new_users;
    RETURN NULL;
END
$$;
DROP INDEX user_search_order_idx;
ALTER TABLE user_search DROP COLUMN last_login_at;
CREATE INDEX user_search_order_idx ON user_search (org_id, email_lc, user_id) INCLUDE (name_lc, status, role);

-- Nothing reads it any more, and it made every login a non-HOT update.
DROP INDEX users_org_last_login_idx;
-- Room on each page for the in-place (HOT) versions those updates now make.
ALTER TABLE users SET (fillfactor = 90);

ANALYZE user_logins;
