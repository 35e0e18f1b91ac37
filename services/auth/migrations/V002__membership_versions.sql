-- Each user's membership version: bumped in the same transaction as every change to their
-- memberships, announced on auth.membership.changed.<user>, and written into scope tokens (claim
-- "mv"), so every service can refuse a scope token issued before the latest change.
CREATE TABLE member_versions (
    user_id  text PRIMARY KEY CHECK (user_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    version  bigint NOT NULL CHECK (version > 0)
);
