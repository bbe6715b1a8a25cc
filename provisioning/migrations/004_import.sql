-- SPDX-License-Identifier: AGPL-3.0-or-later
-- CSV import (issue 7): a preview is kept under an id for an hour so that any
-- instance can confirm it; the confirm stores its result in the same
-- transaction that creates the users, so a second confirm answers with it.
CREATE TABLE import_previews (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    created_by    uuid REFERENCES users(id) ON DELETE SET NULL,  -- NULL: idbridgectl
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed')),
    rows          jsonb NOT NULL CHECK (jsonb_typeof(rows) = 'array'),
    add_count     integer NOT NULL CHECK (add_count >= 0),
    skip_count    integer NOT NULL CHECK (skip_count >= 0),
    error_count   integer NOT NULL CHECK (error_count >= 0),
    confirmed_at  timestamptz,
    confirmed_by  uuid REFERENCES users(id) ON DELETE SET NULL,
    result        jsonb,
    CHECK ((status = 'confirmed') = (result IS NOT NULL AND confirmed_at IS NOT NULL))
);
CREATE INDEX import_previews_org_idx ON import_previews (org_id, created_at DESC);
CREATE INDEX import_previews_expires_idx ON import_previews (expires_at);
