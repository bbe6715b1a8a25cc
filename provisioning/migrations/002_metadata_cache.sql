-- SPDX-License-Identifier: AGPL-3.0-or-later
-- cacheDuration of the IdP metadata in force, so refreshes honour it.
ALTER TABLE idp_connections ADD COLUMN metadata_cache_s integer;
