-- SPDX-License-Identifier: AGPL-3.0-or-later
-- The whole data model idbridge needs; later migrations extend it.
-- Every table is scoped by org_id; no query crosses organisations.

CREATE TYPE user_status AS ENUM ('pending', 'active', 'inactive', 'deleted');
-- Enum order is the role order: readonly < train < configure < admin.
CREATE TYPE user_role AS ENUM ('readonly', 'train', 'configure', 'admin');
CREATE TYPE membership_source AS ENUM ('manual', 'idp', 'import');

CREATE TABLE organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email                text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name                 text NOT NULL DEFAULT '' CHECK (length(name) <= 256),
    role                 user_role NOT NULL DEFAULT 'readonly',
    status               user_status NOT NULL DEFAULT 'pending',
    password_hash        text,
    created_via          text NOT NULL DEFAULT 'admin'
                         CHECK (created_via IN ('admin', 'invite', 'sso', 'import', 'cli')),
    failed_logins        integer NOT NULL DEFAULT 0,
    locked_at            timestamptz,
    last_failed_login_at timestamptz,
    last_login_at        timestamptz,
    last_active_at       timestamptz,
    sso_authenticated_at timestamptz,
    deactivated_at       timestamptz,
    deleted_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- E-mail is unique per organisation, case-insensitively.
CREATE UNIQUE INDEX users_org_email_key ON users (org_id, lower(email));
CREATE INDEX users_org_status_idx ON users (org_id, status, id);
CREATE INDEX users_org_role_idx ON users (org_id, role, id);
CREATE INDEX users_org_last_login_idx ON users (org_id, last_login_at, id);

CREATE TABLE idp_connections (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    slug                 text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    protocol             text NOT NULL CHECK (protocol IN ('saml', 'oidc')),
    enabled              boolean NOT NULL DEFAULT true,
    preset               text,
    -- protocol settings (the API's "saml" / "oidc" objects); secrets sealed
    settings             jsonb NOT NULL DEFAULT '{}',
    -- the API's "jit" object (attribute names, roles, group sync)
    jit                  jsonb NOT NULL DEFAULT '{}',
    allowed_domains      text[] NOT NULL DEFAULT '{}',
    metadata_xml         text,
    metadata_fetched_at  timestamptz,
    metadata_valid_until timestamptz,
    metadata_error       text,
    last_login_attributes jsonb,
    last_login_at        timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idp_connections_org_idx ON idp_connections (org_id);

-- One owner per e-mail domain across the deployment (home-realm discovery).
CREATE TABLE connection_domains (
    domain         text PRIMARY KEY CHECK (domain = lower(domain)),
    connection_id  uuid NOT NULL REFERENCES idp_connections(id) ON DELETE CASCADE,
    org_id         uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE
);

-- IdP subject -> user. Keyed on (connection, subject); issuer kept for audit.
CREATE TABLE identities (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    connection_id  uuid NOT NULL REFERENCES idp_connections(id) ON DELETE CASCADE,
    issuer         text NOT NULL,
    subject        text NOT NULL CHECK (length(subject) BETWEEN 1 AND 1024),
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz,
    UNIQUE (connection_id, subject)
);
CREATE INDEX identities_user_idx ON identities (user_id);

CREATE TABLE groups (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    permissions  text[] NOT NULL DEFAULT '{}' CHECK (permissions <@ ARRAY[
                   'agents.use', 'agents.train', 'agents.configure', 'agents.create',
                   'analytics.view_self', 'analytics.view_all', 'users.manage',
                   'groups.manage', 'sso.manage', 'audit.view']::text[]),
    created_via  text NOT NULL DEFAULT 'manual' CHECK (created_via IN ('manual', 'idp', 'import')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX groups_org_name_key ON groups (org_id, lower(name));

-- A user can be in a group through several sources at once (added by hand and
-- asserted by the IdP); IdP reconciliation only ever touches source 'idp'.
CREATE TABLE memberships (
    org_id         uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id       uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    source         membership_source NOT NULL,
    connection_id  uuid REFERENCES idp_connections(id) ON DELETE CASCADE,
    suspended      boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, group_id, source),
    CHECK ((source = 'idp') = (connection_id IS NOT NULL))
);
CREATE INDEX memberships_group_idx ON memberships (group_id, user_id);

CREATE TABLE sessions (
    id_hash            text PRIMARY KEY CHECK (length(id_hash) = 64),
    org_id             uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id            uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token         text NOT NULL,
    auth_method        text NOT NULL CHECK (auth_method IN ('password', 'saml', 'oidc')),
    connection_id      uuid REFERENCES idp_connections(id) ON DELETE CASCADE,
    idp_subject        text,
    idp_session_index  text,
    idp_sid            text,
    idp_session_dump   text,
    ip                 text,
    user_agent         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at       timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_idp_idx ON sessions (connection_id, idp_subject);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE invitations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   text NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    invited_by   uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX invitations_user_idx ON invitations (user_id);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash      text NOT NULL UNIQUE CHECK (length(key_hash) = 64),
    prefix        text NOT NULL,
    scopes        text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    -- set when a deactivation disabled the key, so activation restores
    -- exactly those and never a key an admin revoked on purpose
    disabled_at   timestamptz
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);

-- Activity: logins and product events. user_id has no foreign key so that a
-- hard-deleted user's events stay, with actor_ref holding an anonymised id.
CREATE TABLE activity (
    id          bigserial PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id     uuid,
    actor_ref   text,
    kind        text NOT NULL,
    reason      text,
    agent       text,
    resource    text,
    latency_ms  integer,
    ip          text,
    details     jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activity_org_at_idx ON activity (org_id, at DESC);
CREATE INDEX activity_user_at_idx ON activity (user_id, at DESC);

CREATE TABLE alerts (
    id           bigserial PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id      uuid,
    kind         text NOT NULL,
    severity     text NOT NULL DEFAULT 'medium' CHECK (severity IN ('low', 'medium', 'high')),
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged')),
    details      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    acked_at     timestamptz,
    acked_by     uuid
);
CREATE INDEX alerts_org_status_idx ON alerts (org_id, status, created_at DESC);

CREATE TABLE anomaly_settings (
    org_id    uuid PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    settings  jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Append-only: no foreign keys (entries outlive what they describe) and a
-- trigger refuses UPDATE, DELETE and TRUNCATE.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    org_id       uuid,
    actor_id     uuid,
    actor_email  text,
    action       text NOT NULL,
    target_type  text,
    target_id    text,
    before       jsonb,
    after        jsonb,
    ip           text,
    request_id   text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_org_at_idx ON audit_log (org_id, at DESC, id DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Transactional outbox: rows written in the same transaction as the change
-- they announce; a sender thread delivers them with retries.
CREATE TABLE outbox (
    id               bigserial PRIMARY KEY,
    org_id           uuid REFERENCES organizations(id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('email')),
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    sent_at          timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at) WHERE sent_at IS NULL;
