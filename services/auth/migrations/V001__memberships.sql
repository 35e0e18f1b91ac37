-- Organizations, their divisions, and who belongs to them with which role (CONTRACT §3).
-- Ids are client-choosable strings of the contract's alphabet; a division id is unique per organization.

CREATE TABLE organizations (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_by  text,                       -- the creating user; NULL when a service_role key created it
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE divisions (
    organization_id  text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id               text NOT NULL CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE members (
    organization_id  text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id          text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    role             text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    divisions        text[] CHECK (divisions IS NULL OR cardinality(divisions) > 0),  -- NULL = every division
    email            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);

-- The token exchange reads one user's memberships across organizations.
CREATE INDEX members_by_user ON members (user_id);
