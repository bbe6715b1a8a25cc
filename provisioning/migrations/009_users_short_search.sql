-- SPDX-License-Identifier: AGPL-3.0-or-later
-- The user list's text search finds its matches through trigrams when they
-- lie far into the list order (005). A search of one or two characters has
-- no trigram, so a rare one ("qz") walked the whole organisation: ~100 ms at
-- a million users. Every single character and pair of characters of the
-- joined e-mail and name is indexed here; for such a q, containment of q
-- in that set is exactly "q is a substring".
CREATE FUNCTION idb_short_grams(t text) RETURNS text[] LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT g), '{}') FROM (
        SELECT substr(t, i, 1) AS g FROM generate_series(1, length(t)) i
        UNION ALL
        SELECT substr(t, i, 2) FROM generate_series(1, length(t) - 1) i) s
$$;
CREATE INDEX user_search_short_grams_idx ON user_search
    USING gin (idb_short_grams(email_lc || E'\n' || name_lc));
